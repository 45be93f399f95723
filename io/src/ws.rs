//! One task per WebSocket: reads frames into the driver and writes what the driver queued.
//!
//! Idle cost is the budget (BENCHMARKS.md: ≤ 8 KiB RSS per idle connection), so the read buffer
//! starts small, a lone frame goes straight to the socket, and the outbound queue holds no
//! storage while empty and is bounded by the driver (a peer that does not read is closed, never
//! buffered for). Frames that wait together go out together: the run is collected under the
//! WebSocket library ([`Coalesce`]) and written with one system call. A lone small frame is
//! framed here and written directly, without the library's buffer, and the read side has a
//! waker of its own, so a wake-up for a frame to write does not poll it (BENCHMARKS.md,
//! "Broadcast and the write path, round 2").

use std::collections::VecDeque;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use async_tungstenite::WebSocketStream;
use async_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use async_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use async_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use courier_core::net::{ConnId, WsFrame};
use futures_io::AsyncWrite;
use futures_lite::{StreamExt, future};

use crate::coalesce::Coalesce;
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
/// A run of queued frames written with one system call stops growing past this many bytes.
const RUN_BYTES: usize = 64 * 1024;

/// A WebSocket connection task.
pub(crate) struct Pump<R: Runtime> {
    pub(crate) runtime: R,
    pub(crate) conn: ConnId,
    pub(crate) driver: DriverHandle,
    pub(crate) outbound: OutboundReceiver,
    pub(crate) max_payload: usize,
    pub(crate) guard: TaskGuard,
}

enum Step {
    /// A frame was written directly.
    Written,
    /// A direct write found the peer gone.
    Failed,
    /// A direct write went out in part: the rest follows before anything else.
    Rest(Vec<u8>),
    Outbound(Option<ConnCommand>),
    Inbound(Option<Result<Message, WsError>>),
}

impl<R: Runtime> Pump<R> {
    /// Waits for the upgrade, then pumps until either side closes. Always ends by telling the
    /// driver the connection is gone (ignored when the driver closed it).
    ///
    /// The future is the connection's one long-lived allocation, so its layout is kept tight:
    /// an `async move` block holds `self` once (an `async fn` would keep its arguments twice),
    /// the set-up future is boxed for its short life, and the stream is lent to `pump`.
    #[expect(
        clippy::manual_async_fn,
        reason = "an `async fn` would hold `self` twice in the connection's long-lived future"
    )]
    pub(crate) fn run(
        self,
        on_upgrade: hyper::upgrade::OnUpgrade,
    ) -> impl Future<Output = ()> + Send + 'static {
        async move {
            if let Ok(upgraded) = on_upgrade.await {
                let config = WebSocketConfig::default()
                    .read_buffer_size(READ_BUFFER)
                    // Every write goes out at once: nothing accumulates per connection.
                    .write_buffer_size(0)
                    .max_write_buffer_size(self.max_payload.saturating_mul(2).max(64 * 1024))
                    .max_message_size(Some(self.max_payload))
                    .max_frame_size(Some(self.max_payload));
                let stream = Coalesce::new(HyperIo(upgraded));
                let handshake =
                    WebSocketStream::from_raw_socket(stream, Role::Server, Some(config));
                // Boxed: it lives for a moment and is larger than the stream it yields.
                let mut ws = Box::pin(handshake).await;
                // By reference: an `async fn` keeps a by-value argument twice in its future.
                self.pump(&mut ws).await;
            }
            // The control queue is unbounded: this never waits (and keeps no send future in the
            // task).
            let _ = self.driver.control.try_send(Input::WsClosed(self.conn));
            drop(self.guard);
        }
    }

    /// The task's future is allocated once and lives as long as the connection, sized for its
    /// largest state; so the larger states (a write, a driver backlog, the close handshake) are
    /// boxed while they last, and an idle connection pays for little more than the stream.
    async fn pump<S>(&self, ws: &mut WebSocketStream<Coalesce<S>>)
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        // The read side is polled through its own waker, and only after that waker fired:
        // most wake-ups of a busy connection are the driver's frames, and polling the
        // WebSocket's read side for each of them (zeroing the read buffer, re-registering read
        // interest three times, a read attempt) cost more than writing the frame's headers.
        let inbound = self.outbound.inbound_waker();
        // The WebSocket library may hold bytes of its own to write: a pong or a close reply it
        // queued while reading a control frame. While it may, every write goes through it;
        // otherwise a small frame is written directly (see `try_write_direct`).
        let mut library_may_hold = false;
        loop {
            // Outbound first, as the driver's word (a close) wins; a hand-written poll keeps the
            // waiting state to two references.
            let step = future::poll_fn(|cx| {
                if let Poll::Ready(command) = self.outbound.poll_recv(cx) {
                    // The usual case, a lone small frame, is written here and now.
                    if !library_may_hold
                        && let Some(ConnCommand::Frame(frame)) = &command
                        && self.outbound.is_empty()
                    {
                        match try_write_direct(ws, cx, frame) {
                            Direct::Written => return Poll::Ready(Step::Written),
                            Direct::Failed => return Poll::Ready(Step::Failed),
                            Direct::Partly(rest) => return Poll::Ready(Step::Rest(rest)),
                            Direct::NotStarted => {}
                        }
                    }
                    return Poll::Ready(Step::Outbound(command));
                }
                if self.outbound.take_inbound_wake() {
                    let read = ws.poll_next(&mut Context::from_waker(&inbound));
                    if read.is_ready() {
                        // More may be buffered: poll again next time round.
                        self.outbound.set_inbound_wake();
                    }
                    return read.map(Step::Inbound);
                }
                Poll::Pending
            });
            match step.await {
                Step::Written => {}
                Step::Failed => return,
                Step::Rest(rest) => {
                    if !Box::pin(self.write_rest(ws, rest)).await {
                        return;
                    }
                }
                Step::Outbound(Some(ConnCommand::Frame(frame))) => {
                    let written = match self.outbound.try_recv() {
                        // One frame, one write (the usual case when it could not go directly).
                        None => Box::pin(self.write(ws, to_message(frame))).await,
                        Some(next) => match Box::pin(self.write_run(ws, frame, next)).await {
                            Run::Written => true,
                            Run::Failed => false,
                            Run::ThenClose(code) => {
                                Box::pin(self.close(ws, code)).await;
                                return;
                            }
                        },
                    };
                    if !written {
                        return;
                    }
                    if library_may_hold {
                        // Its last write went through the library and completed: it holds
                        // nothing now.
                        library_may_hold = false;
                    }
                }
                Step::Outbound(Some(ConnCommand::Close(code))) => {
                    Box::pin(self.close(ws, code)).await;
                    return;
                }
                Step::Outbound(None) => {
                    // The driver dropped the queue: overflow, or shutdown past its grace.
                    Box::pin(self.close(ws, SLOW_CONSUMER)).await;
                    return;
                }
                Step::Inbound(Some(Ok(message))) => {
                    let frame = match message {
                        Message::Text(text) => WsFrame::Text(text.into()),
                        Message::Binary(data) => WsFrame::Binary(data),
                        // Pings are answered by tungstenite; a peer close is answered there too
                        // and the stream then ends.
                        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => {
                            library_may_hold = true;
                            continue;
                        }
                        Message::Frame(_) => {
                            library_may_hold = true;
                            continue;
                        }
                    };
                    let backlog = match self.driver.data.try_send(Input::WsFrame(self.conn, frame))
                    {
                        Ok(()) => None,
                        Err(async_channel::TrySendError::Full(input)) => Some(self.forward(input)),
                        Err(async_channel::TrySendError::Closed(_)) => return,
                    };
                    if let Some(forwarded) = backlog
                        && !forwarded.await
                    {
                        return;
                    }
                }
                Step::Inbound(Some(Err(WsError::Capacity(_)))) => {
                    Box::pin(self.close(ws, MESSAGE_TOO_BIG)).await;
                    return;
                }
                // Peer gone or protocol error (tungstenite answered with a close frame where
                // the protocol asks for one).
                Step::Inbound(Some(Err(_))) | Step::Inbound(None) => return,
            }
        }
    }

    /// Writes one frame. False when the peer is gone or has not taken the frame within
    /// `WRITE_STALL`.
    async fn write<S>(&self, ws: &mut WebSocketStream<Coalesce<S>>, message: Message) -> bool
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        self.within_stall(async { ws.send(message).await.is_ok() })
            .await
    }

    /// Writes the rest of a frame whose first bytes went out directly. False when the peer is
    /// gone or has not taken it within `WRITE_STALL`.
    async fn write_rest<S>(&self, ws: &mut WebSocketStream<Coalesce<S>>, rest: Vec<u8>) -> bool
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        self.within_stall(async {
            futures_lite::AsyncWriteExt::write_all(ws.get_mut(), &rest)
                .await
                .is_ok()
        })
        .await
    }

    /// Writes `first`, `next` and whatever else waits in the queue (up to [`RUN_BYTES`]) with
    /// one system call. A close found in the queue ends the run: it is sent after it.
    async fn write_run<S>(
        &self,
        ws: &mut WebSocketStream<Coalesce<S>>,
        first: WsFrame,
        next: ConnCommand,
    ) -> Run
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        ws.get_mut().hold();
        // Held, every send completes at once: its bytes only land in the run's buffer.
        let mut sent = ws.send(to_message(first)).await.is_ok();
        let mut close = None;
        let mut command = Some(next);
        while sent && let Some(queued) = command.take() {
            match queued {
                ConnCommand::Frame(frame) => sent = ws.send(to_message(frame)).await.is_ok(),
                ConnCommand::Close(code) => close = Some(code),
            }
            if close.is_none() && ws.get_ref().held_len() < RUN_BYTES {
                command = self.outbound.try_recv();
            }
        }
        ws.get_mut().release();
        let flushed = self
            .within_stall(async {
                futures_lite::AsyncWriteExt::flush(ws.get_mut())
                    .await
                    .is_ok()
            })
            .await;
        match (sent && flushed, close) {
            (false, _) => Run::Failed,
            (true, Some(code)) => Run::ThenClose(code),
            (true, None) => Run::Written,
        }
    }

    /// Runs a write to its end; false when it fails or the peer has not taken it within
    /// `WRITE_STALL`.
    async fn within_stall(&self, write: impl Future<Output = bool>) -> bool {
        let stall_limit = self.runtime.now() + WRITE_STALL;
        let mut write = pin!(write);
        // Almost every write completes at once; only a blocked one needs the timer.
        if let Some(written) = future::poll_once(write.as_mut()).await {
            return written;
        }
        // A peer that stops reading stalls the write; the queue behind it then overflows in
        // the driver, but this task must not wait for ever either.
        let stall = Box::pin(self.runtime.sleep_until(stall_limit));
        future::or(write, async {
            stall.await;
            false
        })
        .await
    }

    /// Hands a received frame to a backlogged driver once it has room (the peer's reads wait
    /// with it). False when the driver is gone.
    fn forward(&self, input: Input) -> Pin<Box<impl Future<Output = bool> + '_>> {
        Box::pin(async move { self.driver.data.send(input).await.is_ok() })
    }

    /// Sends a close frame and waits briefly for the peer's, so the close is clean. Code 1005
    /// ("no status received") is never written: it means a close frame without a code.
    async fn close<S>(&self, ws: &mut WebSocketStream<S>, code: u16)
    where
        S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
    {
        let frame = (code != 1005).then(|| CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(""),
        });
        let handshake = async {
            if ws.close(frame).await.is_ok() {
                while let Some(Ok(_)) = ws.next().await {}
            }
        };
        future::or(handshake, self.runtime.sleep(CLOSE_WAIT)).await;
    }
}

/// How a run of frames ended.
enum Run {
    Written,
    Failed,
    /// Written; a close came next in the queue.
    ThenClose(u16),
}

/// Frames written directly are at most this long (header included): they are framed on the
/// stack.
const DIRECT_FRAME: usize = 512;

/// How a direct write attempt went.
enum Direct {
    /// The whole frame was written.
    Written,
    /// The socket took none of it (or the frame is not for the direct path): nothing was
    /// written, the library may write it.
    NotStarted,
    /// The socket took the first bytes; these must follow before anything else.
    Partly(Vec<u8>),
    /// The peer is gone.
    Failed,
}

/// Writes a small data frame straight to the stream, framed here, in one write attempt.
///
/// The WebSocket library would copy the frame into its own buffer, frame it there and register
/// its wakers on the way (≈ 5 % of a broadcast delivery's CPU); a server's frame is just a
/// header and the payload, unmasked (RFC 6455, 5.2). Only used while the library holds nothing
/// of its own to write, so bytes never interleave; a frame that is too large, or text that is
/// not UTF-8 (which the library's path repairs), is left to the library.
fn try_write_direct<S>(
    ws: &mut WebSocketStream<Coalesce<S>>,
    cx: &mut Context<'_>,
    frame: &WsFrame,
) -> Direct
where
    S: futures_io::AsyncRead + futures_io::AsyncWrite + Unpin,
{
    let (opcode, payload) = match frame {
        WsFrame::Text(bytes) => (0x81u8, bytes),
        WsFrame::Binary(bytes) => (0x82u8, bytes),
    };
    if opcode == 0x81 && std::str::from_utf8(payload).is_err() {
        return Direct::NotStarted;
    }
    let mut buffer = [0u8; DIRECT_FRAME];
    let header = match u16::try_from(payload.len()) {
        Ok(len @ 0..=125) => {
            buffer[..2].copy_from_slice(&[opcode, len as u8]);
            2
        }
        Ok(len) => {
            buffer[0] = opcode;
            buffer[1] = 126;
            buffer[2..4].copy_from_slice(&len.to_be_bytes());
            4
        }
        Err(_) => return Direct::NotStarted,
    };
    let total = header + payload.len();
    if total > DIRECT_FRAME {
        return Direct::NotStarted;
    }
    buffer[header..total].copy_from_slice(payload);
    match Pin::new(ws.get_mut()).poll_write(cx, &buffer[..total]) {
        Poll::Ready(Ok(written)) if written >= total => Direct::Written,
        Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => Direct::Failed,
        Poll::Ready(Ok(written)) => Direct::Partly(buffer[written..total].to_vec()),
        Poll::Pending => Direct::NotStarted,
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

/// Creates a connection's outbound queue: the driver's end and the connection task's end.
///
/// A `Mutex<VecDeque>` and one waker instead of a channel: an idle connection's queue is one
/// small allocation, where a channel keeps a block of slots (≈ 1.5 KB for `async-channel`'s
/// unbounded one) and its event lists alive for the connection's whole life. The queue is
/// bounded by the driver ([`OutboundSender::send_frame`]'s limit) and its buffer is released
/// whenever it drains, so an idle connection holds no frame storage at all.
pub(crate) fn outbound_queue() -> (OutboundSender, OutboundReceiver) {
    let shared = Arc::new(Outbound::default());
    (
        OutboundSender(Arc::clone(&shared)),
        OutboundReceiver(shared),
    )
}

#[derive(Debug)]
struct Outbound {
    state: Mutex<OutboundState>,
    /// The read side may have something: its waker fired (or it was never polled), so the
    /// task polls it on its next turn.
    inbound_woken: AtomicBool,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound {
            state: Mutex::default(),
            inbound_woken: AtomicBool::new(true),
        }
    }
}

/// The read side's waker: it marks the read side as worth polling, then wakes the task the
/// way a queued frame does (through the waker the task left in the queue when it waited).
impl Wake for Outbound {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.inbound_woken.store(true, Ordering::Release);
        let waker = self.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[derive(Debug, Default)]
struct OutboundState {
    /// The oldest command when it is the only one: a connection that gets one frame at a time
    /// (the usual fan-out) never allocates queue storage.
    next: Option<ConnCommand>,
    /// Commands after `next` (only filled while `next` is, so the order is `next`, then these).
    commands: VecDeque<ConnCommand>,
    /// The connection task, when it waits for a command.
    waker: Option<Waker>,
    /// No more commands will come: the driver let go of its end, or the task ended.
    closed: bool,
}

impl OutboundState {
    fn len(&self) -> usize {
        usize::from(self.next.is_some()) + self.commands.len()
    }

    fn push(&mut self, command: ConnCommand) {
        if self.next.is_none() && self.commands.is_empty() {
            self.next = Some(command);
        } else {
            self.commands.push_back(command);
        }
    }

    fn pop(&mut self) -> Option<ConnCommand> {
        if let Some(command) = self.next.take() {
            return Some(command);
        }
        let command = self.commands.pop_front()?;
        if self.commands.is_empty() {
            // Release the buffer: an idle connection keeps no frame storage.
            self.commands = VecDeque::new();
        }
        Some(command)
    }
}

impl Outbound {
    fn lock(&self) -> MutexGuard<'_, OutboundState> {
        // Nothing in a critical section can panic; a poisoned lock still holds a sound queue.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the queue closed (dropping what waits when `discard`) and wakes the task.
    fn close(&self, discard: bool) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            if discard {
                state.next = None;
                state.commands = VecDeque::new();
            }
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The driver's end of a connection's outbound queue. Dropping it closes the queue after what
/// is already queued.
#[derive(Debug)]
pub(crate) struct OutboundSender(Arc<Outbound>);

impl OutboundSender {
    /// Queues a frame behind the earlier ones. False when `limit` commands already wait: the
    /// peer does not read fast enough. A frame for a task that has already ended is dropped
    /// quietly (its `WsClosed` is on its way to the driver).
    pub(crate) fn send_frame(&self, frame: WsFrame, limit: usize) -> bool {
        let waker = {
            let mut state = self.0.lock();
            if state.closed {
                return true;
            }
            if state.len() >= limit {
                return false;
            }
            state.push(ConnCommand::Frame(frame));
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    /// Queues a close frame behind the queued frames (whatever the limit: the close must go
    /// out) and closes the queue.
    pub(crate) fn close_with(self, code: u16) {
        {
            let mut state = self.0.lock();
            if !state.closed {
                state.push(ConnCommand::Close(code));
            }
        }
        // Dropping `self` closes the queue and wakes the task.
    }

    /// Throws away whatever is queued and closes the queue, so the connection task ends without
    /// writing more to a peer that does not read.
    pub(crate) fn abort(self) {
        self.0.close(true);
    }
}

impl Drop for OutboundSender {
    fn drop(&mut self) {
        self.0.close(false);
    }
}

/// The connection task's end of its outbound queue. Dropping it discards what still waits.
#[derive(Debug)]
pub(crate) struct OutboundReceiver(Arc<Outbound>);

impl OutboundReceiver {
    /// The next command, in the order queued; `None` once the queue is closed and empty.
    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<ConnCommand>> {
        let mut state = self.0.lock();
        if let Some(command) = state.pop() {
            return Poll::Ready(Some(command));
        }
        if state.closed {
            return Poll::Ready(None);
        }
        match &mut state.waker {
            Some(waker) => waker.clone_from(cx.waker()),
            None => state.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl OutboundReceiver {
    /// The next command if one is queued already (never waits).
    fn try_recv(&self) -> Option<ConnCommand> {
        self.0.lock().pop()
    }

    /// Nothing waits in the queue.
    fn is_empty(&self) -> bool {
        self.0.lock().len() == 0
    }

    /// The waker to poll the WebSocket's read side with (see [`OutboundReceiver::take_inbound_wake`]).
    fn inbound_waker(&self) -> Waker {
        Waker::from(Arc::clone(&self.0))
    }

    /// Whether the read side is worth polling (its waker fired since it was last pending, or it
    /// was never polled); clears the mark. A read side that answered `Pending` has arranged to
    /// wake [`OutboundReceiver::inbound_waker`], so until then polling it again finds nothing.
    fn take_inbound_wake(&self) -> bool {
        self.0.inbound_woken.swap(false, Ordering::AcqRel)
    }

    /// Marks the read side as worth polling on the next turn.
    fn set_inbound_wake(&self) {
        self.0.inbound_woken.store(true, Ordering::Release);
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        self.0.close(true);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;

    use super::*;

    /// Counts its wake-ups.
    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn frame(text: &'static str) -> WsFrame {
        WsFrame::Text(Bytes::from_static(text.as_bytes()))
    }

    /// Polls once with a no-op waker.
    fn poll(receiver: &OutboundReceiver) -> Poll<Option<ConnCommand>> {
        receiver.poll_recv(&mut Context::from_waker(Waker::noop()))
    }

    fn text_of(poll: Poll<Option<ConnCommand>>) -> String {
        match poll {
            Poll::Ready(Some(ConnCommand::Frame(WsFrame::Text(text)))) => {
                String::from_utf8_lossy(&text).into_owned()
            }
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    fn buffer_capacity(receiver: &OutboundReceiver) -> usize {
        receiver.0.lock().commands.capacity()
    }

    #[test]
    fn one_frame_at_a_time_needs_no_queue_storage() {
        let (sender, receiver) = outbound_queue();
        for text in ["a", "b"] {
            assert!(sender.send_frame(frame(text), 8));
            assert_eq!(buffer_capacity(&receiver), 0);
            assert_eq!(text_of(poll(&receiver)), text);
        }
        assert!(receiver.try_recv().is_none());
    }

    #[test]
    fn try_recv_takes_what_waits_in_order_without_waiting() {
        let (sender, receiver) = outbound_queue();
        for text in ["1", "2", "3"] {
            assert!(sender.send_frame(frame(text), 8));
        }
        assert_eq!(text_of(poll(&receiver)), "1");
        assert!(sender.send_frame(frame("4"), 8));
        for text in ["2", "3", "4"] {
            assert_eq!(text_of(Poll::Ready(receiver.try_recv())), text);
        }
        assert!(receiver.try_recv().is_none());
        assert_eq!(buffer_capacity(&receiver), 0);
    }

    #[test]
    fn frames_come_out_in_order_and_the_drained_queue_holds_no_buffer() {
        let (sender, receiver) = outbound_queue();
        assert_eq!(
            buffer_capacity(&receiver),
            0,
            "a fresh queue allocates nothing"
        );
        for text in ["a", "b", "c"] {
            assert!(sender.send_frame(frame(text), 8));
        }
        assert!(buffer_capacity(&receiver) >= 3);
        assert_eq!(text_of(poll(&receiver)), "a");
        assert_eq!(text_of(poll(&receiver)), "b");
        assert_eq!(text_of(poll(&receiver)), "c");
        assert_eq!(
            buffer_capacity(&receiver),
            0,
            "drained: the buffer is released"
        );
        assert!(poll(&receiver).is_pending());
    }

    #[test]
    fn a_full_queue_refuses_the_next_frame() {
        let (sender, receiver) = outbound_queue();
        assert!(sender.send_frame(frame("1"), 2));
        assert!(sender.send_frame(frame("2"), 2));
        assert!(!sender.send_frame(frame("3"), 2), "over the limit");
        assert_eq!(text_of(poll(&receiver)), "1");
        assert!(sender.send_frame(frame("3"), 2), "room again after a read");
    }

    #[test]
    fn a_waiting_task_is_woken_by_a_frame_and_by_the_close() {
        let (sender, receiver) = outbound_queue();
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        assert!(receiver.poll_recv(&mut cx).is_pending());
        assert!(sender.send_frame(frame("x"), 4));
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(text_of(receiver.poll_recv(&mut cx)), "x");
        assert!(receiver.poll_recv(&mut cx).is_pending());
        drop(sender);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert!(matches!(receiver.poll_recv(&mut cx), Poll::Ready(None)));
    }

    #[test]
    fn a_direct_write_is_the_frame_the_library_would_write() {
        let text = "42/cast,[\"bench\",1]".to_owned();
        let long = "x".repeat(300);
        let frames = [
            WsFrame::Text(Bytes::from(text.clone())),
            WsFrame::Text(Bytes::from(long.clone())),
            WsFrame::Binary(Bytes::from_static(&[1, 2, 3])),
            WsFrame::Text(Bytes::new()),
        ];
        let written = future::block_on(async {
            let stream = Coalesce::new(futures_lite::io::Cursor::new(Vec::new()));
            let mut ws = WebSocketStream::from_raw_socket(stream, Role::Server, None).await;
            for frame in &frames {
                let outcome =
                    future::poll_fn(|cx| Poll::Ready(try_write_direct(&mut ws, cx, frame))).await;
                assert!(matches!(outcome, Direct::Written));
            }
            let too_long = WsFrame::Text(Bytes::from("y".repeat(DIRECT_FRAME)));
            let outcome =
                future::poll_fn(|cx| Poll::Ready(try_write_direct(&mut ws, cx, &too_long))).await;
            assert!(matches!(outcome, Direct::NotStarted), "left to the library");
            let not_utf8 = WsFrame::Text(Bytes::from_static(&[0xff, 0xfe]));
            let outcome =
                future::poll_fn(|cx| Poll::Ready(try_write_direct(&mut ws, cx, &not_utf8))).await;
            assert!(
                matches!(outcome, Direct::NotStarted),
                "repaired by the library"
            );
            ws.get_ref().get_ref().get_ref().clone()
        });
        // A client reads them back as the messages they were.
        let mut client = async_tungstenite::tungstenite::protocol::WebSocket::from_raw_socket(
            std::io::Cursor::new(written),
            Role::Client,
            None,
        );
        let read = |client: &mut async_tungstenite::tungstenite::protocol::WebSocket<_>| {
            client.read().expect("a frame")
        };
        assert_eq!(read(&mut client), Message::Text(text.into()));
        assert_eq!(read(&mut client), Message::Text(long.into()));
        assert_eq!(
            read(&mut client),
            Message::Binary(Bytes::from_static(&[1, 2, 3]))
        );
        assert_eq!(read(&mut client), Message::Text("".into()));
    }

    #[test]
    fn the_read_side_is_polled_only_after_its_waker_fired() {
        let (_sender, receiver) = outbound_queue();
        assert!(
            receiver.take_inbound_wake(),
            "a fresh read side is polled once"
        );
        assert!(!receiver.take_inbound_wake(), "then not until it is woken");
        let counter = Arc::new(CountingWaker::default());
        let task = Waker::from(Arc::clone(&counter));
        assert!(
            receiver
                .poll_recv(&mut Context::from_waker(&task))
                .is_pending()
        );
        receiver.inbound_waker().wake_by_ref();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "the task is woken");
        assert!(receiver.take_inbound_wake());
        assert!(!receiver.take_inbound_wake());
        // Woken while the task is awake already (its waker taken): marked, no second wake.
        receiver.inbound_waker().wake();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert!(receiver.take_inbound_wake());
    }

    #[test]
    fn a_close_goes_out_after_the_queued_frames_even_when_full() {
        let (sender, receiver) = outbound_queue();
        assert!(sender.send_frame(frame("last"), 1));
        sender.close_with(1000);
        assert_eq!(text_of(poll(&receiver)), "last");
        assert!(matches!(
            poll(&receiver),
            Poll::Ready(Some(ConnCommand::Close(1000)))
        ));
        assert!(matches!(poll(&receiver), Poll::Ready(None)));
    }

    #[test]
    fn dropping_the_sender_ends_the_queue_after_what_waits() {
        let (sender, receiver) = outbound_queue();
        assert!(sender.send_frame(frame("kept"), 4));
        drop(sender);
        assert_eq!(text_of(poll(&receiver)), "kept");
        assert!(matches!(poll(&receiver), Poll::Ready(None)));
    }

    #[test]
    fn an_abort_discards_what_waits() {
        let (sender, receiver) = outbound_queue();
        assert!(sender.send_frame(frame("dropped"), 4));
        sender.abort();
        assert!(matches!(poll(&receiver), Poll::Ready(None)));
        assert_eq!(buffer_capacity(&receiver), 0);
    }

    #[test]
    fn frames_for_an_ended_task_are_dropped_without_counting_as_overflow() {
        let (sender, receiver) = outbound_queue();
        let shared = Arc::clone(&receiver.0);
        drop(receiver);
        for _ in 0..4 {
            assert!(sender.send_frame(frame("nobody reads"), 1));
        }
        assert_eq!(shared.lock().len(), 0);
        sender.close_with(1000);
        assert_eq!(shared.lock().len(), 0);
    }

    #[test]
    fn recv_waits_for_a_frame_sent_from_another_thread() {
        let (sender, receiver) = outbound_queue();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            assert!(sender.send_frame(frame("late"), 4));
        });
        let command = future::block_on(future::poll_fn(|cx| receiver.poll_recv(cx)));
        assert!(matches!(command, Some(ConnCommand::Frame(_))));
        writer.join().expect("the writer thread");
        assert!(future::block_on(future::poll_fn(|cx| receiver.poll_recv(cx))).is_none());
    }
}
#[cfg(test)]
mod task_size {
    //! The connection task's future is allocated once per connection and lives as long as it:
    //! its size is idle memory (see BENCHMARKS.md). This pins it near the size of the stream itself.

    use std::io;
    use std::net::SocketAddr;

    use super::*;
    use crate::hyper_glue::HyperIo;
    use crate::runtime::{BoxFuture, Listener};
    use std::time::Instant;

    type Stream = Coalesce<HyperIo<hyper::upgrade::Upgraded>>;

    /// A runtime that is never run: only its types matter here.
    #[derive(Clone)]
    struct TypesOnly;

    struct NoListener;

    impl Listener for NoListener {
        type Stream = futures_lite::io::Cursor<Vec<u8>>;

        async fn accept(&self) -> io::Result<(Self::Stream, SocketAddr)> {
            Err(io::ErrorKind::Unsupported.into())
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Err(io::ErrorKind::Unsupported.into())
        }
    }

    impl Runtime for TypesOnly {
        type Stream = futures_lite::io::Cursor<Vec<u8>>;
        type Listener = NoListener;
        type Sleep = std::future::Ready<()>;
        const NAME: &'static str = "types-only";

        fn spawn(&self, _future: BoxFuture<()>) {}

        fn now(&self) -> Instant {
            unreachable!("never run")
        }

        fn unix_ms(&self) -> u64 {
            unreachable!("never run")
        }

        fn sleep_until(&self, _deadline: Instant) -> Self::Sleep {
            std::future::ready(())
        }

        async fn bind(&self, _addr: SocketAddr) -> io::Result<NoListener> {
            Err(io::ErrorKind::Unsupported.into())
        }

        async fn connect(&self, _host: &str, _port: u16) -> io::Result<Self::Stream> {
            Err(io::ErrorKind::Unsupported.into())
        }

        fn shutdown_signal(&self) -> BoxFuture<()> {
            Box::pin(std::future::pending())
        }

        fn block_on<F: Future>(&self, _future: F) -> F::Output {
            unreachable!("never run")
        }
    }

    /// The size of the future `make` returns, without making one.
    fn future_size<A, B, F>(_make: impl FnOnce(A, B) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_idle_connection_task_is_little_more_than_its_stream() {
        let stream = std::mem::size_of::<WebSocketStream<Stream>>();
        let task = future_size(
            |pump: Pump<TypesOnly>, upgrade: hyper::upgrade::OnUpgrade| pump.run(upgrade),
        );
        let pump = future_size(
            |pump: &'static Pump<TypesOnly>, ws: &'static mut WebSocketStream<Stream>| {
                pump.pump(ws)
            },
        );
        assert!(pump <= 256, "the pump loop's own state is {pump} bytes");
        assert!(
            task <= stream + 384,
            "the task is {task} bytes for a {stream}-byte stream"
        );
    }
}
