//! A Courier process under test: its own working directory holding config.yml and sites.yml in
//! the original's layout, a free port, captured log lines, and the ways a process ends (kill -9,
//! SIGTERM) and comes back (restart on the same port with the same files).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::http::try_http;
use crate::paths::binary;
use crate::stub_site::StubSite;
use crate::tempdir::TempDir;
use crate::wait::{DEFAULT_TIMEOUT, free_port, wait_until};

/// Which Courier binary runs the scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bin {
    /// `courier-tokio`
    Tokio,
    /// `courier-smol`
    Smol,
}

impl Bin {
    /// Both binaries.
    pub const ALL: [Bin; 2] = [Bin::Tokio, Bin::Smol];

    /// The executable's name.
    pub fn name(self) -> &'static str {
        match self {
            Bin::Tokio => "courier-tokio",
            Bin::Smol => "courier-smol",
        }
    }

    /// The executable (the workspace's build, or `COURIER_BIN_DIR`).
    pub fn path(self) -> std::path::PathBuf {
        crate::paths::binary(self.name())
    }
}

/// One site of sites.yml, written in the original's format (camelCase keys).
#[derive(Debug, Clone)]
pub struct Site {
    name: String,
    auth_url: Option<String>,
    auth_scheme: Option<String>,
    api_key_yaml: Option<String>,
    user_room_prefix: Option<String>,
    update_user_url: Option<String>,
    public_channel: Option<String>,
    http_timeout_ms: Option<u64>,
}

impl Site {
    /// The API key [`Site::for_stub`] sets.
    pub const API_KEY: &'static str = "secret-key";

    /// A site with only its name: add the keys you need.
    pub fn new(name: &str) -> Site {
        Site {
            name: name.to_string(),
            auth_url: None,
            auth_scheme: None,
            api_key_yaml: None,
            user_room_prefix: None,
            update_user_url: None,
            public_channel: None,
            http_timeout_ms: None,
        }
    }

    /// User-room mode against `stub`: authUrl and updateUserUrl on the stub, scheme `Bearer`,
    /// apiKey [`Site::API_KEY`], userRoomPrefix `user_`, no public channel.
    pub fn for_stub(name: &str, stub: &StubSite) -> Site {
        Site::new(name)
            .auth_url(&stub.auth_url())
            .auth_scheme("Bearer")
            .api_key(Site::API_KEY)
            .user_room_prefix("user_")
            .update_user_url(&stub.update_user_url())
    }

    /// The site's name (its namespace is `/<name>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `authUrl`.
    pub fn auth_url(mut self, url: &str) -> Site {
        self.auth_url = Some(url.to_string());
        self
    }

    /// `authScheme`.
    pub fn auth_scheme(mut self, scheme: &str) -> Site {
        self.auth_scheme = Some(scheme.to_string());
        self
    }

    /// `apiKey` as a YAML string.
    pub fn api_key(mut self, key: &str) -> Site {
        self.api_key_yaml = Some(yaml_string(key));
        self
    }

    /// `apiKey` as a YAML number (the original compares `String(apiKey)`).
    pub fn api_key_number(mut self, key: u64) -> Site {
        self.api_key_yaml = Some(key.to_string());
        self
    }

    /// `userRoomPrefix` (user-room mode).
    pub fn user_room_prefix(mut self, prefix: &str) -> Site {
        self.user_room_prefix = Some(prefix.to_string());
        self
    }

    /// No `userRoomPrefix`: broadcast mode.
    pub fn broadcast_mode(mut self) -> Site {
        self.user_room_prefix = None;
        self
    }

    /// `updateUserUrl`.
    pub fn update_user_url(mut self, url: &str) -> Site {
        self.update_user_url = Some(url.to_string());
        self
    }

    /// No `updateUserUrl`.
    pub fn no_user_updates(mut self) -> Site {
        self.update_user_url = None;
        self
    }

    /// `publicChannel`.
    pub fn public_channel(mut self, room: &str) -> Site {
        self.public_channel = Some(room.to_string());
        self
    }

    /// `httpTimeout` (milliseconds; Courier's timeout of the auth and user-update calls).
    pub fn http_timeout_ms(mut self, ms: u64) -> Site {
        self.http_timeout_ms = Some(ms);
        self
    }

    /// This site as a top-level sites.yml entry.
    pub fn to_yaml(&self) -> String {
        let mut out = format!("{}:\n", yaml_string(&self.name));
        let mut key = |k: &str, v: &Option<String>, raw: bool| {
            if let Some(v) = v {
                let v = if raw { v.clone() } else { yaml_string(v) };
                out.push_str(&format!("  {k}: {v}\n"));
            }
        };
        key("authUrl", &self.auth_url, false);
        key("authScheme", &self.auth_scheme, false);
        key("apiKey", &self.api_key_yaml, true);
        key("userRoomPrefix", &self.user_room_prefix, false);
        key("updateUserUrl", &self.update_user_url, false);
        key("publicChannel", &self.public_channel, false);
        key(
            "httpTimeout",
            &self.http_timeout_ms.map(|ms| ms.to_string()),
            true,
        );
        out
    }
}

/// JSON strings are YAML strings: quoting avoids every YAML type surprise.
fn yaml_string(s: &str) -> String {
    serde_json::to_string(s).expect("string serialises")
}

/// Environment variables that configure Courier (or the original): cleared from the inherited
/// environment so that only what a scenario sets applies.
const CONFIG_ENV: &[&str] = &[
    "PORT",
    "NODE_ENV",
    "DEVICE_TTL",
    "REDIS_URL",
    "SITE_NAME",
    "AUTH_URL",
    "AUTH_SCHEME",
    "API_KEY",
    "USER_ROOM_PREFIX",
    "UPDATE_USER_URL",
    "PUBLIC_CHANNEL",
    "RUST_LOG",
];

/// Configures and starts a [`Gateway`].
#[derive(Debug)]
pub struct GatewayBuilder {
    bin: Bin,
    sites: Vec<Site>,
    sites_yml: Option<String>,
    config_lines: Vec<String>,
    config_yml: Option<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
    files: Vec<(String, String)>,
    port: Option<u16>,
}

impl GatewayBuilder {
    /// Adds a site to sites.yml.
    pub fn site(mut self, site: Site) -> Self {
        self.sites.push(site);
        self
    }

    /// Writes this exact text as sites.yml (instead of the [`Site`]s).
    pub fn sites_yml(mut self, text: &str) -> Self {
        self.sites_yml = Some(text.to_string());
        self
    }

    /// Adds a line (e.g. `device_ttl: 3`, `io: {pingInterval: 500}`) to config.yml's
    /// `production:` section (`NODE_ENV` unset means production, as in the original).
    pub fn config(mut self, line: &str) -> Self {
        self.config_lines.push(line.to_string());
        self
    }

    /// Writes this exact text as config.yml (instead of the `config` lines).
    pub fn config_yml(mut self, text: &str) -> Self {
        self.config_yml = Some(text.to_string());
        self
    }

    /// `device_ttl` in config.yml.
    pub fn device_ttl(self, seconds: u64) -> Self {
        self.config(&format!("device_ttl: {seconds}"))
    }

    /// Sets an environment variable for the process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Uses this Redis through `REDIS_URL`.
    pub fn redis(self, redis: &crate::Redis) -> Self {
        let url = redis.url();
        self.env("REDIS_URL", &url)
    }

    /// Uses this Redis Cluster through `REDIS_CLUSTER_URLS` (every node as a seed).
    pub fn redis_cluster(self, cluster: &crate::RedisCluster) -> Self {
        let urls = cluster.seed_urls().join(",");
        self.env("REDIS_CLUSTER_URLS", &urls)
    }

    /// An extra command-line argument (after `--bind 127.0.0.1`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_string());
        self
    }

    /// Another file in the working directory.
    pub fn file(mut self, name: &str, contents: &str) -> Self {
        self.files.push((name.to_string(), contents.to_string()));
        self
    }

    /// Listen on this port instead of a free one (e.g. a second node sharing a test's ports).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Writes the files, starts the binary and waits until `GET /healthcheck` answers `ok`.
    pub fn start(self) -> Gateway {
        let dir = TempDir::new(self.bin.name());
        let sites_yml = self.sites_yml.clone().unwrap_or_else(|| {
            self.sites
                .iter()
                .map(Site::to_yaml)
                .collect::<Vec<_>>()
                .join("")
        });
        if !sites_yml.is_empty() {
            write(dir.path(), "sites.yml", &sites_yml);
        }
        let config_yml = self.config_yml.clone().or_else(|| {
            (!self.config_lines.is_empty()).then(|| {
                let body: String = self
                    .config_lines
                    .iter()
                    .map(|l| format!("  {l}\n"))
                    .collect();
                format!("production:\n{body}")
            })
        });
        if let Some(text) = &config_yml {
            write(dir.path(), "config.yml", text);
        }
        for (name, contents) in &self.files {
            write(dir.path(), name, contents);
        }
        let fixed_port = self.port.is_some();
        let mut gateway = Gateway {
            bin: self.bin,
            port: self.port.unwrap_or_else(free_port),
            env: self.env,
            args: self.args,
            logs: Arc::new(Mutex::new(Vec::new())),
            child: None,
            dir,
        };
        // A free port can be taken between probing and binding; try a few before giving up.
        for attempt in 1..=3 {
            match gateway.spawn_and_wait_healthy() {
                Ok(()) => return gateway,
                Err(why) if attempt < 3 && !fixed_port && gateway.lost_port_race() => {
                    eprintln!(
                        "{} did not start on port {} ({why}); retrying",
                        self.bin.name(),
                        gateway.port
                    );
                    gateway.port = free_port();
                }
                Err(why) => gateway.fail(&why),
            }
        }
        unreachable!("the loop returns or fails")
    }
}

fn write(dir: &Path, name: &str, contents: &str) {
    std::fs::write(dir.join(name), contents)
        .unwrap_or_else(|e| panic!("write {}: {e}", dir.join(name).display()));
}

/// A running Courier binary; killed when dropped (its logs are printed if the test failed).
#[derive(Debug)]
pub struct Gateway {
    bin: Bin,
    port: u16,
    env: Vec<(String, String)>,
    args: Vec<String>,
    logs: Arc<Mutex<Vec<String>>>,
    child: Option<Child>,
    dir: TempDir,
}

impl Gateway {
    /// A builder for `bin` with no sites and no config.yml.
    pub fn builder(bin: Bin) -> GatewayBuilder {
        GatewayBuilder {
            bin,
            sites: Vec::new(),
            sites_yml: None,
            config_lines: Vec::new(),
            config_yml: None,
            env: Vec::new(),
            args: Vec::new(),
            files: Vec::new(),
            port: None,
        }
    }

    /// Which binary this is.
    pub fn bin(&self) -> Bin {
        self.bin
    }

    /// The port it listens on (kept across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its working directory (config.yml, sites.yml, anything it writes).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every stdout and stderr line so far, in arrival order.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The log lines that contain `needle`.
    pub fn log_lines_containing(&self, needle: &str) -> Vec<String> {
        self.logs()
            .into_iter()
            .filter(|l| l.contains(needle))
            .collect()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let mut found = None;
        if wait_until(DEFAULT_TIMEOUT, || {
            found = self.log_lines_containing(needle).into_iter().next();
            found.is_some()
        }) {
            return found.unwrap_or_default();
        }
        self.fail(&format!(
            "no log line containing {needle:?} within {DEFAULT_TIMEOUT:?}"
        ))
    }

    /// `(VmRSS, VmHWM)` of the process in KiB, from `/proc/<pid>/status`: resident memory now
    /// and its peak since the start.
    pub fn memory_kib(&self) -> (u64, u64) {
        let Some(child) = self.child.as_ref() else {
            self.fail("memory_kib: the gateway is not running")
        };
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .unwrap_or_else(|e| self.fail(&format!("/proc status: {e}")));
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or_else(|| self.fail(&format!("no {name} in /proc status")))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Whether the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The process's resident set size (`VmRSS` of `/proc/<pid>/status`), in KiB.
    pub fn rss_kib(&self) -> u64 {
        let Some(child) = self.child.as_ref() else {
            self.fail("rss_kib: the gateway is not running");
        };
        let path = format!("/proc/{}/status", child.id());
        let status = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| self.fail(&format!("read {path}: {e}")));
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| self.fail(&format!("{path} has no VmRSS line")))
    }

    /// How many file descriptors the process has open (`/proc/<pid>/fd`): its sockets,
    /// listener and pipes.
    pub fn open_fds(&self) -> usize {
        let Some(child) = self.child.as_ref() else {
            self.fail("open_fds: the gateway is not running");
        };
        let path = format!("/proc/{}/fd", child.id());
        std::fs::read_dir(&path)
            .unwrap_or_else(|e| self.fail(&format!("read {path}: {e}")))
            .count()
    }

    /// SIGKILL (kill -9) and reap: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (up to 10 s) for the exit; panics if it does not exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let Some(mut child) = self.child.take() else {
            panic!("{} is not running", self.bin.name())
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill -TERM");
        assert!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.fail("did not exit within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills it (if running) and starts it again: same binary, port, files and environment.
    pub fn restart(&mut self) {
        self.kill();
        self.logs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push("--- restart ---".into());
        // The old socket may linger briefly; the new process binds with SO_REUSEADDR, but give
        // it a few tries anyway.
        let mut last = String::new();
        for _ in 0..3 {
            match self.spawn_and_wait_healthy() {
                Ok(()) => return,
                Err(why) => {
                    last = why;
                    self.kill();
                    std::thread::sleep(Duration::from_millis(300));
                }
            }
        }
        self.fail(&format!("restart failed: {last}"))
    }

    fn spawn_and_wait_healthy(&mut self) -> Result<(), String> {
        let mut cmd = Command::new(binary(self.bin.name()));
        cmd.current_dir(self.dir.path())
            .args(["--bind", "127.0.0.1"])
            .args(&self.args);
        for key in CONFIG_ENV {
            cmd.env_remove(key);
        }
        cmd.env("PORT", self.port.to_string());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn failed: {e}"))?;
        capture(child.stdout.take(), self.logs.clone());
        capture(child.stderr.take(), self.logs.clone());
        self.child = Some(child);
        let deadline = Instant::now() + DEFAULT_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                // Give the capture threads a moment to collect the last words.
                std::thread::sleep(Duration::from_millis(100));
                return Err(format!("exited during startup with {status}"));
            }
            if healthy(self.port) {
                // An answer while our process is already dying came from another server.
                std::thread::sleep(Duration::from_millis(50));
                if let Some(child) = self.child.as_mut()
                    && let Ok(Some(status)) = child.try_wait()
                {
                    self.child = None;
                    std::thread::sleep(Duration::from_millis(100));
                    return Err(format!("exited during startup with {status}"));
                }
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "GET /healthcheck did not answer ok within {DEFAULT_TIMEOUT:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }

    /// Whether the process exited at startup because its port was taken meanwhile.
    fn lost_port_race(&self) -> bool {
        self.child.is_none()
            && self.logs().iter().any(|l| {
                let l = l.to_ascii_lowercase();
                l.contains("address already in use") || l.contains("addrinuse")
            })
    }

    /// Panics with `why` and the log tail.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "{} on port {}: {why}\n--- its log ---\n{}",
            self.bin.name(),
            self.port,
            tail(&self.logs(), 80)
        )
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!(
                "--- {} (port {}) log tail ---\n{}",
                self.bin.name(),
                self.port,
                tail(&self.logs(), 80)
            );
        }
    }
}

fn healthy(port: u16) -> bool {
    // A connection refused is the normal "not yet"; anything else is worth polling again too.
    if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        return false;
    }
    try_http(port, "GET", "/healthcheck", &[], b"")
        .map(|r| r.status == 200 && r.body == "ok")
        .unwrap_or(false)
}

fn capture(stream: Option<impl std::io::Read + Send + 'static>, logs: Arc<Mutex<Vec<String>>>) {
    let Some(stream) = stream else { return };
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            logs.lock().unwrap_or_else(|p| p.into_inner()).push(line);
        }
    });
}

fn tail(lines: &[String], n: usize) -> String {
    lines[lines.len().saturating_sub(n)..].join("\n")
}
