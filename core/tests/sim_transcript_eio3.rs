//! The original's observed EIO3 wire transcript (captured from the original service), byte for byte
//! except the random session id.

mod sim;

use courier_core::net::Method;
use sim::{AuthAnswer, Generation, Sim};

#[test]
fn connect_auth_settings_and_user_update_match_the_original_transcript() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "staff"]));

    let client = sim.client(Generation::V3, "token=u3&deviceId=d1&meta=abc");
    let open = format!(
        r#"0{{"sid":"{}","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":60000}}"#,
        client.sid
    );
    let expected_open = format!("{}:{open}", open.encode_utf16().count());
    assert!(
        client.handshake_body == expected_open
            || client.handshake_body == format!("{expected_open}2:40"),
        "handshake body {:?}",
        client.handshake_body
    );
    assert_eq!(client.sid.len(), 20);

    let posted = sim.post(&client, &["40/goodcity"]);
    assert_eq!(posted.status, 200);
    assert_eq!(&posted.body[..], b"ok");

    // The auth stub is asked with the handshake's token and meta.
    let auth = sim.auth_calls();
    assert_eq!(auth.len(), 1);
    assert_eq!(auth[0].url, "http://127.0.0.1:9/rooms");
    assert_eq!(auth[0].headers.get("authorization"), Some("Bearer u3"));
    assert_eq!(auth[0].headers.get("x-meta"), Some("abc"));

    // The auth answer came at once, so one poll carries the automatic `40` (unless the
    // handshake already did), the CONNECT reply and `_settings`.
    let raw = sim.poll_raw(&client);
    let expected = r#"11:40/goodcity45:42/goodcity,["_settings",{"device_ttl":3600}]"#;
    if client.handshake_body.ends_with("2:40") {
        assert_eq!(raw, expected);
    } else {
        assert_eq!(raw, format!("2:40{expected}"));
    }

    assert_eq!(
        sim.puts(),
        vec![(
            "http://127.0.0.1:9/users/3".to_owned(),
            r#"{"id":"3","user":{"last_connected":"2023-11-14T22:13:20.000Z"}}"#.to_owned()
        )]
    );
    let put = sim
        .calls
        .iter()
        .find(|call| call.method == Method::Put)
        .expect("a PUT");
    assert_eq!(put.headers.get("authorization"), Some("Bearer u3"));
    assert_eq!(put.headers.get("content-type"), Some("application/json"));
}

#[test]
fn live_send_goes_out_with_ack_id_zero_and_the_ack_removes_it() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d1");
    sim.join(&mut client, "/goodcity");

    let response =
        sim.send(r#"{"rooms":["user_3"],"event":"update_store","args":["user",{"id":1}]}"#);
    assert_eq!(response.status, 200);
    assert_eq!(&response.body[..], b"OK");
    let packets = sim.recv(&mut client);
    assert_eq!(
        packets,
        vec![r#"42/goodcity,0["update_store","user",{"id":1}]"#.to_owned()]
    );

    sim.ack(&client, "/goodcity", 0);
    // Nothing left: a reconnect of the same device gets no `_batch`.
    sim.close(&mut client);
    let mut again = sim.client(Generation::V3, "token=u3&deviceId=d1");
    let packets = sim.join(&mut again, "/goodcity");
    assert!(
        sim::events_named(&packets, "/goodcity", "_batch").is_empty(),
        "{packets:?}"
    );
}

#[test]
fn resync_violation_sends_resync_with_no_arguments_and_no_ack() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d1");
    sim.join(&mut client, "/goodcity");
    let query = "site=goodcity&apiKey=54321&resync=true";
    sim.send_json(query, r#"{"rooms":"user_3","event":"m","args":[1]}"#);
    sim.send_json(query, r#"{"rooms":"user_3","event":"m","args":[2]}"#);
    let packets = sim.recv(&mut client);
    assert_eq!(packets.len(), 2, "{packets:?}");
    let second = sim::ack_id(&packets[1], "/goodcity").expect("ack id");
    sim.ack(&client, "/goodcity", second);
    assert_eq!(
        sim.recv(&mut client),
        vec![r#"42/goodcity,["_resync"]"#.to_owned()]
    );
}
