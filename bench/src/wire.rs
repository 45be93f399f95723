//! The few Engine.IO 4 / Socket.IO 5 text packets a benchmark client speaks, and the raw
//! `POST /send` request it makes. Pure functions, unit-tested without a server.

use serde_json::Value;

/// body-parser's default limit the gateway enforces on a `/send` body (100 kB, answered 413
/// above it).
pub const SEND_BODY_LIMIT: usize = 100 * 1024;

/// What the benchmark cares about in one text frame from the server.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerPacket {
    /// Engine.IO OPEN (`0{...}`): the client asks to join the namespace next.
    Open,
    /// Engine.IO PING (`2`): the client answers PONG (`3`) or the server drops it.
    Ping,
    /// Socket.IO CONNECT_ERROR in the namespace (`44/ns,{...}`), with the whole frame.
    ConnectError(String),
    /// Socket.IO EVENT in the namespace (`42/ns,[ack id]["name", args...]`).
    Event {
        /// The id the server wants acknowledged, if any.
        ack: Option<u64>,
        /// The event name (first array element).
        name: String,
        /// The first argument, if any.
        first_arg: Option<Value>,
    },
    /// Anything else (CONNECT ack, other namespaces, NOOP, malformed): nothing to do.
    Other,
}

/// Classifies one text frame the server sent to a client of `namespace` (without the slash).
pub fn parse_server_packet(text: &str, namespace: &str) -> ServerPacket {
    match text.as_bytes().first() {
        Some(b'0') => return ServerPacket::Open,
        Some(b'2') if text.len() == 1 => return ServerPacket::Ping,
        Some(b'4') => {}
        _ => return ServerPacket::Other,
    }
    // The Engine.IO MESSAGE type is one ASCII byte, so the Socket.IO packet starts at 1.
    let mut sio = text[1..].chars();
    let kind = sio.next();
    let Some(rest) = strip_namespace(sio.as_str(), namespace) else {
        return ServerPacket::Other;
    };
    match kind {
        Some('4') => ServerPacket::ConnectError(text.to_owned()),
        Some('2') => parse_event(rest),
        _ => ServerPacket::Other,
    }
}

/// `/ns,` prefix of a packet outside the main namespace.
fn strip_namespace<'a>(rest: &'a str, namespace: &str) -> Option<&'a str> {
    rest.strip_prefix('/')?
        .strip_prefix(namespace)?
        .strip_prefix(',')
}

fn parse_event(rest: &str) -> ServerPacket {
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (ack, json) = rest.split_at(digits);
    let ack = if digits == 0 {
        None
    } else {
        match ack.parse() {
            Ok(ack) => Some(ack),
            Err(_) => return ServerPacket::Other,
        }
    };
    let Ok(Value::Array(mut items)) = serde_json::from_str::<Value>(json) else {
        return ServerPacket::Other;
    };
    if items.is_empty() {
        return ServerPacket::Other;
    }
    let first_arg = (items.len() > 1).then(|| items.swap_remove(1));
    match items.swap_remove(0) {
        Value::String(name) => ServerPacket::Event {
            ack,
            name,
            first_arg,
        },
        _ => ServerPacket::Other,
    }
}

/// Socket.IO 5 CONNECT to `namespace` with the gateway's auth fields.
pub fn connect_packet(namespace: &str, token: &str, device_id: &str) -> String {
    let auth = serde_json::json!({ "token": token, "deviceId": device_id });
    format!("40/{namespace},{auth}")
}

/// Socket.IO 5 ACK of event `ack` (no arguments).
pub fn ack_packet(namespace: &str, ack: u64) -> String {
    format!("43/{namespace},{ack}[]")
}

/// The JSON body of a `/send` of `event` with one numeric argument to `rooms`.
pub fn send_body(rooms: &[String], event: &str, argument: u64) -> String {
    serde_json::json!({ "rooms": rooms, "event": event, "args": [argument] }).to_string()
}

/// How many of the rooms `<prefix>0`, `<prefix>1`, ... up to `wanted` fit in one `/send` body
/// under [`SEND_BODY_LIMIT`] (with room to spare for the event and arguments).
pub fn rooms_fitting_one_send(prefix: &str, wanted: u64) -> u64 {
    const ENVELOPE: usize = 256;
    let mut used = ENVELOPE;
    for index in 0..wanted {
        // `"<prefix><index>",`
        used += prefix.len() + decimal_len(index) + 3;
        if used > SEND_BODY_LIMIT {
            return index;
        }
    }
    wanted
}

fn decimal_len(value: u64) -> usize {
    value
        .checked_ilog10()
        .map_or(1, |digits| digits as usize + 1)
}

/// A complete HTTP/1.1 `POST /send` request (`connection: close`, so the answer ends with EOF).
pub fn send_request(site: &str, api_key: &str, body: &str) -> String {
    format!(
        "POST /send?site={}&apiKey={} HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        percent_encode(site),
        percent_encode(api_key),
        body.len()
    )
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The status code of a raw HTTP/1.x answer.
pub fn http_status(answer: &[u8]) -> Option<u16> {
    let line = answer.split(|&byte| byte == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    parts
        .next()
        .filter(|version| version.starts_with("HTTP/1."))?;
    parts.next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_io_open_and_ping_are_recognised() {
        assert_eq!(
            parse_server_packet(r#"0{"sid":"x","pingInterval":25000}"#, "demo"),
            ServerPacket::Open
        );
        assert_eq!(parse_server_packet("2", "demo"), ServerPacket::Ping);
        assert_eq!(parse_server_packet("2probe", "demo"), ServerPacket::Other);
        assert_eq!(parse_server_packet("", "demo"), ServerPacket::Other);
    }

    #[test]
    fn events_carry_their_ack_id_name_and_first_argument() {
        assert_eq!(
            parse_server_packet(r#"42/demo,17["bench",3]"#, "demo"),
            ServerPacket::Event {
                ack: Some(17),
                name: "bench".to_owned(),
                first_arg: Some(Value::from(3)),
            }
        );
        assert_eq!(
            parse_server_packet(r#"42/demo,["_settings",{"device_ttl":3600}]"#, "demo"),
            ServerPacket::Event {
                ack: None,
                name: "_settings".to_owned(),
                first_arg: Some(serde_json::json!({"device_ttl": 3600})),
            }
        );
        assert_eq!(
            parse_server_packet(r#"42/demo,["_resync"]"#, "demo"),
            ServerPacket::Event {
                ack: None,
                name: "_resync".to_owned(),
                first_arg: None,
            }
        );
    }

    #[test]
    fn other_namespaces_and_malformed_packets_are_ignored() {
        assert_eq!(
            parse_server_packet(r#"42/demos,["bench",1]"#, "demo"),
            ServerPacket::Other
        );
        assert_eq!(
            parse_server_packet(r#"42["bench",1]"#, "demo"),
            ServerPacket::Other
        );
        assert_eq!(
            parse_server_packet("42/demo,[", "demo"),
            ServerPacket::Other
        );
        assert_eq!(
            parse_server_packet("42/demo,[1]", "demo"),
            ServerPacket::Other
        );
        assert_eq!(
            parse_server_packet("42/demo,99999999999999999999999[\"x\"]", "demo"),
            ServerPacket::Other
        );
        assert_eq!(parse_server_packet("4", "demo"), ServerPacket::Other);
        assert_eq!(parse_server_packet("4é", "demo"), ServerPacket::Other);
        assert_eq!(
            parse_server_packet(r#"40/demo,{"sid":"a"}"#, "demo"),
            ServerPacket::Other
        );
    }

    #[test]
    fn connect_errors_are_reported_whole() {
        let frame = r#"44/demo,{"message":"Invalid namespace"}"#;
        assert_eq!(
            parse_server_packet(frame, "demo"),
            ServerPacket::ConnectError(frame.to_owned())
        );
    }

    #[test]
    fn client_packets_are_socket_io_5_text() {
        assert_eq!(
            connect_packet("demo", "bench7", "d\"1"),
            r#"40/demo,{"token":"bench7","deviceId":"d\"1"}"#
        );
        assert_eq!(ack_packet("demo", 42), "43/demo,42[]");
    }

    #[test]
    fn send_request_is_complete_http() {
        let body = send_body(&["staff".to_owned()], "bench", 5);
        assert_eq!(body, r#"{"rooms":["staff"],"event":"bench","args":[5]}"#);
        let request = send_request("demo", "a&b", &body);
        assert!(request.starts_with("POST /send?site=demo&apiKey=a%26b HTTP/1.1\r\n"));
        assert!(request.ends_with(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )));
    }

    #[test]
    fn user_rooms_are_capped_to_one_body() {
        assert_eq!(rooms_fitting_one_send("user_bench", 10), 10);
        let fitting = rooms_fitting_one_send("user_bench", 1_000_000);
        assert!(fitting > 1000 && fitting < 10_000, "{fitting}");
        let rooms: Vec<String> = (0..fitting).map(|i| format!("user_bench{i}")).collect();
        assert!(send_body(&rooms, "bench", u64::MAX).len() <= SEND_BODY_LIMIT);
    }

    #[test]
    fn http_status_reads_the_status_line() {
        assert_eq!(http_status(b"HTTP/1.1 200 OK\r\n\r\nOK"), Some(200));
        assert_eq!(
            http_status(b"HTTP/1.1 413 Payload Too Large\r\n"),
            Some(413)
        );
        assert_eq!(http_status(b"garbage"), None);
        assert_eq!(http_status(b""), None);
    }
}
