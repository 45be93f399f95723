//! The v5 equivalents of the original's transcript (captured from the original service) for
//! socket.io-client 3.x/4.x: Engine.IO 4 framing, the CONNECT auth object and `{"sid"}` reply,
//! `_settings`, a live send with its ack, `_batch` and `_resync`.

mod sim;

use sim::{AuthAnswer, Generation, Sim};

#[test]
fn a_v5_session_end_to_end() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "staff"]));

    let mut client = sim.client(Generation::V4, "deviceId=d1");
    assert_eq!(
        client.handshake_body,
        format!(
            r#"0{{"sid":"{}","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":60000,"maxPayload":1000000}}"#,
            client.sid
        )
    );
    // Nothing is sent before the client's CONNECT (no early ping, no automatic `/`).
    assert!(sim.recv(&mut client).is_empty());

    sim.post(&client, &[r#"40/goodcity,{"token":"u3"}"#]);
    let raw = sim.recv(&mut client);
    assert_eq!(raw.len(), 2, "{raw:?}");
    let reply: serde_json::Value =
        serde_json::from_str(raw[0].strip_prefix("40/goodcity,").expect("CONNECT reply"))
            .expect("JSON");
    assert_eq!(
        reply
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["sid".to_owned()])
    );
    assert_eq!(raw[1], r#"42/goodcity,["_settings",{"device_ttl":3600}]"#);

    sim.send(r#"{"rooms":["user_3"],"event":"update_store","args":["user",{"id":1}]}"#);
    let live = sim.recv(&mut client);
    assert_eq!(
        live,
        vec![r#"42/goodcity,0["update_store","user",{"id":1}]"#.to_owned()]
    );

    // Unacknowledged, it comes back in the next session's `_batch` with the group send.
    sim.send(r#"{"rooms":["STAFF"],"event":"grp"}"#);
    sim.recv(&mut client);
    sim.close(&mut client);
    let mut again = sim.client(Generation::V4, "deviceId=d1");
    sim.recv(&mut again);
    sim.post(&again, &[r#"40/goodcity,{"token":"u3"}"#]);
    let packets = sim.recv(&mut again);
    let batch = sim::events_named(&packets, "/goodcity", "_batch");
    assert_eq!(batch.len(), 1, "{packets:?}");
    let ack = sim::ack_id(batch[0], "/goodcity").expect("_batch asks for an ack");
    assert_eq!(
        sim::event_args(batch[0], "/goodcity").expect("args")[1],
        serde_json::json!([["update_store", "user", {"id": 1}], ["grp", null]])
    );
    sim.post(&again, &[&format!("43/goodcity,{ack}[]")]);

    // Resync: acknowledging the second of two messages first.
    let query = "site=goodcity&apiKey=54321&resync=1";
    sim.send_json(query, r#"{"rooms":"user_3","event":"m","args":[1]}"#);
    sim.send_json(query, r#"{"rooms":"user_3","event":"m","args":[2]}"#);
    let two = sim.recv(&mut again);
    let second = sim::ack_id(&two[1], "/goodcity").expect("ack id");
    sim.post(&again, &[&format!("43/goodcity,{second}[]")]);
    assert_eq!(
        sim.recv(&mut again),
        vec![r#"42/goodcity,["_resync"]"#.to_owned()]
    );
}

#[test]
fn resync_false_does_not_check_order() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V4, "token=u3&deviceId=d1");
    sim.recv(&mut client);
    sim.post(&client, &["40/goodcity,"]);
    sim.recv(&mut client);
    let query = "site=goodcity&apiKey=54321&resync=false";
    sim.send_json(query, r#"{"rooms":"user_3","event":"m","args":[1]}"#);
    sim.send_json(query, r#"{"rooms":"user_3","event":"m","args":[2]}"#);
    let two = sim.recv(&mut client);
    let second = sim::ack_id(&two[1], "/goodcity").expect("ack id");
    sim.post(&client, &[&format!("43/goodcity,{second}[]")]);
    assert!(
        sim.recv(&mut client).is_empty(),
        "no _resync when resync=false (README Differences #3)"
    );
}
