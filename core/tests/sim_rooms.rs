//! Routing of `/send`: group rooms expanded case-insensitively to their users (refreshed by
//! each auth), the public channel, broadcast mode, and user updates.

mod sim;

use sim::{AuthAnswer, Generation, Sim};

const NSP: &str = "/goodcity";

#[test]
fn group_rooms_reach_their_users_case_insensitively() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "Reviewer"]));
    sim.auth("u4", AuthAnswer::Rooms(vec!["user_4"]));
    let mut three = sim.client(Generation::V3, "token=u3&deviceId=d");
    sim.join(&mut three, NSP);
    let mut four = sim.client(Generation::V3, "token=u4&deviceId=d");
    sim.join(&mut four, NSP);

    sim.send(r#"{"rooms":["reviewer"],"event":"review","args":[1]}"#);
    assert_eq!(
        sim::events_named(&sim.recv(&mut three), NSP, "review").len(),
        1
    );
    assert!(sim::events_named(&sim.recv(&mut four), NSP, "review").is_empty());
}

#[test]
fn group_membership_is_refreshed_by_the_latest_auth() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d");
    sim.join(&mut client, NSP);
    sim.close(&mut client);
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "supervisor"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d");
    sim.join(&mut client, NSP);
    sim.send(r#"{"rooms":"supervisor","event":"promoted","args":[]}"#);
    assert_eq!(
        sim::events_named(&sim.recv(&mut client), NSP, "promoted").len(),
        1
    );

    // And a group left is no longer expanded to the user.
    sim.close(&mut client);
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d");
    sim.join(&mut client, NSP);
    sim.send(r#"{"rooms":"supervisor","event":"demoted","args":[]}"#);
    assert!(sim::events_named(&sim.recv(&mut client), NSP, "demoted").is_empty());
}

#[test]
fn the_public_channel_is_queued_per_device_and_never_updates_users() {
    let mut sim = Sim::goodcity();
    sim.auth("anon", AuthAnswer::Rooms(vec!["browse"]));
    let mut client = sim.client(Generation::V3, "token=anon&deviceId=tab1");
    let packets = sim.join(&mut client, NSP);
    assert_eq!(packets[1], "40/goodcity");
    assert!(sim.puts().is_empty(), "no PUT for the public channel");
    sim.close(&mut client);
    assert!(sim.puts().is_empty(), "no PUT for the public channel");

    sim.send(r#"{"rooms":"browse","event":"news","args":["n"]}"#);
    let mut client = sim.client(Generation::V3, "token=anon&deviceId=tab1");
    let packets = sim.join(&mut client, NSP);
    let batch = sim::events_named(&packets, NSP, "_batch");
    assert_eq!(batch.len(), 1, "{packets:?}");
    assert_eq!(
        sim::event_args(batch[0], NSP).expect("args")[1],
        serde_json::json!([["news", "n"]])
    );
}

#[test]
fn a_socket_in_a_user_room_and_the_public_channel_gets_one_copy_per_entry() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3", "browse", "staff"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d");
    sim.join(&mut client, NSP);
    sim.send(r#"{"rooms":["user_3","browse"],"event":"both","args":[]}"#);
    assert_eq!(
        sim::events_named(&sim.recv(&mut client), NSP, "both").len(),
        2
    );
}

#[test]
fn connect_and_disconnect_update_the_user() {
    let mut sim = Sim::goodcity();
    sim.auth("u3", AuthAnswer::Rooms(vec!["user_3"]));
    let mut client = sim.client(Generation::V3, "token=u3&deviceId=d");
    sim.join(&mut client, NSP);
    sim.advance(std::time::Duration::from_millis(1500));
    sim.close(&mut client);
    assert_eq!(
        sim.puts(),
        vec![
            (
                "http://127.0.0.1:9/users/3".to_owned(),
                r#"{"id":"3","user":{"last_connected":"2023-11-14T22:13:20.000Z"}}"#.to_owned()
            ),
            (
                "http://127.0.0.1:9/users/3".to_owned(),
                r#"{"id":"3","user":{"last_disconnected":"2023-11-14T22:13:21.500Z"}}"#.to_owned()
            ),
        ]
    );
}

const BROADCAST: &str = r#"
news:
  authUrl: http://127.0.0.1:9/rooms
  authScheme: Token
  apiKey: k
"#;

#[test]
fn broadcast_mode_emits_once_per_targeted_room_without_ack_or_storage() {
    let mut sim = Sim::new(BROADCAST, None);
    sim.auth("a", AuthAnswer::Rooms(vec!["sports", "weather"]));
    sim.auth("b", AuthAnswer::Rooms(vec!["Sports"]));
    let mut a = sim.client(Generation::V3, "token=a");
    let joined = sim.join(&mut a, "/news");
    assert_eq!(joined[2], r#"42/news,["_settings",{"device_ttl":3600}]"#);
    assert_eq!(
        sim.auth_calls()[0].headers.get("authorization"),
        Some("Token a")
    );
    let mut b = sim.client(Generation::V3, "token=b");
    sim.join(&mut b, "/news");

    let response = sim.send_json(
        "site=news&apiKey=k",
        r#"{"rooms":["sports","weather","sports"],"event":"score","args":[1,2]}"#,
    );
    assert_eq!(response.status, 200);
    assert_eq!(
        sim.recv(&mut a),
        vec![
            r#"42/news,["score",1,2]"#.to_owned(),
            r#"42/news,["score",1,2]"#.to_owned()
        ]
    );
    assert!(sim.recv(&mut b).is_empty(), "room names are case-sensitive");
    assert!(
        sim.store.device_count() == 0,
        "broadcast mode stores nothing"
    );
}
