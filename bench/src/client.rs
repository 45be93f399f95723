//! One benchmark client: an Engine.IO 4 WebSocket that joins the site's namespace as its own
//! user, answers pings, and acknowledges and counts every `bench` event; and the counters all
//! clients share with the coordinating task.

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

    fn count_admitted(&self) {
        self.admitted.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    fn count_lost(&self) {
        self.lost.fetch_add(1, Ordering::AcqRel);
        self.changed.notify_one();
    }

    fn count_delivery(&self, index: u64) {
        let Some(count) = usize::try_from(index)
            .ok()
            .and_then(|index| self.deliveries.get(index))
        else {
            return;
        };
        count.fetch_add(1, Ordering::AcqRel);
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

/// The WebSocket handshake plus the namespace CONNECT must finish within this.
const ADMISSION_TIMEOUT: Duration = Duration::from_secs(60);

async fn session(
    spec: &ClientSpec,
    tally: &Tally,
    admission: &mut Option<OwnedSemaphorePermit>,
) -> Result<(), String> {
    let started = Instant::now();
    let url = format!(
        "ws://127.0.0.1:{}/socket.io/?EIO=4&transport=websocket",
        spec.port
    );
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
                if name == BENCH_EVENT
                    && let Some(index) = first_arg.as_ref().and_then(serde_json::Value::as_u64)
                {
                    tally.count_delivery(index);
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
