//! One benchmark client: an Engine.IO 4 or 3 WebSocket that joins the site's namespace as its
//! own user, keeps its session alive, and acknowledges and counts every `bench` event (live, or
//! unfolded from a `_batch`); and the counters all clients share with the coordinating task.
//! A message counted twice by one client is a duplicate, which fails the run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio_util::compat::TokioAsyncReadCompatExt;

use crate::wire::{self, ServerPacket};

/// The event name the benchmark's `/send`s use; its one argument is the message index.
pub const BENCH_EVENT: &str = "bench";

/// Progress of all clients, shared with the coordinator. Every change is signalled with
/// `notify_one`, which keeps a permit when nobody waits yet, so no wake-up is lost; the one
/// waiter re-checks its condition after each (a `Notify` costs far less than the WebSocket
/// work around it).
#[derive(Debug)]
pub struct Tally {
    admitted: AtomicU64,
    /// Clients that failed or whose connection ended.
    lost: AtomicU64,
    /// Messages one client received more than once.
    duplicates: AtomicU64,
    /// Deliveries of message `i` (the `bench` event's argument).
    deliveries: Vec<AtomicU64>,
    changed: Notify,
}

impl Tally {
    /// Counters for messages `0..messages`.
    pub fn new(messages: u64) -> Self {
        Tally {
            admitted: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            deliveries: (0..messages).map(|_| AtomicU64::new(0)).collect(),
            changed: Notify::new(),
        }
    }

    /// Clients admitted so far (they received `_settings`).
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Acquire)
    }

    /// Clients that failed or disconnected.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Acquire)
    }

    /// Clients that received (and acknowledged) message `index`.
    pub fn deliveries(&self, index: u64) -> u64 {
        usize::try_from(index)
            .ok()
            .and_then(|index| self.deliveries.get(index))
            .map_or(0, |count| count.load(Ordering::Acquire))
    }

    /// Messages some client received twice.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Acquire)
    }

    /// How many messages are counted (indices `0..messages`).
    pub fn messages(&self) -> u64 {
        self.deliveries.len() as u64
    }

    fn count_admitted(&self) {
        self.admitted.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    fn count_lost(&self) {
        self.lost.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    /// Counts message `index` for the client whose received set is `seen`.
    fn count_delivery(&self, seen: &mut [bool], index: u64) {
        let Some(index) = usize::try_from(index)
            .ok()
            .filter(|&index| index < self.deliveries.len())
        else {
            return;
        };
        if std::mem::replace(&mut seen[index], true) {
            self.duplicates.fetch_add(1, Ordering::AcqRel);
        } else {
            self.deliveries[index].fetch_add(1, Ordering::AcqRel);
        }
        self.changed.notify_one();
    }

    /// Waits until `done(self)` holds, a client is lost (`Err`), or `deadline` passes (`Err`).
    pub async fn wait_for(
        &self,
        what: &str,
        deadline: Instant,
        done: impl Fn(&Tally) -> bool,
    ) -> Result<(), String> {
        loop {
            if done(self) {
                return Ok(());
            }
            let lost = self.lost();
            if lost > 0 {
                return Err(format!("{what}: {lost} client(s) failed or disconnected"));
            }
            let duplicates = self.duplicates();
            if duplicates > 0 {
                return Err(format!("{what}: {duplicates} message(s) delivered twice"));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!("{what}: timed out"));
            }
            // A stale permit only costs one more check round.
            let _ = tokio::time::timeout(left, self.changed.notified()).await;
        }
    }
}

/// Where and as whom a client connects.
#[derive(Debug, Clone)]
pub struct ClientSpec {
    /// The gateway's port on 127.0.0.1.
    pub port: u16,
    /// The site's namespace, without the slash.
    pub namespace: String,
    /// The handshake token (the demo site makes it the user `user_<token>`).
    pub token: String,
    /// Engine.IO protocol: 4 (Socket.IO 5 clients) or 3 (Socket.IO 2, the original's).
    pub eio: u8,
}

/// Runs one client until its connection ends; `admission` is released once it is admitted
/// (or failed), which bounds how many handshakes are in flight at once.
pub async fn run_client(spec: ClientSpec, tally: Arc<Tally>, admission: OwnedSemaphorePermit) {
    let mut admission = Some(admission);
    let result = session(&spec, &tally, &mut admission).await;
    drop(admission);
    if let Err(error) = result {
        eprintln!("client {}: {error}", spec.token);
    }
    tally.count_lost();
}

/// How often an EIO3 client pings (the gateway's default pingInterval).
const EIO3_PING_EVERY: Duration = Duration::from_secs(25);

/// The WebSocket handshake plus the namespace CONNECT must finish within this.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(60);

async fn session(
    spec: &ClientSpec,
    tally: &Tally,
    admission: &mut Option<OwnedSemaphorePermit>,
) -> Result<(), String> {
    let started = Instant::now();
    // The token rides in the query too: an EIO3 client has no CONNECT auth object.
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO={}&transport=websocket&token={}&deviceId=d",
        spec.port,
        spec.eio,
        wire::percent_encode(&spec.token)
    );
    let mut seen = vec![false; usize::try_from(tally.messages()).unwrap_or(0)];
    // An EIO3 client pings; an EIO4 server does. Long phases outlast pingInterval + pingTimeout.
    let mut ping = tokio::time::interval(EIO3_PING_EVERY);
    ping.tick().await;
    let connect = async {
        let stream = TcpStream::connect(("127.0.0.1", spec.port)).await?;
        stream.set_nodelay(true)?;
        Ok::<_, std::io::Error>(stream)
    };
    let stream = tokio::time::timeout(ADMISSION_TIMEOUT, connect)
        .await
        .map_err(|_| "TCP connect timed out".to_owned())?
        .map_err(|error| format!("TCP connect: {error}"))?;
    let (mut ws, _) = tokio::time::timeout(
        ADMISSION_TIMEOUT,
        async_tungstenite::client_async(url, stream.compat()),
    )
    .await
    .map_err(|_| "WebSocket handshake timed out".to_owned())?
    .map_err(|error| format!("WebSocket handshake: {error}"))?;

    loop {
        let next = if admission.is_some() {
            let left = ADMISSION_TIMEOUT.saturating_sub(started.elapsed());
            tokio::time::timeout(left, ws.next())
                .await
                .map_err(|_| "not admitted in time".to_owned())?
        } else if spec.eio == 3 {
            tokio::select! {
                next = ws.next() => next,
                _ = ping.tick() => {
                    ws.send(Message::text("2"))
                        .await
                        .map_err(|error| format!("WebSocket send: {error}"))?;
                    continue;
                }
            }
        } else {
            ws.next().await
        };
        let Some(message) = next else {
            return Err("server closed the connection".to_owned());
        };
        let text = match message.map_err(|error| format!("WebSocket: {error}"))? {
            Message::Text(text) => text,
            Message::Close(_) => return Err("server closed the connection".to_owned()),
            _ => continue,
        };
        let reply = match wire::parse_server_packet(text.as_str(), &spec.namespace) {
            ServerPacket::Open if spec.eio == 3 => Some(format!("40/{}", spec.namespace)),
            ServerPacket::Open => Some(wire::connect_packet(&spec.namespace, &spec.token, "d")),
            ServerPacket::Ping => Some("3".to_owned()),
            ServerPacket::ConnectError(frame) => return Err(format!("refused: {frame}")),
            ServerPacket::Event {
                ack,
                name,
                first_arg,
            } => {
                if name == "_settings" && admission.take().is_some() {
                    tally.count_admitted();
                }
                if let Some(ack) = ack {
                    ws.send(Message::text(wire::ack_packet(&spec.namespace, ack)))
                        .await
                        .map_err(|error| format!("WebSocket send: {error}"))?;
                }
                for index in wire::bench_indices(&name, first_arg.as_ref(), BENCH_EVENT) {
                    tally.count_delivery(&mut seen, index);
                }
                None
            }
            ServerPacket::Other => None,
        };
        if let Some(reply) = reply {
            ws.send(Message::text(reply))
                .await
                .map_err(|error| format!("WebSocket send: {error}"))?;
        }
    }
}

/// A set of clients sharing one [`Tally`]; their connections close when it is dropped.
#[derive(Debug)]
pub struct Fleet {
    /// Their progress.
    pub tally: Arc<Tally>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    handshakes: Arc<tokio::sync::Semaphore>,
}

impl Fleet {
    /// No clients yet; they will count messages `0..messages`, admitting at most `parallel` at
    /// once.
    pub fn new(messages: u64, parallel: usize) -> Fleet {
        Fleet {
            tally: Arc::new(Tally::new(messages)),
            tasks: Vec::new(),
            handshakes: Arc::new(tokio::sync::Semaphore::new(parallel.max(1))),
        }
    }

    /// Starts clients `range` (client `i` has token `<token_prefix><i>`) and waits until all
    /// clients so far are admitted.
    pub async fn connect(
        &mut self,
        template: &ClientSpec,
        token_prefix: &str,
        range: std::ops::Range<u64>,
        deadline: Instant,
    ) -> Result<(), String> {
        let target = self.tally.admitted() + (range.end - range.start);
        for index in range {
            let permit =
                tokio::time::timeout_at(deadline.into(), self.handshakes.clone().acquire_owned())
                    .await
                    .map_err(|_| format!("admitting clients: timed out at client {index}"))?
                    .map_err(|_| "admitting clients: semaphore closed".to_owned())?;
            if self.tally.lost() > 0 {
                break;
            }
            let spec = ClientSpec {
                token: format!("{token_prefix}{index}"),
                ..template.clone()
            };
            self.tasks
                .push(tokio::spawn(run_client(spec, self.tally.clone(), permit)));
        }
        self.tally
            .wait_for("admitting clients", deadline, |tally| {
                tally.admitted() >= target
            })
            .await
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
