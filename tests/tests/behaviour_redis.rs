//! With Redis (README Differences #5, #12; README Redis layout): queues and the device registry
//! survive a Courier crash, Courier survives Redis restarts, two nodes share users, and queues
//! written by the Node service in its legacy layout are served after a switch-over.

mod common;

use std::time::Duration;

use common::*;
use courier_tests::{
    Client, Lib, Redis, Site, StubSite, Transports, json, matrix, scenario, send_json, wait_until,
};

// The everyday paths with the Redis store, one client per library.
scenario!(delivery_and_batch_with_redis, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    let combos = matrix::one_per_lib();
    for i in 0..combos.len() {
        stub.user(&format!("t{i}"), &[&format!("user_{i}")]);
    }
    // At `debug`: each client waits for its ack's `Message removed` line.
    let gw = user_site(bin, &stub)
        .redis(&redis)
        .env("RUST_LOG", "info,courier=debug")
        .start();
    matrix::for_each(&combos, |i, lib, transports| {
        let (token, device, room) = (format!("t{i}"), format!("d{i}"), format!("user_{i}"));
        let mut c = connected(&gw, lib, transports, &token, &device);
        push(&gw, json!({"rooms": room, "event": "live", "args": [i]}));
        let ev = c.expect_event("live");
        c.ack_event(&ev, vec![]);
        // python-socketio 4 aborts its transport on disconnect without flushing what it queued:
        // let the ack reach the store before leaving, as a real client that stays a moment does.
        gw.wait_for_log(&format!(
            r#""message":"Message removed","site":"{SITE}","room":"{room}","deviceId":"{device}","event":"live""#
        ));
        c.disconnect();
        c.close();
        push(&gw, json!({"rooms": room, "event": "queued", "args": [1]}));
        push(&gw, json!({"rooms": room, "event": "queued2", "args": [2]}));
        let mut back = client(&gw, lib, transports, &token, &device);
        back.expect_connected();
        let batch = back.expect_event("_batch");
        assert_eq!(batch.args, vec![json!([["queued", 1], ["queued2", 2]])]);
        back.ack_event(&batch, vec![]);
    });
    assert!(
        redis.cmd(&["DBSIZE"]).int() > 0,
        "Courier keeps its registry in Redis"
    );
});

// README Differences #5: after a crash (kill -9) and restart, a known device still gets its
// messages — those queued before the crash and those sent after it.
scenario!(queue_and_registry_survive_courier_kill_9, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let mut gw = user_site(bin, &stub).redis(&redis).start();
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    c.disconnect();
    c.close();
    push(
        &gw,
        json!({"rooms": "user_1", "event": "before_crash", "args": []}),
    );
    gw.kill();
    gw.restart();
    push(
        &gw,
        json!({"rooms": "user_1", "event": "after_crash", "args": []}),
    );
    let mut back = client(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    back.expect_connected();
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["before_crash"], ["after_crash"]])]);
    back.ack_event(&batch, vec![]);
});

// Courier keeps running while Redis restarts, and works again once it is back.
scenario!(courier_survives_a_redis_restart, |bin| {
    let mut redis = Redis::start_persistent();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let mut gw = user_site(bin, &stub).redis(&redis).start();
    let c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    c.close();
    redis.kill();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        gw.is_running(),
        "Courier must not exit when Redis goes away"
    );
    assert_eq!(
        courier_tests::http(gw.port(), "GET", "/healthcheck", &[], b"").status,
        200
    );
    // A send while Redis is down must not crash anything; it may wait for Redis or fail, but it
    // answers once Redis is back at the latest.
    let port = gw.port();
    let during = std::thread::spawn(move || {
        send_json(
            port,
            SITE,
            Site::API_KEY,
            "",
            &json!({"rooms": "user_1", "event": "during"}),
        )
    });
    std::thread::sleep(Duration::from_millis(500));
    redis.start_again();
    let during = during.join().expect("the send during the outage answered");
    assert!(during.status == 200 || during.status >= 500, "{during:?}");

    // Once Redis is back, connects and sends work again (reconnection takes a moment).
    let recovered = wait_until(Duration::from_secs(20), || {
        send_json(
            gw.port(),
            SITE,
            Site::API_KEY,
            "",
            &json!({"rooms": "user_1", "event": "probe"}),
        )
        .status
            == 200
    });
    assert!(recovered, "/send never recovered after Redis came back");
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d2");
    push(
        &gw,
        json!({"rooms": "user_1", "event": "after", "args": []}),
    );
    let ev = c.expect_event("after");
    c.ack_event(&ev, vec![]);
    assert!(gw.is_running());
});

// README Differences #12: with a shared Redis, a `/send` on node B reaches a user connected to node
// A, live; and a device known to A is queued by B.
scenario!(two_nodes_share_users, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1", "staff"]);
    let node_a = user_site(bin, &stub).redis(&redis).start();
    let other_bin = match bin {
        courier_tests::Bin::Tokio => courier_tests::Bin::Smol,
        courier_tests::Bin::Smol => courier_tests::Bin::Tokio,
    };
    let node_b = user_site(other_bin, &stub).redis(&redis).start();
    let mut c = connected(&node_a, Lib::Sio2, Transports::Upgrade, "u1", "d1");
    push(
        &node_b,
        json!({"rooms": "user_1", "event": "cross", "args": [1]}),
    );
    let ev = c.expect_event("cross");
    assert!(ev.has_ack);
    c.ack_event(&ev, vec![]);
    push(
        &node_b,
        json!({"rooms": "staff", "event": "cross_group", "args": [2]}),
    );
    let ev = c.expect_event("cross_group");
    c.ack_event(&ev, vec![]);
    c.disconnect();
    c.close();
    push(
        &node_b,
        json!({"rooms": "user_1", "event": "queued_by_b", "args": []}),
    );
    let mut back = client(&node_a, Lib::Sio2, Transports::Upgrade, "u1", "d1");
    back.expect_connected();
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["queued_by_b"]])]);
    back.ack_event(&batch, vec![]);
});

// README Redis layout, switch-over: lists written by the Node service
// (`/<site>:socket.io:<room>:<device>:<event>`, items `<flake id>:<json>`) are served to the device
// on its first connect, and acked away.
scenario!(legacy_layout_is_read_on_first_connect, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u3", &["user_3"]);
    let legacy = |event: &str| format!("/{SITE}:socket.io:user_3:d1:{event}");
    redis.cmd(&[
        "RPUSH",
        &legacy("update_store"),
        r#"7530115940332077057:["update_store","user",{"id":1}]"#,
        r#"7530115940332077059:["update_store","user",{"id":2}]"#,
    ]);
    redis.cmd(&[
        "RPUSH",
        &legacy("grp"),
        r#"7530115940332077058:["grp",null]"#,
    ]);
    // Another device's and another user's legacy lists stay where they are.
    redis.cmd(&[
        "RPUSH",
        &format!("/{SITE}:socket.io:user_3:d2:x"),
        r#"7530115940332077060:["x"]"#,
    ]);
    redis.cmd(&[
        "RPUSH",
        &format!("/{SITE}:socket.io:user_4:d1:x"),
        r#"7530115940332077061:["x"]"#,
    ]);

    let gw = user_site(bin, &stub).redis(&redis).start();
    let mut c = connected(&gw, Lib::Sio1, Transports::Polling, "u3", "d1");
    let batch = c.expect_event("_batch");
    let items = batch.args[0].as_array().cloned().unwrap_or_default();
    assert_eq!(items.len(), 3, "{items:?}");
    for item in [
        json!(["update_store", "user", {"id": 1}]),
        json!(["update_store", "user", {"id": 2}]),
        json!(["grp", null]),
    ] {
        assert!(items.contains(&item), "{item} in {items:?}");
    }
    let pos = |item: &courier_tests::Value| items.iter().position(|i| i == item);
    assert!(
        pos(&json!(["update_store", "user", {"id": 1}]))
            < pos(&json!(["update_store", "user", {"id": 2}])),
        "list order kept within an event"
    );
    c.ack_event(&batch, vec![]);
    let mut again = reconnect(&gw, c, "u3", "d1");
    again.expect_connected();
    again.expect_no_event(QUIET);
    assert_eq!(
        redis.list(&format!("/{SITE}:socket.io:user_3:d2:x")).len(),
        1,
        "d2 untouched"
    );
    assert_eq!(
        redis.list(&format!("/{SITE}:socket.io:user_4:d1:x")).len(),
        1,
        "user_4 untouched"
    );
});

// SIGTERM ends the process promptly and cleanly.
scenario!(sigterm_exits_cleanly, |bin| {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let mut gw = user_site(bin, &stub).redis(&redis).start();
    let _c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    let status = gw.terminate();
    assert!(status.success(), "exit status after SIGTERM: {status}");
    // The same configuration starts again on the same port.
    gw.restart();
    let mut c = Client::builder(Lib::Sio2, Transports::Polling)
        .namespace(NS)
        .token("u1")
        .device("d1")
        .connect(gw.port());
    c.expect_connected();
});

// Behaviour 36 (tests/README.md): config.yml's `redis` wins over REDIS_URL.
scenario!(config_redis_wins_over_redis_url, |bin| {
    let configured = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead = format!(
        "redis://127.0.0.1:{}",
        closed.local_addr().expect("addr").port()
    );
    drop(closed);
    let gw = user_site(bin, &stub)
        .config(&format!("redis: {{url: \"{}\"}}", configured.url()))
        .env("REDIS_URL", &dead)
        .start();
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    c.disconnect();
    c.close();
    push(
        &gw,
        json!({"rooms": "user_1", "event": "stored", "args": []}),
    );
    assert!(
        configured.cmd(&["DBSIZE"]).int() > 0,
        "the queue went to the configured Redis"
    );
    let mut back = client(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    back.expect_connected();
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["stored"]])]);
    back.ack_event(&batch, vec![]);
});
