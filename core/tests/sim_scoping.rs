//! Per-site scoping (behaviour 41 in tests/README.md, README Differences #2) and ack bookkeeping
//! (behaviours 27, 30):
//! each site uses its own auth settings and rooms; an ack removes exactly its message, in any
//! order, and counts once.

mod sim;

use sim::{AuthAnswer, Generation, Sim};

const TWO_SITES: &str = r#"
alpha:
  authUrl: http://127.0.0.1:9/alpha-rooms
  authScheme: Bearer
  apiKey: ka
  userRoomPrefix: user_
beta:
  authUrl: http://127.0.0.1:9/beta-rooms
  authScheme: Token
  apiKey: kb
  userRoomPrefix: member-
"#;

#[test]
fn every_site_uses_its_own_auth_settings_and_rooms() {
    let mut sim = Sim::new(TWO_SITES, None);
    sim.auth("a", AuthAnswer::Rooms(vec!["user_1"]));
    sim.auth("b", AuthAnswer::Rooms(vec!["member-1"]));
    let mut on_alpha = sim.client(Generation::V3, "token=a&deviceId=d");
    sim.join(&mut on_alpha, "/alpha");
    let mut on_beta = sim.client(Generation::V3, "token=b&deviceId=d");
    sim.join(&mut on_beta, "/beta");
    let calls = sim.auth_calls();
    assert_eq!(calls[0].url, "http://127.0.0.1:9/alpha-rooms");
    assert_eq!(calls[0].headers.get("authorization"), Some("Bearer a"));
    assert_eq!(calls[1].url, "http://127.0.0.1:9/beta-rooms");
    assert_eq!(calls[1].headers.get("authorization"), Some("Token b"));

    // The same room name in another site is another room; each key opens only its site.
    let wrong_key = sim.send_json("site=beta&apiKey=ka", r#"{"rooms":"member-1","event":"x"}"#);
    assert_eq!(wrong_key.status, 401);
    sim.send_json(
        "site=alpha&apiKey=ka",
        r#"{"rooms":"user_1","event":"for_alpha"}"#,
    );
    sim.send_json(
        "site=beta&apiKey=kb",
        r#"{"rooms":"member-1","event":"for_beta"}"#,
    );
    let alpha = sim.recv(&mut on_alpha);
    let beta = sim.recv(&mut on_beta);
    assert_eq!(
        sim::events_named(&alpha, "/alpha", "for_alpha").len(),
        1,
        "{alpha:?}"
    );
    assert_eq!(
        sim::events_named(&beta, "/beta", "for_beta").len(),
        1,
        "{beta:?}"
    );
    assert_eq!(alpha.len() + beta.len(), 2);
}

#[test]
fn acks_remove_their_own_message_in_any_order_and_count_once() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d1");
    sim.join(&mut client, "/goodcity");
    for n in 1..=3 {
        sim.send(&format!(r#"{{"rooms":"user_3","event":"m","args":[{n}]}}"#));
    }
    let live = sim.recv(&mut client);
    let ids: Vec<u64> = live
        .iter()
        .filter_map(|p| sim::ack_id(p, "/goodcity"))
        .collect();
    assert_eq!(ids.len(), 3, "{live:?}");
    // Without resync the order of acks does not matter; a repeated ack changes nothing.
    sim.ack(&client, "/goodcity", ids[2]);
    sim.ack(&client, "/goodcity", ids[0]);
    sim.ack(&client, "/goodcity", ids[0]);
    assert!(
        sim.recv(&mut client).is_empty(),
        "no _resync without resync"
    );
    sim.close(&mut client);

    let mut again = sim.client(Generation::V3, "token=u3&deviceId=d1");
    let packets = sim.join(&mut again, "/goodcity");
    let batch = sim::events_named(&packets, "/goodcity", "_batch");
    assert_eq!(batch.len(), 1, "{packets:?}");
    assert_eq!(
        sim::event_args(batch[0], "/goodcity").expect("args")[1],
        serde_json::json!([["m", 2]])
    );
}
