//! Group rooms, the public channel and broadcast mode (behaviours 22, 23, 26, 34 in
//! tests/README.md; README Differences #4): how `/send` rooms expand to user rooms, and how a site
//! without a user-room prefix broadcasts.

mod common;

use common::*;
use courier_tests::{Client, Gateway, Lib, Site, StubSite, Transports, json, matrix, scenario};

// Behaviour 23: a group room reaches every known user whose auth listed it, case-insensitively;
// duplicates collapse to one copy per user.
scenario!(group_rooms_expand_to_their_users, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1", "Reviewer"]);
    stub.user("u2", &["user_2", "reviewer", "staff"]);
    stub.user("u3", &["user_3"]);
    let gw = user_site(bin, &stub).start();
    let mut c1 = connected(&gw, Lib::Sio2, Transports::Upgrade, "u1", "d1");
    let mut c2 = connected(&gw, Lib::Sio4, Transports::Upgrade, "u2", "d2");
    let mut c3 = connected(&gw, Lib::Py5, Transports::Websocket, "u3", "d3");

    push(
        &gw,
        json!({"rooms": ["reviewer", "user_1", "REVIEWER"], "event": "grp", "args": [1]}),
    );
    for c in [&mut c1, &mut c2] {
        let ev = c.expect_event("grp");
        assert_eq!(ev.args, vec![json!(1)]);
        assert!(ev.has_ack, "group sends are queued per user device");
        c.ack_event(&ev, vec![]);
        c.expect_no_event(QUIET);
    }
    c3.expect_no_event(QUIET);

    push(&gw, json!({"rooms": "staff", "event": "only_staff"}));
    let ev = c2.expect_event("only_staff");
    assert_eq!(ev.args, vec![json!(null)]);
    c2.ack_event(&ev, vec![]);
    c1.expect_no_event(QUIET);
});

// Behaviour 23 for offline users: a group send is queued for a disconnected member's device.
scenario!(group_sends_are_queued_for_offline_members, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1", "staff"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Sio1, Transports::Polling, "u1", "d1");
    c.disconnect();
    c.close();
    push(
        &gw,
        json!({"rooms": "staff", "event": "memo", "args": ["read me"]}),
    );
    let mut back = client(&gw, Lib::Sio1, Transports::Polling, "u1", "d1");
    back.expect_connected();
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["memo", "read me"]])]);
    back.ack_event(&batch, vec![]);
});

// README Differences #4: group memberships come from the user's latest successful auth.
scenario!(group_memberships_follow_the_latest_auth, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    stub.user("u1", &["user_1", "supervisor"]);
    let mut c = reconnect(&gw, c, "u1", "d1");
    c.expect_connected();
    push(
        &gw,
        json!({"rooms": "supervisor", "event": "promoted", "args": []}),
    );
    let ev = c.expect_event("promoted");
    c.ack_event(&ev, vec![]);

    stub.user("u1", &["user_1"]);
    let mut c = reconnect(&gw, c, "u1", "d1");
    c.expect_connected();
    push(
        &gw,
        json!({"rooms": "supervisor", "event": "demoted", "args": []}),
    );
    c.expect_no_event(QUIET);
});

// Behaviour 26: the public channel works like a user room with its own per-device queue, and
// never triggers a user update.
scenario!(public_channel_delivers_and_queues_per_device, |bin| {
    let stub = StubSite::start();
    stub.user("anon", &["browse"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).public_channel("browse"))
        .start();
    matrix::for_each(&matrix::pair(), |i, lib, transports| {
        let device = format!("pub{i}");
        let mut c = connected(&gw, lib, transports, "anon", &device);
        c.disconnect();
        c.close();
    });
    push(
        &gw,
        json!({"rooms": "browse", "event": "offer", "args": [{"id": 7}]}),
    );
    let mut back = Vec::new();
    for (i, (lib, transports)) in matrix::pair().into_iter().enumerate() {
        let mut c = client(&gw, lib, transports, "anon", &format!("pub{i}"));
        c.expect_connected();
        let batch = c.expect_event("_batch");
        assert_eq!(
            batch.args,
            vec![json!([["offer", {"id": 7}]])],
            "each device has its own queue"
        );
        c.ack_event(&batch, vec![]);
        back.push(c);
    }
    push(
        &gw,
        json!({"rooms": ["browse"], "event": "live_offer", "args": []}),
    );
    for c in &mut back {
        let ev = c.expect_event("live_offer");
        assert!(ev.has_ack);
        c.ack_event(&ev, vec![]);
        c.expect_no_event(QUIET);
    }
    assert!(
        stub.user_updates().is_empty(),
        "no PUT for the public channel: {:#?}",
        stub.user_updates()
    );
});

// Behaviour 34: a socket registered under two user entries (its user room and the public
// channel) gets one copy per entry.
scenario!(one_copy_per_registered_entry, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1", "browse"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).public_channel("browse"))
        .start();
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    push(
        &gw,
        json!({"rooms": ["user_1", "browse"], "event": "twice", "args": []}),
    );
    let a = c.expect_event("twice");
    let b = c.expect_event("twice");
    c.ack_event(&a, vec![]);
    c.ack_event(&b, vec![]);
    c.expect_no_event(QUIET);
});

// Behaviour 22: broadcast mode — no ack, no storage, case-sensitive rooms, one copy per
// targeted room the socket is in.
scenario!(
    broadcast_mode_emits_to_rooms_without_acks_or_storage,
    |bin| {
        let stub = StubSite::start();
        stub.user("a", &["room1", "room2"]);
        stub.user("b", &["room2"]);
        let gw = Gateway::builder(bin)
            .site(Site::for_stub(SITE, &stub).broadcast_mode())
            .start();
        let mut a = connected(&gw, Lib::Sio2, Transports::Upgrade, "a", "da");
        let mut b = connected(&gw, Lib::Py4, Transports::Upgrade, "b", "db");

        push(
            &gw,
            json!({"rooms": ["room1", "room2", "room1"], "event": "news", "args": ["x"]}),
        );
        for _ in 0..2 {
            let ev = a.expect_event("news");
            assert_eq!(ev.args, vec![json!("x")]);
            assert!(!ev.has_ack, "broadcast mode asks for no ack");
        }
        let ev = b.expect_event("news");
        assert!(!ev.has_ack);
        a.expect_no_event(QUIET);
        b.expect_no_event(QUIET);

        push(&gw, json!({"rooms": "ROOM1", "event": "case", "args": []}));
        a.expect_no_event(QUIET);

        let mut a2 = reconnect(&gw, a, "a", "da");
        a2.expect_connected();
        a2.expect_no_event(QUIET);
    }
);

// Behaviours 4, 41: a site's `/send` reaches only its own namespace, even when another site
// has the same room names.
scenario!(sends_stay_within_their_site, |bin| {
    let stub = StubSite::start();
    stub.user("a", &["room1"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).broadcast_mode())
        .site(Site::for_stub("other", &stub).broadcast_mode())
        .start();
    let mut mine = connected(&gw, Lib::Sio4, Transports::Polling, "a", "d");
    let mut other = Client::builder(Lib::Sio4, Transports::Polling)
        .namespace("/other")
        .token("a")
        .connect(gw.port());
    other.expect_connected();
    push(
        &gw,
        json!({"rooms": "room1", "event": "scoped", "args": []}),
    );
    mine.expect_event("scoped");
    other.expect_no_event(QUIET);
});
