//! One task per WebSocket: reads frames into the driver and writes what the driver queued.
//!
//! Idle cost is the budget (DESIGN.md §6: ≤ 12 KB RSS per idle connection), so the read buffer
//! starts small, writes go straight to the socket, and the outbound queue is bounded by the
//! driver (a peer that does not read is closed, never buffered for).

use std::time::{Duration, Instant};

use async_channel::Receiver;
use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use courier_core::net::{ConnId, WsFrame};
use futures_lite::{StreamExt, future};

use crate::driver::{ConnCommand, DriverHandle, Input, TaskGuard};
use crate::hyper_glue::HyperIo;
use crate::runtime::Runtime;

/// Initial read buffer of a WebSocket; it grows for a large frame and shrinks back with the
/// buffer's own reuse.
const READ_BUFFER: usize = 1024;
/// How long a closing socket waits for the peer's close frame.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// Close code for a peer whose outbound queue overflowed (RFC 6455 1008, policy violation).
const SLOW_CONSUMER: u16 = 1008;
/// Close code for a message over `max_payload` (RFC 6455 1009).
const MESSAGE_TOO_BIG: u16 = 1009;
/// How long one frame may take to write before the peer counts as gone.
const WRITE_STALL: Duration = Duration::from_secs(30);

/// A WebSocket connection task.
pub(crate) struct Pump<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) conn: ConnId,
    pub(crate) driver: DriverHandle,
    pub(crate) outbound: Receiver<ConnCommand>,
    pub(crate) max_payload: usize,
    pub(crate) guard: TaskGuard,
}

enum Step {
    Outbound(Option<ConnCommand>),
    Inbound(Option<Result<Message, WsError>>),
}

impl<R: Runtime> Pump<R> {
    /// Waits for the upgrade, then pumps until either side closes. Always ends by telling the
    /// driver the connection is gone (ignored when the driver closed it).
    pub(crate) async fn run(self, on_upgrade: hyper::upgrade::OnUpgrade) {
        if let Ok(upgraded) = on_upgrade.await {
            let config = WebSocketConfig::default()
                .read_buffer_size(READ_BUFFER)
                // Every write goes out at once: nothing accumulates per connection.
                .write_buffer_size(0)
                .max_write_buffer_size(self.max_payload.saturating_mul(2).max(64 * 1024))
                .max_message_size(Some(self.max_payload))
                .max_frame_size(Some(self.max_payload));
            let ws =
                WebSocketStream::from_raw_socket(HyperIo(upgraded), Role::Server, Some(config))
                    .await;
            self.pump(ws).await;
        }
        let _ = self.driver.control.send(Input::WsClosed(self.conn)).await;
        drop(self.guard);
    }

    async fn pump<S>(&self, mut ws: WebSocketStream<S>)
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        loop {
            let outbound = async { Step::Outbound(self.outbound.recv().await.ok()) };
            let inbound = async { Step::Inbound(ws.next().await) };
            match future::or(outbound, inbound).await {
                Step::Outbound(Some(ConnCommand::Frame(frame))) => {
                    // A peer that stops reading stalls the write; the queue behind it then
                    // overflows in the driver, but this task must not wait for ever either.
                    let stall_limit = Instant::now() + WRITE_STALL;
                    let sent =
                        future::or(async { ws.send(to_message(frame)).await.is_ok() }, async {
                            self.runtime.sleep_until(stall_limit).await;
                            false
                        });
                    if !sent.await {
                        return;
                    }
                }
                Step::Outbound(Some(ConnCommand::Close(code))) => {
                    self.close(&mut ws, code).await;
                    return;
                }
                Step::Outbound(None) => {
                    // The driver dropped the queue: overflow, or shutdown past its grace.
                    self.close(&mut ws, SLOW_CONSUMER).await;
                    return;
                }
                Step::Inbound(Some(Ok(message))) => {
                    let frame = match message {
                        Message::Text(text) => WsFrame::Text(text.into()),
                        Message::Binary(data) => WsFrame::Binary(data),
                        // Pings are answered by tungstenite; a peer close is answered there too
                        // and the stream then ends.
                        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
                        Message::Frame(_) => continue,
                    };
                    if self
                        .driver
                        .data
                        .send(Input::WsFrame(self.conn, frame))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Step::Inbound(Some(Err(WsError::Capacity(_)))) => {
                    self.close(&mut ws, MESSAGE_TOO_BIG).await;
                    return;
                }
                // Peer gone or protocol error (tungstenite answered with a close frame where
                // the protocol asks for one).
                Step::Inbound(Some(Err(_))) | Step::Inbound(None) => return,
            }
        }
    }

    /// Sends a close frame and waits briefly for the peer's, so the close is clean.
    async fn close<S>(&self, ws: &mut WebSocketStream<S>, code: u16)
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(""),
        };
        let deadline = Instant::now() + CLOSE_WAIT;
        let handshake = async {
            if ws.close(Some(frame)).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        };
        future::or(handshake, self.runtime.sleep_until(deadline)).await;
    }
}

fn to_message(frame: WsFrame) -> Message {
    match frame {
        WsFrame::Text(bytes) => {
            if let Ok(text) = Utf8Bytes::try_from(bytes.clone()) {
                return Message::Text(text);
            }
            // The core only emits UTF-8; should it not, the peer still gets valid text.
            Message::Text(String::from_utf8_lossy(&bytes).into_owned().into())
        }
        WsFrame::Binary(bytes) => Message::Binary(bytes),
    }
}
