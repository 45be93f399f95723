//! A private `redis-server` per test (free port, own directory) and a tiny RESP client, so
//! scenarios can look at and tamper with exactly what Courier stored.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::tempdir::TempDir;
use crate::wait::{free_port, wait_until};

/// A RESP value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$n` bulk string; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*n` array; `None` for the null array.
    Array(Option<Vec<Resp>>),
}

impl Resp {
    /// The integer of an `Int` reply (panics otherwise).
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(i) => *i,
            other => panic!("expected an integer reply, got {other:?}"),
        }
    }

    /// A bulk or simple string as text; `None` for nil.
    pub fn text(&self) -> Option<String> {
        match self {
            Resp::Bulk(Some(b)) => Some(String::from_utf8_lossy(b).into_owned()),
            Resp::Simple(s) => Some(s.clone()),
            Resp::Bulk(None) | Resp::Array(None) => None,
            other => panic!("expected a string reply, got {other:?}"),
        }
    }

    /// An array of strings (e.g. LRANGE, KEYS); nil counts as empty.
    pub fn strings(&self) -> Vec<String> {
        match self {
            Resp::Array(Some(items)) => items.iter().filter_map(Resp::text).collect(),
            Resp::Array(None) => Vec::new(),
            other => panic!("expected an array reply, got {other:?}"),
        }
    }
}

#[derive(Debug)]
enum StartError {
    /// The process ended at once (typically: the port was taken).
    Exited,
    /// It runs but did not answer PING within 10 s.
    NotAnswering,
}

/// A running redis-server; killed when dropped.
#[derive(Debug)]
pub struct Redis {
    port: u16,
    persistent: bool,
    dir: TempDir,
    child: Option<Child>,
}

impl Redis {
    /// Starts a redis-server with no persistence at all.
    pub fn start() -> Redis {
        Redis::launch(false)
    }

    /// Starts a redis-server with an append-only file synced on every write, so data survives
    /// [`Redis::kill`] + [`Redis::start_again`] (restart scenarios).
    pub fn start_persistent() -> Redis {
        Redis::launch(true)
    }

    fn launch(persistent: bool) -> Redis {
        let mut redis = Redis {
            port: free_port(),
            persistent,
            dir: TempDir::new("redis"),
            child: None,
        };
        // A free port can be taken between probing and binding: then redis-server exits at
        // once, and another port is tried.
        for _ in 0..3 {
            match redis.try_start() {
                Ok(()) => return redis,
                Err(StartError::Exited) => redis.port = free_port(),
                Err(StartError::NotAnswering) => break,
            }
        }
        panic!("redis-server did not start (last port {})", redis.port)
    }
    /// The port it listens on (stable across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>`, for `REDIS_URL` or config.yml `redis: {url}`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and directory (after [`Redis::kill`]).
    pub fn start_again(&mut self) {
        if let Err(e) = self.try_start() {
            panic!(
                "redis-server did not come back on port {}: {e:?}",
                self.port
            );
        }
    }

    fn try_start(&mut self) -> Result<(), StartError> {
        assert!(self.child.is_none(), "redis-server is already running");
        let port = self.port.to_string();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--daemonize",
            "no",
        ])
        .args(["--logfile", ""])
        .arg("--dir")
        .arg(self.dir.path());
        if self.persistent {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start redis-server (run scripts/install-deps): {e}")
            });
        self.child = Some(child);
        let mut exited = false;
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                exited = true;
                return true;
            }
            TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .and_then(|s| roundtrip(s, &["PING"]).ok())
                == Some(Resp::Simple("PONG".into()))
        });
        // A PING answered while our process is already dying came from someone else's server.
        std::thread::sleep(Duration::from_millis(50));
        if let Some(child) = self.child.as_mut()
            && let Ok(Some(_)) = child.try_wait()
        {
            exited = true;
        }
        if exited {
            self.child = None;
            return Err(StartError::Exited);
        }
        if !up {
            self.kill();
            return Err(StartError::NotAnswering);
        }
        Ok(())
    }

    /// SIGKILL, like a crash; the port stays reserved for [`Redis::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill, then start again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Runs one command and returns its reply; panics on I/O failure (not on `-ERR`).
    pub fn cmd(&self, args: &[&str]) -> Resp {
        let stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("connect redis on {}: {e}", self.port));
        roundtrip(stream, args).unwrap_or_else(|e| panic!("redis {args:?}: {e}"))
    }

    /// Every key matching `pattern` (KEYS: fine for a test's private instance), sorted.
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        let mut keys = self.cmd(&["KEYS", pattern]).strings();
        keys.sort();
        keys
    }

    /// `LRANGE key 0 -1`.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.cmd(&["LRANGE", key, "0", "-1"]).strings()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

pub(crate) fn roundtrip(mut stream: TcpStream, args: &[&str]) -> std::io::Result<Resp> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    stream.write_all(&out)?;
    read_resp(&mut BufReader::new(stream))
}

fn read_resp(reader: &mut impl BufRead) -> std::io::Result<Resp> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let line = line.trim_end_matches("\r\n");
    let (kind, rest) = line.split_at_checked(1).ok_or_else(|| bad("empty reply"))?;
    let number = || rest.parse::<i64>().map_err(|_| bad("bad length"));
    Ok(match kind {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(number()?),
        "$" => {
            let len = number()?;
            if len < 0 {
                Resp::Bulk(None)
            } else {
                let mut buf = vec![0u8; len as usize + 2];
                reader.read_exact(&mut buf)?;
                buf.truncate(len as usize);
                Resp::Bulk(Some(buf))
            }
        }
        "*" => {
            let len = number()?;
            if len < 0 {
                Resp::Array(None)
            } else {
                let mut items = Vec::with_capacity(len as usize);
                for _ in 0..len {
                    items.push(read_resp(reader)?);
                }
                Resp::Array(Some(items))
            }
        }
        _ => return Err(bad("unknown reply type")),
    })
}
