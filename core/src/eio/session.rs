//! One Engine.IO session's state: transport, buffered packets, heartbeat and upgrade deadlines.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::http::BodyKind;
use super::packet::Packet;
use super::{Config, Handshake, Protocol, payload};
use crate::net::{ConnId, Headers, RequestId, earliest};

/// Where the session's packets currently travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    /// HTTP long-polling.
    Polling,
    /// An accepted WebSocket.
    WebSocket(ConnId),
}

/// A WebSocket probing to take over a polling session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Upgrade {
    pub(crate) conn: ConnId,
    pub(crate) deadline: Instant,
    /// `2probe` was answered; polling GETs are released with noops from now on.
    pub(crate) probed: bool,
}

/// Heartbeat state; the direction differs per revision.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Heartbeat {
    /// v4: the server pings every interval and waits `ping_timeout` for the pong.
    ServerPings {
        next_ping: Option<Instant>,
        pong_deadline: Option<Instant>,
    },
    /// v3: the client pings; any packet from it resets the silence deadline.
    ClientPings { silence_deadline: Instant },
}

/// How polling bodies of this session are framed (fixed at the handshake, as engine.io does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PollingFormat {
    /// v3 `b64=1`: text payloads only.
    pub(crate) base64: bool,
    /// v3 `j=<index>`: JSONP callback index.
    pub(crate) jsonp: Option<String>,
}

/// A parked polling GET.
#[derive(Debug, Clone)]
pub(crate) struct PendingGet {
    pub(crate) request: RequestId,
    pub(crate) cors: Headers,
}

/// One session.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) sid: String,
    pub(crate) protocol: Protocol,
    pub(crate) handshake: Arc<Handshake>,
    pub(crate) transport: Transport,
    pub(crate) format: PollingFormat,
    pub(crate) outbox: VecDeque<Packet>,
    pub(crate) pending_get: Option<PendingGet>,
    pub(crate) upgrade: Option<Upgrade>,
    pub(crate) heartbeat: Heartbeat,
    /// Server-initiated close over polling with no GET parked: the `1` waits in the outbox
    /// until the next GET or this deadline.
    pub(crate) closing_deadline: Option<Instant>,
    /// While upgrading: when the parked GET is released with a noop.
    pub(crate) noop_deadline: Option<Instant>,
    /// The deadline under which the session is registered in the server's timer set.
    pub(crate) scheduled: Option<Instant>,
}

impl Session {
    pub(crate) fn new(
        sid: String,
        handshake: Arc<Handshake>,
        transport: Transport,
        format: PollingFormat,
        config: &Config,
        now: Instant,
    ) -> Session {
        let protocol = handshake.protocol();
        let heartbeat = match protocol {
            Protocol::V4 => Heartbeat::ServerPings {
                next_ping: Some(now + config.ping_interval),
                pong_deadline: None,
            },
            Protocol::V3 => Heartbeat::ClientPings {
                silence_deadline: now + config.ping_interval + config.ping_timeout,
            },
        };
        Session {
            sid,
            protocol,
            handshake,
            transport,
            format,
            outbox: VecDeque::new(),
            pending_get: None,
            upgrade: None,
            heartbeat,
            closing_deadline: None,
            noop_deadline: None,
            scheduled: None,
        }
    }

    /// The earliest instant at which something is due for this session.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let heartbeat = match self.heartbeat {
            Heartbeat::ServerPings {
                next_ping,
                pong_deadline,
            } => earliest(next_ping, pong_deadline),
            Heartbeat::ClientPings { silence_deadline } => Some(silence_deadline),
        };
        let upgrade = self.upgrade.map(|u| u.deadline);
        earliest(
            earliest(heartbeat, upgrade),
            earliest(self.closing_deadline, self.noop_deadline),
        )
    }

    /// Any packet from a v3 client proves it alive.
    pub(crate) fn note_client_activity(&mut self, config: &Config, now: Instant) {
        if let Heartbeat::ClientPings { silence_deadline } = &mut self.heartbeat {
            *silence_deadline = now + config.ping_interval + config.ping_timeout;
        }
    }

    /// True while on polling (not yet upgraded).
    pub(crate) fn is_polling(&self) -> bool {
        self.transport == Transport::Polling
    }

    /// Frames packets as one polling response body.
    pub(crate) fn encode_polling(&self, packets: &[Packet]) -> (Bytes, BodyKind) {
        match self.protocol {
            Protocol::V4 => (payload::encode_v4(packets), BodyKind::Text),
            Protocol::V3 => {
                if let Some(index) = &self.format.jsonp {
                    let text = payload::encode_v3_text(packets);
                    (payload::encode_jsonp(index, &text), BodyKind::Script)
                } else if self.format.base64 {
                    (payload::encode_v3_text(packets), BodyKind::Text)
                } else {
                    // XHR2 clients get the binary framing even for text, as engine.io 1.x did:
                    // it is the one framing in which their decoders read UTF-8 correctly.
                    (payload::encode_v3_binary(packets), BodyKind::Binary)
                }
            }
        }
    }
}
