//! Property tests of every codec: encode → decode is the identity, and decoding arbitrary
//! bytes never panics.

use bytes::Bytes;
use courier_core::eio::payload;
use courier_core::eio::{Message, Packet, Protocol};
use courier_core::net::WsFrame;
use courier_core::sio::{self, PacketType, Revision, binary};
use proptest::prelude::*;
use serde_json::{Map, Value};

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![Just(Protocol::V3), Just(Protocol::V4)]
}

/// Text without the v4 separator (the protocol assumes data never holds it).
fn text() -> impl Strategy<Value = String> {
    "[^\u{1e}]{0,24}"
}

fn eio_packet(binary: bool) -> BoxedStrategy<Packet> {
    let text_packets = prop_oneof![
        text().prop_map(|t| Packet::Open(Bytes::from(t))),
        Just(Packet::Close),
        text().prop_map(|t| Packet::Ping(Bytes::from(t))),
        text().prop_map(|t| Packet::Pong(Bytes::from(t))),
        text().prop_map(|t| Packet::Message(Message::Text(Bytes::from(t)))),
        Just(Packet::Upgrade),
        Just(Packet::Noop),
    ];
    if binary {
        prop_oneof![
            4 => text_packets,
            1 => proptest::collection::vec(any::<u8>(), 0..32)
                .prop_map(|b| Packet::Message(Message::Binary(Bytes::from(b)))),
        ]
        .boxed()
    } else {
        text_packets.boxed()
    }
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[^\u{0}]{0,12}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{1,6}", inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn json_object() -> impl Strategy<Value = Value> {
    proptest::collection::vec(("[a-z]{1,6}", json_value()), 0..4)
        .prop_map(|entries| Value::Object(entries.into_iter().collect()))
}

fn event_args() -> impl Strategy<Value = Value> {
    (
        "[a-z:-]{1,10}",
        proptest::collection::vec(json_value(), 0..4),
    )
        .prop_map(|(name, rest)| {
            let mut args = vec![Value::String(name)];
            args.extend(rest);
            Value::Array(args)
        })
}

fn sio_packet() -> impl Strategy<Value = sio::Packet> {
    let namespace = prop_oneof![Just("/".to_owned()), "/[a-z0-9_-]{1,10}"];
    let id = proptest::option::of(any::<u64>());
    let kind_and_data = prop_oneof![
        proptest::option::of(json_object()).prop_map(|d| (PacketType::Connect, d, 0)),
        Just((PacketType::Disconnect, None, 0)),
        event_args().prop_map(|d| (PacketType::Event, Some(d), 0)),
        proptest::collection::vec(json_value(), 0..4).prop_map(|d| (
            PacketType::Ack,
            Some(Value::Array(d)),
            0
        )),
        prop_oneof!["[^\u{0}]{0,12}".prop_map(Value::String), json_object()].prop_map(|d| (
            PacketType::ConnectError,
            Some(d),
            0
        )),
        (event_args(), 0usize..=10).prop_map(|(d, n)| (PacketType::BinaryEvent, Some(d), n)),
        (proptest::collection::vec(json_value(), 0..4), 0usize..=10).prop_map(|(d, n)| (
            PacketType::BinaryAck,
            Some(Value::Array(d)),
            n
        )),
    ];
    (namespace, id, kind_and_data).prop_map(|(namespace, id, (kind, data, attachments))| {
        let id = if kind == PacketType::Disconnect {
            None
        } else {
            id
        };
        sio::Packet {
            kind,
            namespace,
            id,
            attachments,
            data,
        }
    })
}

proptest! {
    #[test]
    fn eio_text_packets_round_trip(packet in eio_packet(false)) {
        let text = packet.encode_text().expect("text packet");
        prop_assert_eq!(Packet::decode_text(&text), Ok(packet));
    }

    #[test]
    fn eio_ws_frames_round_trip(packet in eio_packet(true), protocol in protocol()) {
        let frame = packet.to_ws_frame(protocol);
        prop_assert_eq!(Packet::from_ws_frame(&frame, protocol), Ok(packet));
    }

    #[test]
    fn v4_payloads_round_trip(packets in proptest::collection::vec(eio_packet(true), 1..6)) {
        let body = payload::encode_v4(&packets);
        prop_assert_eq!(payload::decode_v4(&body), Ok(packets));
    }

    #[test]
    fn v3_text_payloads_round_trip(packets in proptest::collection::vec(eio_packet(true), 0..6)) {
        let body = payload::encode_v3_text(&packets);
        prop_assert_eq!(payload::decode_v3_text(&body), Ok(packets));
    }

    #[test]
    fn v3_binary_payloads_round_trip(packets in proptest::collection::vec(eio_packet(true), 0..6)) {
        let body = payload::encode_v3_binary(&packets);
        prop_assert_eq!(payload::decode_v3_binary(&body), Ok(packets));
    }

    #[test]
    fn sio_packets_round_trip(packet in sio_packet(), v5 in any::<bool>()) {
        let revision = if v5 { Revision::V5 } else { Revision::V4 };
        let text = sio::packet::encode(&packet, revision);
        prop_assert_eq!(sio::packet::decode(&text, 10), Ok(packet));
    }

    #[test]
    fn binary_placeholders_round_trip(
        values in proptest::collection::vec(json_value(), 0..4),
        blobs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 0..4),
    ) {
        let mut args = values;
        for blob in &blobs {
            args.push(Value::Array(vec![binary::binary_value(blob)]));
        }
        let original = Value::Array(args);
        let mut wire = original.clone();
        let mut attachments = Vec::new();
        binary::deconstruct(&mut wire, &mut attachments);
        prop_assert_eq!(attachments.len(), blobs.len());
        prop_assert!(!binary::contains_binary(&wire));
        binary::reconstruct(&mut wire, &attachments).expect("placeholders in range");
        prop_assert_eq!(wire, original);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), protocol in protocol()) {
        let _ = Packet::decode_text(&bytes);
        let _ = Packet::decode_payload_entry(&bytes, protocol);
        let _ = Packet::from_ws_frame(&WsFrame::Binary(Bytes::from(bytes.clone())), protocol);
        let _ = payload::decode_v4(&bytes);
        let _ = payload::decode_v3_text(&bytes);
        let _ = payload::decode_v3_binary(&bytes);
        let _ = payload::decode_jsonp_body(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = sio::packet::decode(&text, 10);
    }

    #[test]
    fn sio_decoder_never_panics_on_packet_like_text(text in "[0-6][0-9-]{0,3}(/[a-z?=&,]{0,6})?[0-9]{0,22}[\\[\\]{}\",a-z0-9:]{0,16}") {
        let _ = sio::packet::decode(&text, 10);
    }
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let deep = format!("42{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(sio::packet::decode(&deep, 10).is_err());
    let deep_objects = format!("40{}", "{\"a\":".repeat(50_000));
    assert!(sio::packet::decode(&deep_objects, 10).is_err());
}
