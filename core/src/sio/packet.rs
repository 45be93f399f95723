//! The Socket.IO packet codec ("common" parser):
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`.
//!
//! Both revisions share the grammar. Encoding differs in one detail: revision 5 always ends a
//! non-root namespace with `,`; revision 4 (socket.io-parser 2.x) only when an ack id or data
//! follows, so a v4 CONNECT reply is `40/chat`, byte for byte what the original sent.

use serde_json::Value;

use super::Revision;

/// The seven packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// `0`: join a namespace (client) / joined (server).
    Connect,
    /// `1`: leave a namespace.
    Disconnect,
    /// `2`: an event.
    Event,
    /// `3`: the answer to an event that asked for one.
    Ack,
    /// `4`: connect refused (v5 CONNECT_ERROR, v4 ERROR).
    ConnectError,
    /// `5`: an event with binary attachments.
    BinaryEvent,
    /// `6`: an ack with binary attachments.
    BinaryAck,
}

impl PacketType {
    /// The type digit.
    pub fn digit(self) -> char {
        match self {
            PacketType::Connect => '0',
            PacketType::Disconnect => '1',
            PacketType::Event => '2',
            PacketType::Ack => '3',
            PacketType::ConnectError => '4',
            PacketType::BinaryEvent => '5',
            PacketType::BinaryAck => '6',
        }
    }

    fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// True for the types that carry attachments.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// One decoded packet (attachments not yet joined: `data` still holds the placeholders).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The type.
    pub kind: PacketType,
    /// The namespace as sent (`/` when absent), query included if the client put one there.
    pub namespace: String,
    /// The ack id, if any.
    pub id: Option<u64>,
    /// How many binary attachments follow (binary types only).
    pub attachments: usize,
    /// The JSON data, if any.
    pub data: Option<Value>,
}

/// Why text is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Empty input or an unknown type digit.
    #[error("unknown packet type")]
    UnknownType,
    /// The attachment count is missing its `-`, not a number, or over the limit.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// The ack id does not fit in 64 bits.
    #[error("invalid ack id")]
    InvalidId,
    /// The JSON does not parse.
    #[error("invalid payload JSON")]
    InvalidJson,
    /// The JSON has the wrong shape for the type.
    #[error("invalid payload for packet type")]
    InvalidPayload,
}

/// Longest ack id accepted, in digits (`u64::MAX` has 20; longer cannot fit).
const MAX_ID_DIGITS: usize = 20;

/// Decodes one packet. `max_attachments` bounds the attachment count of binary types.
pub fn decode(text: &str, max_attachments: usize) -> Result<Packet, DecodeError> {
    let bytes = text.as_bytes();
    let kind = bytes
        .first()
        .and_then(|&d| PacketType::from_digit(d))
        .ok_or(DecodeError::UnknownType)?;
    let mut i = 1;
    let mut attachments = 0;
    if kind.is_binary() {
        let dash = text[i..].find('-').ok_or(DecodeError::IllegalAttachments)?;
        let digits = &text[i..i + dash];
        if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DecodeError::IllegalAttachments);
        }
        attachments = digits
            .parse::<usize>()
            .map_err(|_| DecodeError::IllegalAttachments)?;
        if attachments > max_attachments {
            return Err(DecodeError::IllegalAttachments);
        }
        i += dash + 1;
    }
    let mut namespace = "/".to_owned();
    if bytes.get(i) == Some(&b'/') {
        let end = text[i..].find(',').map_or(text.len(), |p| i + p);
        namespace = text[i..end].to_owned();
        i = (end + 1).min(text.len());
    }
    let id_len = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if id_len > 0 {
        if id_len > MAX_ID_DIGITS {
            return Err(DecodeError::InvalidId);
        }
        let id = text[i..i + id_len]
            .parse::<u64>()
            .map_err(|_| DecodeError::InvalidId)?;
        i += id_len;
        Some(id)
    } else {
        None
    };
    let rest = &text[i..];
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|_| DecodeError::InvalidJson)?)
    };
    if !payload_is_valid(kind, data.as_ref()) {
        return Err(DecodeError::InvalidPayload);
    }
    Ok(Packet {
        kind,
        namespace,
        id,
        attachments,
        data,
    })
}

/// socket.io-parser's `isPayloadValid`, minus the reserved-name check: client events named
/// like reserved ones are delivered to the application, which ignores them.
fn payload_is_valid(kind: PacketType, data: Option<&Value>) -> bool {
    match kind {
        PacketType::Connect => matches!(data, None | Some(Value::Object(_))),
        PacketType::Disconnect => data.is_none(),
        PacketType::ConnectError => matches!(data, Some(Value::String(_) | Value::Object(_))),
        PacketType::Event | PacketType::BinaryEvent => match data {
            Some(Value::Array(items)) => {
                matches!(items.first(), Some(Value::String(_) | Value::Number(_)))
            }
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => matches!(data, Some(Value::Array(_))),
    }
}

/// Writes the header of a packet — everything before the JSON data.
pub fn encode_header(
    kind: PacketType,
    attachments: usize,
    namespace: &str,
    id: Option<u64>,
    has_data: bool,
    revision: Revision,
) -> String {
    let mut out = String::with_capacity(8 + namespace.len());
    write_header(
        &mut out,
        kind,
        attachments,
        namespace,
        id,
        has_data,
        revision,
    );
    out
}

/// Appends the header of a packet to `out` (see [`encode_header`]): lets a caller put the
/// header, the Engine.IO type before it and the data after it into one buffer.
pub fn write_header(
    out: &mut impl std::fmt::Write,
    kind: PacketType,
    attachments: usize,
    namespace: &str,
    id: Option<u64>,
    has_data: bool,
    revision: Revision,
) {
    let _ = out.write_char(kind.digit());
    if kind.is_binary() {
        let _ = write!(out, "{attachments}-");
    }
    if namespace != "/" {
        let _ = out.write_str(namespace);
        if revision == Revision::V5 || id.is_some() || has_data {
            let _ = out.write_char(',');
        }
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// Encodes a whole packet (data serialised compactly, key order preserved).
pub fn encode(packet: &Packet, revision: Revision) -> String {
    let mut out = encode_header(
        packet.kind,
        packet.attachments,
        &packet.namespace,
        packet.id,
        packet.data.is_some(),
        revision,
    );
    if let Some(data) = &packet.data {
        out.push_str(&data.to_string());
    }
    out
}
