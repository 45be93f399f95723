//! A real headless Chromium, scripted through the JSON-lines driver
//! `tests/clients/node/browser.js` (playwright-core pointed at the distribution's Chromium;
//! the protocol is at the top of that file).
//!
//! Every command waits at most twice [`DEFAULT_TIMEOUT`] in the browser (plus a margin here)
//! and fails with the driver's error and stderr. Screenshots go to `target/screenshots/`.
//!
//! One Chromium runs at a time in a test process: a browser is a few hundred MB and several
//! processes, and a dozen launched at once on a loaded two-core machine starve each other (and
//! the gateways under test). A [`Browser`] holds [`BROWSER_SLOT`] for its life.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};

use crate::paths::{node_clients_dir, workspace_root};
use crate::wait::DEFAULT_TIMEOUT;

/// Where Chromium is: `$CHROMIUM`, else the Debian package's browser binary (its
/// `/usr/bin/chromium` is a shell wrapper that only adds start-up work), else that wrapper
/// (`scripts/install-deps` installs the package).
pub fn chromium_path() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            ["/usr/lib/chromium/chromium", "/usr/bin/chromium"]
                .into_iter()
                .map(PathBuf::from)
                .find(|path| path.is_file())
                .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
        });
    assert!(
        path.is_file(),
        "Chromium not found at {} (run scripts/install-deps, or set CHROMIUM)",
        path.display()
    );
    path
}

/// Held by the one [`Browser`] of this test process that may run (see the module docs).
pub static BROWSER_SLOT: Mutex<()> = Mutex::new(());

/// How long the browser may take for one command: Chromium is heavy on a loaded machine, so
/// twice what a socket.io client gets. A bound, never an assertion on speed.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(2 * DEFAULT_TIMEOUT.as_secs());

/// How long Chromium may take to start: seconds on an idle machine, but over half a minute was
/// seen with a load average of 15 on two cores. A bound, never an assertion on speed.
const LAUNCH_TIMEOUT: Duration = Duration::from_secs(120);

/// One headless Chromium with named tabs; closed when dropped.
#[derive(Debug)]
pub struct Browser {
    /// Released after the browser has exited (fields drop after `Drop::drop`).
    _slot: MutexGuard<'static, ()>,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Value>,
    stderr: Arc<Mutex<String>>,
}

impl Browser {
    /// Starts Chromium and waits until it is ready.
    pub fn start() -> Browser {
        // A test that failed while holding the slot has closed its browser all the same.
        let slot = BROWSER_SLOT.lock().unwrap_or_else(PoisonError::into_inner);
        let config = json!({
            "executablePath": chromium_path(),
            "timeoutMs": BROWSER_TIMEOUT.as_millis() as u64,
            "launchTimeoutMs": LAUNCH_TIMEOUT.as_millis() as u64,
        });
        let mut child = Command::new("node")
            .current_dir(node_clients_dir())
            .arg("browser.js")
            .arg(config.to_string())
            // Never a browser download: the distribution's Chromium is the one used.
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start browser.js (run scripts/install-deps): {e}"));
        let (tx, rx) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let message = serde_json::from_str::<Value>(&line).unwrap_or_else(
                    |_| json!({"ok": false, "error": format!("driver said: {line}")}),
                );
                if tx.send(message).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("piped stderr");
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut browser = Browser {
            _slot: slot,
            stdin: child.stdin.take(),
            child,
            rx,
            stderr,
        };
        browser.reply("start Chromium", LAUNCH_TIMEOUT);
        browser
    }

    /// Opens (or reuses) tab `page` at `url`; the HTTP status of the navigation.
    pub fn open(&mut self, page: &str, url: &str) -> u16 {
        let status = self.command(json!({"cmd": "open", "page": page, "url": url}));
        status
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0)
    }

    /// Waits until the JavaScript expression `js` is truthy in tab `page`; its value.
    pub fn wait_for(&mut self, page: &str, js: &str) -> Value {
        self.command(json!({"cmd": "waitFor", "page": page, "js": js}))
    }

    /// The value of the JavaScript expression `js` in tab `page`.
    pub fn eval(&mut self, page: &str, js: &str) -> Value {
        self.command(json!({"cmd": "eval", "page": page, "js": js}))
    }

    /// Clicks the element `selector` of tab `page`.
    pub fn click(&mut self, page: &str, selector: &str) {
        self.command(json!({"cmd": "click", "page": page, "selector": selector}));
    }

    /// Types `value` into the input `selector` of tab `page`.
    pub fn fill(&mut self, page: &str, selector: &str, value: &str) {
        self.command(json!({"cmd": "fill", "page": page, "selector": selector, "value": value}));
    }

    /// A full-page screenshot of tab `page` as `target/screenshots/<name>.png`; its path.
    pub fn screenshot(&mut self, page: &str, name: &str) -> PathBuf {
        let dir = workspace_root().join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        self.command(json!({"cmd": "screenshot", "page": page, "path": path}));
        path
    }

    /// Dialogs that opened (each dismissed) and uncaught page errors, in every tab so far.
    pub fn incidents(&mut self) -> Value {
        self.command(json!({"cmd": "incidents"}))
    }

    fn command(&mut self, command: Value) -> Value {
        let Some(stdin) = self.stdin.as_mut() else {
            self.fail("the driver's stdin is closed")
        };
        if let Err(e) = stdin
            .write_all(format!("{command}\n").as_bytes())
            .and_then(|()| stdin.flush())
        {
            self.fail(&format!("cannot send {command}: {e}"));
        }
        self.reply(&command.to_string(), BROWSER_TIMEOUT)
    }

    fn reply(&mut self, what: &str, bound: Duration) -> Value {
        // The driver bounds every browser wait by `bound`; the margin covers its reply.
        match self.rx.recv_timeout(bound + Duration::from_secs(10)) {
            Ok(message) if message["ok"] == json!(true) => message["value"].clone(),
            Ok(message) => self.fail(&format!("{what}: {}", message["error"])),
            Err(_) => self.fail(&format!("{what}: no answer from the browser driver")),
        }
    }

    fn fail(&self, why: &str) -> ! {
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        panic!("browser: {why}\n--- browser.js stderr ---\n{stderr}");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"{\"cmd\":\"close\"}\n");
        }
        for _ in 0..250 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
