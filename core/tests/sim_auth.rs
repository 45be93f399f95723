//! Connect-time auth: the original's error strings (as captured from it) in both
//! protocol generations, the auth timeout (README Differences #11), unknown namespaces, and the
//! engine session surviving a refusal.

mod sim;

use std::time::Duration;

use sim::{AuthAnswer, Generation, Sim};

fn refusal(answer: AuthAnswer, generation: Generation) -> Vec<String> {
    let mut sim = Sim::goodcity();
    sim.auth("t", answer);
    let mut client = sim.client(generation, "token=t&deviceId=d1");
    let packets = sim.join(&mut client, "/goodcity");
    packets
        .into_iter()
        .filter(|packet| packet.starts_with("44"))
        .collect()
}

#[test]
fn every_auth_failure_has_the_original_text() {
    let cases = [
        (AuthAnswer::Status(401, "{}"), "Authentication failed"),
        (
            AuthAnswer::Status(401, "<html>no</html>"),
            r#"Auth error: SyntaxError: Unexpected token '<', \"<html>no</html>\" is not valid JSON"#,
        ),
        (
            AuthAnswer::Status(401, ""),
            "Auth error: SyntaxError: Unexpected end of JSON input",
        ),
        (AuthAnswer::Status(500, "{}"), "Auth 500 error"),
        (AuthAnswer::Status(403, "[]"), "Auth 403 error"),
        (
            AuthAnswer::Rooms(vec!["reviewer"]),
            "User is missing a private room",
        ),
        (AuthAnswer::Rooms(vec![]), "User is missing a private room"),
        (
            AuthAnswer::Status(200, r#"{"a":1}"#),
            "Auth error: TypeError: data.some is not a function",
        ),
    ];
    for (answer, text) in cases {
        assert_eq!(
            refusal(answer.clone(), Generation::V3),
            vec![format!(r#"44/goodcity,"{text}""#)],
            "v3, {answer:?}"
        );
        let v5 = refusal(answer.clone(), Generation::V4);
        assert_eq!(v5.len(), 1, "{v5:?}");
        let json: serde_json::Value = serde_json::from_str(
            v5[0]
                .strip_prefix("44/goodcity,")
                .expect("v5 connect error"),
        )
        .expect("v5 connect error JSON");
        let unescaped: String = serde_json::from_str(&format!("\"{text}\"")).expect("text");
        assert_eq!(
            json,
            serde_json::json!({ "message": unescaped }),
            "v5, {answer:?}"
        );
    }
}

#[test]
fn an_auth_call_that_never_answers_is_an_auth_timeout() {
    let mut sim = Sim::goodcity();
    sim.auth("slow", AuthAnswer::Hang);
    let mut client = sim.client(Generation::V3, "token=slow");
    let packets = sim.join(&mut client, "/goodcity");
    assert!(
        !packets.iter().any(|packet| packet.starts_with("44")),
        "{packets:?}"
    );
    // The site's call timeout (10 s by default) passes; the client keeps pinging meanwhile.
    for _ in 0..4 {
        sim.advance(Duration::from_secs(3));
        sim.post(&client, &["2"]);
    }
    let packets = sim.recv(&mut client);
    assert!(
        packets.contains(&r#"44/goodcity,"Auth error: timeout""#.to_owned()),
        "{packets:?}"
    );
}

#[test]
fn unknown_namespace_is_refused_and_the_session_stays_open() {
    let mut sim = Sim::goodcity();
    let mut client = sim.client(Generation::V3, "token=t");
    let packets = sim.join(&mut client, "/nope");
    assert!(
        packets.contains(&r#"44/nope,"Invalid namespace""#.to_owned()),
        "{packets:?}"
    );
    sim.post(&client, &["2"]);
    assert_eq!(sim.recv(&mut client), vec!["3".to_owned()]);

    let mut modern = sim.client(Generation::V4, "token=t");
    let packets = sim.join(&mut modern, "/nope");
    assert_eq!(
        packets,
        vec![r#"44/nope,{"message":"Invalid namespace"}"#.to_owned()]
    );
}

#[test]
fn a_failed_auth_leaves_the_engine_session_usable_for_another_attempt() {
    let mut sim = Sim::goodcity();
    sim.auth("t", AuthAnswer::Status(500, "{}"));
    let mut client = sim.client(Generation::V3, "token=t&deviceId=d1");
    sim.join(&mut client, "/goodcity");
    sim.auth("t", AuthAnswer::Rooms(vec!["user_1"]));
    let packets = sim.join(&mut client, "/goodcity");
    assert_eq!(packets[0], "40/goodcity");
    assert_eq!(
        packets[1],
        r#"42/goodcity,["_settings",{"device_ttl":3600}]"#
    );
}

#[test]
fn v3_reads_credentials_from_the_handshake_query_only() {
    let mut sim = Sim::goodcity();
    let mut client = sim.client(Generation::V3, "deviceId=d1");
    // A 2.x-style query on the CONNECT namespace is not used for auth (behaviour 5 in
    // tests/README.md).
    sim.recv(&mut client);
    sim.post(&client, &["40/goodcity?token=u3"]);
    let auth = sim.auth_calls();
    assert_eq!(auth.len(), 1);
    assert_eq!(
        auth[0].headers.get("authorization"),
        Some("Bearer undefined")
    );
    assert_eq!(auth[0].headers.get("x-meta"), Some("undefined"));
}

#[test]
fn v5_reads_credentials_from_the_connect_auth_object() {
    let mut sim = Sim::goodcity();
    sim.auth("u7", AuthAnswer::Rooms(vec!["user_7"]));
    let mut client = sim.client(Generation::V4, "");
    sim.recv(&mut client);
    sim.post(
        &client,
        &[r#"40/goodcity,{"token":"u7","deviceId":"phone","meta":"m"}"#],
    );
    let packets = sim.recv(&mut client);
    assert!(
        packets[0].starts_with(r#"40/goodcity,{"sid":""#),
        "{packets:?}"
    );
    assert_eq!(
        packets[1],
        r#"42/goodcity,["_settings",{"device_ttl":3600}]"#
    );
    let auth = sim.auth_calls();
    assert_eq!(auth[0].headers.get("authorization"), Some("Bearer u7"));
    assert_eq!(auth[0].headers.get("x-meta"), Some("m"));
}
