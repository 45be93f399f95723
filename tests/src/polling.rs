//! A raw Engine.IO long-polling session (revision 3 with `b64=1` text framing, or revision 4),
//! for wire-level checks that a client library would hide: the open packet, the exact ERROR
//! packet text, cookies, engine errors.

use serde_json::Value;

use crate::http::{HttpResponse, http};

/// One Engine.IO session over HTTP long-polling.
#[derive(Debug, Clone)]
pub struct PollingSession {
    port: u16,
    eio: u8,
    query: String,
    /// The session id from the open packet.
    pub sid: String,
    /// The open packet's JSON (`sid`, `upgrades`, `pingInterval`, `pingTimeout`, ...).
    pub open: Value,
    /// The handshake response (headers such as `Set-Cookie`).
    pub handshake: HttpResponse,
    /// Packets that arrived in the handshake response after the open packet.
    pub early_packets: Vec<String>,
}

impl PollingSession {
    /// `GET /socket.io/?EIO=<eio>&transport=polling[&b64=1]&<query>`; panics unless it opens.
    pub fn handshake(port: u16, eio: u8, query: &str) -> PollingSession {
        let query = if eio == 3 {
            format!("EIO=3&transport=polling&b64=1&{query}")
        } else {
            format!("EIO={eio}&transport=polling&{query}")
        };
        let handshake = http(port, "GET", &format!("/socket.io/?{query}"), &[], b"");
        assert_eq!(handshake.status, 200, "handshake refused: {handshake:?}");
        let mut packets = decode_payload(eio, &handshake.body);
        assert!(!packets.is_empty(), "empty handshake response");
        let open_packet = packets.remove(0);
        let open: Value = open_packet
            .strip_prefix('0')
            .and_then(|j| serde_json::from_str(j).ok())
            .unwrap_or_else(|| panic!("not an open packet: {open_packet:?}"));
        let sid = open["sid"]
            .as_str()
            .unwrap_or_else(|| panic!("no sid in {open}"))
            .to_string();
        PollingSession {
            port,
            eio,
            query,
            sid,
            open,
            handshake,
            early_packets: packets,
        }
    }

    fn target(&self) -> String {
        format!("/socket.io/?{}&sid={}", self.query, self.sid)
    }

    /// One long-poll GET; returns its packets (blocks until the server has something).
    pub fn get(&self) -> Vec<String> {
        let r = http(self.port, "GET", &self.target(), &[], b"");
        assert_eq!(r.status, 200, "poll failed: {r:?}");
        decode_payload(self.eio, &r.body)
    }

    /// Polls until a packet satisfies `want`; returns every packet seen up to and including it.
    /// `early_packets` are looked at first.
    pub fn get_until(&mut self, want: impl Fn(&str) -> bool) -> Vec<String> {
        let mut seen: Vec<String> = std::mem::take(&mut self.early_packets);
        for _ in 0..20 {
            if seen.iter().any(|p| want(p)) {
                return seen;
            }
            seen.extend(self.get());
        }
        panic!("no wanted packet after 20 polls; got {seen:?}")
    }

    /// POSTs `packets` as one payload; returns the response.
    pub fn post(&self, packets: &[&str]) -> HttpResponse {
        let body = encode_payload(self.eio, packets);
        http(
            self.port,
            "POST",
            &self.target(),
            &[("Content-Type", "text/plain;charset=UTF-8")],
            body.as_bytes(),
        )
    }
}

/// Text payload framing: EIO3 `<utf16-len>:<packet>`..., EIO4 packets joined by `\x1e`.
pub fn encode_payload(eio: u8, packets: &[&str]) -> String {
    if eio == 3 {
        packets
            .iter()
            .map(|p| format!("{}:{p}", p.encode_utf16().count()))
            .collect()
    } else {
        packets.join("\u{1e}")
    }
}

/// The inverse of [`encode_payload`]; panics on a malformed payload.
pub fn decode_payload(eio: u8, body: &str) -> Vec<String> {
    if eio != 3 {
        return body
            .split('\u{1e}')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
    }
    let units: Vec<u16> = body.encode_utf16().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < units.len() {
        let colon = units[i..]
            .iter()
            .position(|&u| u == u16::from(b':'))
            .unwrap_or_else(|| panic!("no length prefix in EIO3 payload {body:?}"))
            + i;
        let len: usize = String::from_utf16_lossy(&units[i..colon])
            .parse()
            .unwrap_or_else(|_| panic!("bad length in EIO3 payload {body:?}"));
        let end = colon + 1 + len;
        assert!(end <= units.len(), "truncated EIO3 payload {body:?}");
        out.push(String::from_utf16_lossy(&units[colon + 1..end]));
        i = end;
    }
    out
}
