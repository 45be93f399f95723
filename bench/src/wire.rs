//! The few Engine.IO / Socket.IO text packets a benchmark client speaks, the raw HTTP/1.1 it
//! exchanges with the gateway (`POST /send`, `GET /metrics`) and the stub site's auth answers.
//! Pure functions, unit-tested without a server.

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

/// A complete HTTP/1.1 `POST /send` request on a kept-alive connection (the answer is framed
/// by its content-length).
pub fn send_request_keep_alive(site: &str, api_key: &str, body: &str) -> String {
    format!(
        "POST /send?site={}&apiKey={} HTTP/1.1\r\nhost: 127.0.0.1\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
        percent_encode(site),
        percent_encode(api_key),
        body.len()
    )
}

/// The message indices a client event carries: `[event, i]` is one, a `_batch` of
/// `[[event, i], ...]` is each of its `event` items (other events none).
pub fn bench_indices(name: &str, first_arg: Option<&Value>, event: &str) -> Vec<u64> {
    if name == event {
        return first_arg.and_then(Value::as_u64).into_iter().collect();
    }
    if name != "_batch" {
        return Vec::new();
    }
    let Some(Value::Array(items)) = first_arg else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| match item.as_array()?.as_slice() {
            [Value::String(name), index, ..] if name == event => index.as_u64(),
            _ => None,
        })
        .collect()
}

/// Where a complete HTTP/1.1 message starts its body, and its body length, once `buffer` holds
/// its whole head: `(head_len, content_length)` (no content-length header counts as 0).
pub fn http_framing(buffer: &[u8]) -> Option<(usize, usize)> {
    let head_len = buffer.windows(4).position(|window| window == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buffer[..head_len]).ok()?;
    let length = head
        .split("\r\n")
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.trim().parse().ok())
        .unwrap_or(0);
    Some((head_len, length))
}

/// The value of header `name` in a request or response head (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim())
}

/// The stub site's answer to an auth call whose head is `head`: token `t` (the part of
/// `Authorization` after the scheme) is the user `<prefix><t>`, in the group room `group` too.
/// No token: 401, as a site answers an unknown user.
pub fn auth_response(head: &str, user_room_prefix: &str, group: &str) -> String {
    let token = header(head, "authorization")
        .and_then(|value| value.split_once(' '))
        .map(|(_, token)| token.trim())
        .filter(|token| !token.is_empty());
    let (status, body) = match token {
        Some(token) => (
            "200 OK",
            serde_json::json!([format!("{user_room_prefix}{token}"), group]).to_string(),
        ),
        None => ("401 Unauthorized", r#"{"error":"no token"}"#.to_owned()),
    };
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json; charset=utf-8\r\n\
         content-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
        body.len()
    )
}

/// The sum of the samples of metric `name` (all label sets) in OpenMetrics text; `None` when
/// it has none (e.g. a build without that metric).
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value = if let Some(labelled) = rest.strip_prefix('{') {
            labelled.split_once("} ").map(|(_, value)| value)
        } else {
            rest.strip_prefix(' ')
        };
        if let Some(value) = value.and_then(|v| v.split(' ').next()?.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
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
        let request = send_request_keep_alive("demo", "a&b", &body);
        assert!(request.starts_with("POST /send?site=demo&apiKey=a%26b HTTP/1.1\r\n"));
        assert!(request.ends_with(&format!(
            "content-length: {}\r\nconnection: keep-alive\r\n\r\n{body}",
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
    fn batches_carry_every_bench_index() {
        let batch = serde_json::json!([["bench", 3], ["other", 4], ["bench", 5, "x"], "junk"]);
        assert_eq!(bench_indices("_batch", Some(&batch), "bench"), vec![3, 5]);
        assert_eq!(
            bench_indices("bench", Some(&Value::from(7)), "bench"),
            vec![7]
        );
        assert!(bench_indices("bench", None, "bench").is_empty());
        assert!(bench_indices("_settings", Some(&batch), "bench").is_empty());
        assert!(bench_indices("_batch", Some(&Value::from(1)), "bench").is_empty());
    }

    #[test]
    fn http_messages_are_framed_by_content_length() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOKHTTP/1.1";
        assert_eq!(http_framing(answer), Some((38, 2)));
        assert_eq!(
            http_framing(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"),
            Some((27, 0))
        );
        assert_eq!(http_framing(b"HTTP/1.1 200 OK\r\n"), None);
        let request = send_request_keep_alive("s", "k", "{}");
        let (head, length) = http_framing(request.as_bytes()).expect("complete head");
        assert_eq!((request.len() - head, length), (2, 2));
        assert!(request.contains("connection: keep-alive\r\n"));
    }

    #[test]
    fn the_stub_site_answers_the_user_room_and_the_group() {
        let head = "GET /rooms HTTP/1.1\r\nAuthorization: Bearer b17\r\nX-META: \r\n\r\n";
        let answer = auth_response(head, "user_", "staff");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with("\r\n\r\n[\"user_b17\",\"staff\"]"),
            "{answer}"
        );
        let (head_len, length) = http_framing(answer.as_bytes()).expect("framed");
        assert_eq!(answer.len(), head_len + length);
        let anonymous = auth_response("GET /rooms HTTP/1.1\r\n\r\n", "user_", "staff");
        assert!(anonymous.starts_with("HTTP/1.1 401 "), "{anonymous}");
    }

    #[test]
    fn metrics_are_summed_over_their_labels() {
        let text = "# TYPE courier_driver_busy_seconds counter\n\
                    courier_driver_busy_seconds_total 1.5\n\
                    courier_deliveries_total{site=\"a\",path=\"live\"} 3\n\
                    courier_deliveries_total{site=\"b\",path=\"queued\"} 4\n\
                    courier_deliveries_total_x 9\n";
        assert_eq!(
            metric_value(text, "courier_driver_busy_seconds_total"),
            Some(1.5)
        );
        assert_eq!(metric_value(text, "courier_deliveries_total"), Some(7.0));
        assert_eq!(metric_value(text, "courier_missing_total"), None);
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
