//! A raw WebSocket client on std::net (RFC 6455, text frames only), for wire-level Engine.IO
//! checks a client library would hide: exact packets, and packets sent right before a close.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::http::find;

/// One WebSocket connection to `127.0.0.1`.
#[derive(Debug)]
pub struct RawWebSocket {
    stream: TcpStream,
    pending: Vec<u8>,
    mask_seed: u32,
}

impl RawWebSocket {
    /// Opens `ws://127.0.0.1:<port><target>`; panics unless the server switches protocols.
    pub fn connect(port: u16, target: &str) -> RawWebSocket {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect 127.0.0.1:{port}: {e}"));
        stream.set_nodelay(true).expect("set_nodelay");
        let request = format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .expect("write the upgrade request");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set_read_timeout");
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while find(&head, b"\r\n\r\n").is_none() {
            match stream.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => panic!(
                    "no upgrade answer for {target}: {:?}",
                    String::from_utf8_lossy(&head)
                ),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        assert!(
            head.starts_with("HTTP/1.1 101"),
            "upgrade refused for {target}: {head}"
        );
        RawWebSocket {
            stream,
            pending: Vec::new(),
            mask_seed: 0x9e37_79b9,
        }
    }

    /// Sends one masked text frame.
    pub fn send_text(&mut self, text: &str) {
        self.send_frame(0x1, text.as_bytes());
    }

    /// Sends a close frame (status 1000) and shuts the write side, as a client closing
    /// right after its last message does.
    pub fn close(mut self) {
        self.send_frame(0x8, &1000u16.to_be_bytes());
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        // Drain until the server closes too, so the close handshake completes.
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut sink = [0u8; 1024];
        while matches!(self.stream.read(&mut sink), Ok(n) if n > 0) {}
    }

    /// The next text message within `timeout`; `None` on timeout or when the server closed.
    /// Pings are answered; binary messages are returned lossily decoded.
    pub fn recv_text(&mut self, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        let mut message = Vec::new();
        loop {
            let (fin, opcode, payload) = self.read_frame(deadline)?;
            match opcode {
                0x8 => return None,
                0x9 => self.send_frame(0xA, &payload),
                0xA => {}
                _ => {
                    message.extend_from_slice(&payload);
                    if fin {
                        return Some(String::from_utf8_lossy(&message).into_owned());
                    }
                }
            }
        }
    }

    /// Reads until the server's close frame, within `timeout`: the messages that came before it
    /// and its status code (1005 when the frame carries none). `None` on timeout, or when the
    /// connection ended without a close frame.
    pub fn recv_close(&mut self, timeout: Duration) -> Option<(Vec<String>, u16)> {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let (_, opcode, payload) = self.read_frame(deadline)?;
            match opcode {
                0x8 => {
                    let code = match payload.get(..2) {
                        Some(&[high, low]) => u16::from_be_bytes([high, low]),
                        _ => 1005,
                    };
                    return Some((seen, code));
                }
                0x9 => self.send_frame(0xA, &payload),
                0xA => {}
                _ => seen.push(String::from_utf8_lossy(&payload).into_owned()),
            }
        }
    }

    /// Receives until a message satisfies `want`; returns every message up to and including
    /// it. Panics after 15 s.
    pub fn recv_until(&mut self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let deadline = Instant::now() + crate::wait::DEFAULT_TIMEOUT;
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            match self.recv_text(deadline - Instant::now()) {
                Some(m) => {
                    let done = want(&m);
                    seen.push(m);
                    if done {
                        return seen;
                    }
                }
                None => break,
            }
        }
        panic!("no wanted WebSocket message; got {seen:?}")
    }

    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        // Masking keys need not be secret here, only present (RFC 6455 §5.3).
        self.mask_seed = self
            .mask_seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        let mask = self.mask_seed.to_be_bytes();
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream
            .write_all(&frame)
            .expect("write a WebSocket frame");
    }

    /// One frame: (fin, opcode, payload); `None` on timeout or EOF.
    fn read_frame(&mut self, deadline: Instant) -> Option<Frame> {
        loop {
            if let Some((frame, used)) = parse_frame(&self.pending) {
                self.pending.drain(..used);
                return Some(frame);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .ok()?;
            let mut chunk = [0u8; 8192];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// One frame: whether it is final, its opcode, its (unmasked) payload.
type Frame = (bool, u8, Vec<u8>);

/// A complete server frame at the start of `data`, and how many bytes it used.
fn parse_frame(data: &[u8]) -> Option<(Frame, usize)> {
    let (&b0, &b1) = (data.first()?, data.get(1)?);
    let (fin, opcode, masked) = (b0 & 0x80 != 0, b0 & 0x0f, b1 & 0x80 != 0);
    let (len, mut at) = match b1 & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?])),
            4,
        ),
        127 => {
            let bytes: [u8; 8] = data.get(2..10)?.try_into().ok()?;
            (usize::try_from(u64::from_be_bytes(bytes)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let mask = if masked {
        let m: [u8; 4] = data.get(at..at + 4)?.try_into().ok()?;
        at += 4;
        Some(m)
    } else {
        None
    };
    let body = data.get(at..at + len)?;
    let payload = match mask {
        Some(m) => body.iter().enumerate().map(|(i, b)| b ^ m[i % 4]).collect(),
        None => body.to_vec(),
    };
    Some(((fin, opcode, payload), at + len))
}
