//! Polling payloads: several Engine.IO packets in one HTTP body.
//!
//! - v4: packets joined by `\x1e`; a binary message is `b<base64>`.
//! - v3 text (`b64=1`, JSONP, or whenever the client sends text): `<len>:<packet>` entries where
//!   `len` counts UTF-16 code units (JavaScript's `string.length`); binary is `b4<base64>`; an
//!   empty payload is `0:`.
//! - v3 binary (XHR2 clients without `b64=1`): per packet a kind byte (0 string, 1 binary), the
//!   length as one byte per decimal digit, `0xFF`, then the data — UTF-8 text, or the type byte 4
//!   followed by the raw bytes; the length counts bytes.

use bytes::{BufMut, Bytes, BytesMut};

use super::Protocol;
use super::packet::{Message, Packet, PacketError};

/// The v4 record separator.
pub const SEPARATOR: u8 = 0x1e;

/// Longest decimal length prefix accepted (Node accepts 310 digits; nothing real needs more
/// than a handful, and a bound keeps hostile input cheap).
const MAX_LENGTH_DIGITS: usize = 12;

/// Why a polling body is not a valid payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// One packet in it is invalid.
    #[error("invalid packet in payload: {0}")]
    Packet(#[from] PacketError),
    /// A length prefix is missing, not a number, or does not match the data.
    #[error("invalid length prefix in payload")]
    Length,
    /// The body is not UTF-8 where text is required.
    #[error("payload is not UTF-8")]
    InvalidUtf8,
}

/// Encodes packets as a v4 payload.
pub fn encode_v4(packets: &[Packet]) -> Bytes {
    let mut out = BytesMut::new();
    for (i, packet) in packets.iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        out.put_slice(&packet.encode_payload_entry(Protocol::V4));
    }
    out.freeze()
}

/// Decodes a v4 payload. An empty body is an error (it holds one empty, invalid packet).
pub fn decode_v4(body: &[u8]) -> Result<Vec<Packet>, PayloadError> {
    body.split(|&b| b == SEPARATOR)
        .map(|entry| Packet::decode_payload_entry(entry, Protocol::V4).map_err(Into::into))
        .collect()
}

/// Encodes packets as a v3 text payload (`<utf16 len>:<packet>`…; `0:` when empty).
pub fn encode_v3_text(packets: &[Packet]) -> Bytes {
    if packets.is_empty() {
        return Bytes::from_static(b"0:");
    }
    let mut out = BytesMut::new();
    for packet in packets {
        let entry = packet.encode_payload_entry(Protocol::V3);
        // Entries are UTF-8 by construction (text packets hold UTF-8, binary is base64).
        let units = String::from_utf8_lossy(&entry).encode_utf16().count();
        out.put_slice(units.to_string().as_bytes());
        out.put_u8(b':');
        out.put_slice(&entry);
    }
    out.freeze()
}

/// Decodes a v3 text payload. `0:` and the empty body hold no packets.
pub fn decode_v3_text(body: &[u8]) -> Result<Vec<Packet>, PayloadError> {
    let text = std::str::from_utf8(body).map_err(|_| PayloadError::InvalidUtf8)?;
    let mut packets = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let colon = rest.find(':').ok_or(PayloadError::Length)?;
        let digits = &rest[..colon];
        if digits.is_empty()
            || digits.len() > MAX_LENGTH_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(PayloadError::Length);
        }
        let units: usize = digits.parse().map_err(|_| PayloadError::Length)?;
        let after = &rest[colon + 1..];
        let end = utf16_prefix_len(after, units).ok_or(PayloadError::Length)?;
        let entry = &after[..end];
        if !entry.is_empty() {
            packets.push(Packet::decode_payload_entry(
                entry.as_bytes(),
                Protocol::V3,
            )?);
        }
        rest = &after[end..];
    }
    Ok(packets)
}

/// The byte length of the prefix of `s` that is exactly `units` UTF-16 code units long, if `s`
/// is long enough and the cut does not fall inside a surrogate pair.
fn utf16_prefix_len(s: &str, units: usize) -> Option<usize> {
    let mut counted = 0;
    for (index, ch) in s.char_indices() {
        if counted == units {
            return Some(index);
        }
        counted += ch.len_utf16();
        if counted > units {
            return None;
        }
    }
    (counted == units).then_some(s.len())
}

/// Encodes packets as a v3 binary payload (used for XHR2 clients that did not send `b64=1`).
pub fn encode_v3_binary(packets: &[Packet]) -> Bytes {
    let mut out = BytesMut::new();
    for packet in packets {
        match packet {
            Packet::Message(Message::Binary(data)) => {
                out.put_u8(1);
                put_length_digits(&mut out, data.len() + 1);
                out.put_u8(0xFF);
                out.put_u8(4);
                out.put_slice(data);
            }
            other => {
                let text = other.encode_text().unwrap_or_default();
                out.put_u8(0);
                put_length_digits(&mut out, text.len());
                out.put_u8(0xFF);
                out.put_slice(&text);
            }
        }
    }
    out.freeze()
}

fn put_length_digits(out: &mut BytesMut, length: usize) {
    for digit in length.to_string().bytes() {
        out.put_u8(digit - b'0');
    }
}

/// Decodes a v3 binary payload.
pub fn decode_v3_binary(body: &[u8]) -> Result<Vec<Packet>, PayloadError> {
    let mut packets = Vec::new();
    let mut rest = body;
    while let Some((&kind, after_kind)) = rest.split_first() {
        if kind > 1 {
            return Err(PayloadError::Length);
        }
        let marker = after_kind
            .iter()
            .position(|&b| b == 0xFF)
            .ok_or(PayloadError::Length)?;
        let digits = &after_kind[..marker];
        if digits.is_empty() || digits.len() > MAX_LENGTH_DIGITS || digits.iter().any(|&d| d > 9) {
            return Err(PayloadError::Length);
        }
        let length = digits
            .iter()
            .fold(0usize, |acc, &d| acc * 10 + usize::from(d));
        let data_start = marker + 1;
        let data = after_kind
            .get(data_start..data_start + length)
            .ok_or(PayloadError::Length)?;
        let packet = if kind == 0 {
            Packet::decode_text(data)?
        } else {
            match data.split_first() {
                Some((4, bytes)) => Packet::Message(Message::Binary(Bytes::copy_from_slice(bytes))),
                Some(_) => return Err(PacketError::UnknownType.into()),
                None => return Err(PacketError::Empty.into()),
            }
        };
        packets.push(packet);
        rest = &after_kind[data_start + length..];
    }
    Ok(packets)
}

/// Wraps a v3 text payload in the JSONP callback `___eio[<index>]("…");`.
pub fn encode_jsonp(index: &str, text_payload: &[u8]) -> Bytes {
    let text = String::from_utf8_lossy(text_payload);
    // JSON string escaping, plus U+2028/U+2029 which are line terminators in old JavaScript.
    let json = serde_json::Value::String(text.into_owned())
        .to_string()
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    Bytes::from(format!("___eio[{index}]({json});"))
}

/// Extracts the payload from a JSONP POST body (`d=<urlencoded payload>`), undoing the
/// client's newline escaping as engine.io does: `\n` becomes a newline, `\\n` becomes `\n`.
pub fn decode_jsonp_body(body: &[u8]) -> Result<Vec<u8>, PayloadError> {
    let form = std::str::from_utf8(body).map_err(|_| PayloadError::InvalidUtf8)?;
    let data = crate::urlencoded::first(form, "d").ok_or(PayloadError::Length)?;
    let mut out = String::with_capacity(data.len());
    let mut rest = data.as_ref();
    while let Some(pos) = rest.find('\\') {
        out.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        if let Some(after) = tail.strip_prefix("\\\\n") {
            out.push_str("\\n");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("\\n") {
            out.push('\n');
            rest = after;
        } else {
            out.push('\\');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out.into_bytes())
}
