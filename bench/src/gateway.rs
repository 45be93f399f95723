//! The gateway processes of a Redis-mode run: the configuration they read (a user-room site
//! and a broadcast site, both authenticated by the stub site), starting one on a free loopback
//! port, and emptying Redis between runs so each starts from nothing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The site in user-room mode (`userRoomPrefix`): deliveries are stored and acknowledged.
pub const USER_SITE: &str = "bench";
/// The site in broadcast mode (no `userRoomPrefix`): deliveries are emitted live only.
pub const BROADCAST_SITE: &str = "cast";
/// Both sites' apiKey.
pub const API_KEY: &str = "bench-key";
/// The user-room site's prefix; the stub site answers token `t` with room `user_t`.
pub const USER_ROOM_PREFIX: &str = "user_";
/// The group room every user is in.
pub const GROUP: &str = "staff";

/// Writes `config.yml` and `sites.yml` into `dir` for a stub site on `auth_port`; returns
/// their paths.
pub fn write_config(dir: &Path, auth_port: u16) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("{}: {error}", dir.display()))?;
    let config = dir.join("config.yml");
    let sites = dir.join("sites.yml");
    let config_text = "# Written by courier-bench: Redis comes from REDIS_URL, the port from PORT.\n\
                       production:\n  device_ttl: 3600\n";
    let auth_url = format!("http://127.0.0.1:{auth_port}/rooms");
    let sites_text = format!(
        "# Written by courier-bench; both sites are authenticated by its stub site.\n\
         {USER_SITE}:\n  authUrl: {auth_url}\n  authScheme: Bearer\n  apiKey: {API_KEY}\n  \
         userRoomPrefix: {USER_ROOM_PREFIX}\n\
         {BROADCAST_SITE}:\n  authUrl: {auth_url}\n  authScheme: Bearer\n  apiKey: {API_KEY}\n"
    );
    for (path, text) in [(&config, config_text), (&sites, sites_text.as_str())] {
        std::fs::write(path, text).map_err(|error| format!("{}: {error}", path.display()))?;
    }
    Ok((config, sites))
}

/// How to start gateways.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary (`courier-tokio` or `courier-smol`).
    pub binary: PathBuf,
    /// `config.yml` and `sites.yml`.
    pub config: PathBuf,
    pub sites: PathBuf,
    /// `REDIS_URL`.
    pub redis_url: String,
    /// `REDIS_CLUSTER_URLS` (a Redis Cluster), which replaces `REDIS_URL` when set.
    pub redis_cluster_urls: Option<String>,
    /// Where the server logs go (`None`: discarded; at `info` they are a few lines per
    /// delivery, hundreds of MB per run).
    pub log_dir: Option<PathBuf>,
    /// Engines per process (`IO_ENGINES`), when set.
    pub engines: Option<u32>,
}

/// One running gateway; killed when dropped.
#[derive(Debug)]
pub struct Gateway {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its process id (for `/proc`).
    pub pid: u32,
}

impl Gateway {
    /// Starts a node with flake worker id `worker` (each node sharing Redis needs its own) and
    /// waits until it accepts connections. `name` names its log file.
    pub async fn start(launch: &Launch, worker: u8, name: &str) -> Result<Gateway, String> {
        // A port free a moment ago can be taken by then (e.g. by a closing client socket).
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let stdout = match &launch.log_dir {
                Some(dir) => {
                    let path = dir.join(format!("{name}.log"));
                    Stdio::from(
                        std::fs::File::create(&path)
                            .map_err(|error| format!("{}: {error}", path.display()))?,
                    )
                }
                None => Stdio::null(),
            };
            let mut command = Command::new(&launch.binary);
            match launch.engines {
                Some(engines) => command.env("IO_ENGINES", engines.to_string()),
                None => command.env_remove("IO_ENGINES"),
            };
            match &launch.redis_cluster_urls {
                Some(urls) => command.env("REDIS_CLUSTER_URLS", urls),
                None => command.env_remove("REDIS_CLUSTER_URLS"),
            };
            let child = command
                .arg("--config")
                .arg(&launch.config)
                .arg("--sites")
                .arg(&launch.sites)
                .args(["--bind", "127.0.0.1"])
                .env("PORT", port.to_string())
                .env("REDIS_URL", &launch.redis_url)
                .env("NODE_ENV", "production")
                .env("FLAKE_WORKER", worker.to_string())
                .env_remove("FLAKE_ID")
                .env_remove("SITE_NAME")
                .env_remove("METRICS_BIND")
                .stdin(Stdio::null())
                .stdout(stdout)
                .spawn()
                .map_err(|error| format!("{}: {error}", launch.binary.display()))?;
            let mut gateway = Gateway {
                pid: child.id(),
                child,
                port,
            };
            match gateway.wait_ready().await {
                Ok(()) => return Ok(gateway),
                Err(error) => last_error = error,
            }
        }
        Err(format!("{name} did not start: {last_error}"))
    }

    /// Waits up to 20 s until `/readyz` answers 200 (Redis reached, bus subscribed).
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("exited with {status}"));
            }
            if crate::http::get(self.port, "/readyz").await.is_ok() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err("not ready within 20 s".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|error| format!("free port: {error}"))?;
    listener
        .local_addr()
        .map(|address| address.port())
        .map_err(|error| format!("free port: {error}"))
}

/// Whether the Redis at 127.0.0.1:`port` is a master (`ROLE`).
pub async fn redis_is_master(port: u16) -> Result<bool, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("redis connect: {error}"))?;
    stream
        .write_all(b"*1\r\n$4\r\nROLE\r\n")
        .await
        .map_err(|error| format!("redis write: {error}"))?;
    let mut answer = [0_u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut answer))
        .await
        .map_err(|_| "ROLE: no answer".to_owned())?
        .map_err(|error| format!("redis read: {error}"))?;
    // `*3\r\n$6\r\nmaster…` or `*5\r\n$5\r\nslave…`
    Ok(String::from_utf8_lossy(&answer[..read]).contains("master"))
}

/// `FLUSHALL` on the Redis at 127.0.0.1:`port`: every run starts from an empty store.
pub async fn flush_redis(port: u16) -> Result<(), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|error| format!("redis connect: {error}"))?;
    stream
        .write_all(b"*1\r\n$8\r\nFLUSHALL\r\n")
        .await
        .map_err(|error| format!("redis write: {error}"))?;
    let mut answer = [0_u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut answer))
        .await
        .map_err(|_| "FLUSHALL: no answer".to_owned())?
        .map_err(|error| format!("redis read: {error}"))?;
    if answer[..read].starts_with(b"+OK") {
        Ok(())
    } else {
        Err(format!(
            "FLUSHALL answered {:?}",
            String::from_utf8_lossy(&answer[..read])
        ))
    }
}
