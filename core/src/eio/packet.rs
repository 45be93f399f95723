//! Engine.IO packets: one type digit plus data, and their WebSocket frame form.
//!
//! A text packet is `<type digit><utf-8 data>`. A binary *message* has no text form of its own:
//! on a WebSocket it is a binary frame (raw bytes in v4, a `04` type byte first in v3); inside a
//! polling payload it is base64 text (see [`super::payload`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};

use super::Protocol;
use crate::net::WsFrame;

/// The data of a message packet (type 4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Message {
    /// UTF-8 text (the bytes are guaranteed valid UTF-8 by whoever built it).
    Text(Bytes),
    /// Raw bytes.
    Binary(Bytes),
}

impl Message {
    /// A text message from a string.
    pub fn text(s: impl Into<String>) -> Message {
        Message::Text(Bytes::from(s.into()))
    }
}

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Packet {
    /// `0` + handshake JSON (server → client).
    Open(Bytes),
    /// `1`: close the session.
    Close,
    /// `2` + optional data (`2probe` during an upgrade).
    Ping(Bytes),
    /// `3` + optional data (`3probe`).
    Pong(Bytes),
    /// `4` + data: the application payload.
    Message(Message),
    /// `5`: finish the upgrade on the new transport.
    Upgrade,
    /// `6`: releases a pending polling GET.
    Noop,
}

/// Why bytes are not an Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Nothing at all.
    #[error("empty packet")]
    Empty,
    /// The first character is not a known type digit.
    #[error("unknown packet type")]
    UnknownType,
    /// A binary message whose base64 does not decode.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// Bytes that should be UTF-8 text are not.
    #[error("packet text is not UTF-8")]
    InvalidUtf8,
}

impl Packet {
    /// The type digit of this packet as an ASCII byte.
    pub fn type_byte(&self) -> u8 {
        match self {
            Packet::Open(_) => b'0',
            Packet::Close => b'1',
            Packet::Ping(_) => b'2',
            Packet::Pong(_) => b'3',
            Packet::Message(_) => b'4',
            Packet::Upgrade => b'5',
            Packet::Noop => b'6',
        }
    }

    /// True for a binary message.
    pub fn is_binary(&self) -> bool {
        matches!(self, Packet::Message(Message::Binary(_)))
    }

    /// The text form `<digit><data>` of a non-binary packet; a binary message gives `None`.
    pub fn encode_text(&self) -> Option<Bytes> {
        let data: &[u8] = match self {
            Packet::Open(d) | Packet::Ping(d) | Packet::Pong(d) => d,
            Packet::Message(Message::Text(d)) => d,
            Packet::Message(Message::Binary(_)) => return None,
            Packet::Close | Packet::Upgrade | Packet::Noop => &[],
        };
        let mut out = BytesMut::with_capacity(1 + data.len());
        out.put_u8(self.type_byte());
        out.put_slice(data);
        Some(out.freeze())
    }

    /// Decodes the text form `<digit><data>`.
    pub fn decode_text(text: &[u8]) -> Result<Packet, PacketError> {
        let (&digit, rest) = text.split_first().ok_or(PacketError::Empty)?;
        if std::str::from_utf8(rest).is_err() {
            return Err(PacketError::InvalidUtf8);
        }
        let data = Bytes::copy_from_slice(rest);
        Ok(match digit {
            b'0' => Packet::Open(data),
            b'1' => Packet::Close,
            b'2' => Packet::Ping(data),
            b'3' => Packet::Pong(data),
            b'4' => Packet::Message(Message::Text(data)),
            b'5' => Packet::Upgrade,
            b'6' => Packet::Noop,
            _ => return Err(PacketError::UnknownType),
        })
    }

    /// The base64 form used inside text polling payloads: `b<base64>` in v4, `b4<base64>` in v3.
    /// Non-binary packets give their text form.
    pub fn encode_payload_entry(&self, protocol: Protocol) -> Bytes {
        match self {
            Packet::Message(Message::Binary(data)) => {
                let mut out = String::with_capacity(2 + data.len().div_ceil(3) * 4);
                out.push('b');
                if protocol == Protocol::V3 {
                    out.push('4');
                }
                BASE64.encode_string(data, &mut out);
                Bytes::from(out)
            }
            other => other.encode_text().unwrap_or_default(),
        }
    }

    /// Decodes one entry of a text polling payload (text packet or `b…` base64 binary).
    pub fn decode_payload_entry(entry: &[u8], protocol: Protocol) -> Result<Packet, PacketError> {
        match entry.split_first() {
            Some((b'b', rest)) => {
                let b64 = match protocol {
                    Protocol::V4 => rest,
                    // v3 puts the type digit before the base64; only messages carry binary.
                    Protocol::V3 => match rest.split_first() {
                        Some((b'4', b64)) => b64,
                        _ => return Err(PacketError::UnknownType),
                    },
                };
                let data = BASE64.decode(b64).map_err(|_| PacketError::InvalidBase64)?;
                Ok(Packet::Message(Message::Binary(Bytes::from(data))))
            }
            _ => Packet::decode_text(entry),
        }
    }

    /// The WebSocket frame carrying this packet.
    pub fn to_ws_frame(&self, protocol: Protocol) -> WsFrame {
        match self {
            Packet::Message(Message::Binary(data)) => match protocol {
                Protocol::V4 => WsFrame::Binary(data.clone()),
                Protocol::V3 => {
                    let mut out = BytesMut::with_capacity(1 + data.len());
                    out.put_u8(4);
                    out.put_slice(data);
                    WsFrame::Binary(out.freeze())
                }
            },
            other => WsFrame::Text(other.encode_text().unwrap_or_default()),
        }
    }

    /// Decodes a WebSocket frame.
    pub fn from_ws_frame(frame: &WsFrame, protocol: Protocol) -> Result<Packet, PacketError> {
        match frame {
            WsFrame::Text(text) => Packet::decode_text(text),
            WsFrame::Binary(data) => match protocol {
                Protocol::V4 => Ok(Packet::Message(Message::Binary(data.clone()))),
                Protocol::V3 => match data.first() {
                    Some(4) => Ok(Packet::Message(Message::Binary(data.slice(1..)))),
                    Some(_) => Err(PacketError::UnknownType),
                    None => Err(PacketError::Empty),
                },
            },
        }
    }
}
