//! Offline delivery (behaviours 12–14, 24, 25, 31 in tests/README.md; README Differences #1, #6,
//! #7): messages for a disconnected device wait in its queue and arrive as one `_batch` — in send
//! order, with one ack that removes exactly what it carried — until `device_ttl` after the
//! disconnect.

mod common;

use std::time::Duration;

use common::*;
use courier_tests::{Lib, StubSite, Transports, json, matrix, scenario};

// Behaviours 12, 13 with every library over every transport (README Differences #6: send order
// across events; the ack empties the queue).
scenario!(every_client_gets_its_offline_batch, |bin| {
    let stub = StubSite::start();
    let combos = matrix::full();
    for i in 0..combos.len() {
        stub.user(&format!("tok{i}"), &[&format!("user_{i}"), "grp"]);
    }
    let gw = user_site(bin, &stub).start();
    matrix::for_each(&combos, |i, lib, transports| {
        let (token, device, room) = (format!("tok{i}"), format!("dev{i}"), format!("user_{i}"));
        let mut c = connected(&gw, lib, transports, &token, &device);
        c.disconnect();
        c.close();
        push(
            &gw,
            json!({"rooms": room, "event": "offline1", "args": [1]}),
        );
        push(
            &gw,
            json!({"rooms": [room.clone()], "event": "offline2", "args": [2]}),
        );
        push(
            &gw,
            json!({"rooms": room, "event": "update_store", "args": ["user", {"id": 1}]}),
        );
        push(
            &gw,
            json!({"rooms": room, "event": "offline1", "args": [3]}),
        );

        let mut back = client(&gw, lib, transports, &token, &device);
        back.expect_connected();
        let batch = back.expect_event("_batch");
        assert!(batch.has_ack, "_batch asks for one ack");
        assert_eq!(
            batch.args,
            vec![
                json!([["offline1", 1], ["offline2", 2], ["update_store", "user", {"id": 1}], ["offline1", 3]])
            ]
        );
        back.ack_event(&batch, vec![]);
        back.expect_no_event(QUIET);

        let mut third = reconnect(&gw, back, &token, &device);
        third.expect_connected();
        third.expect_no_event(QUIET);
    });
});

// Behaviour 12: no `_batch` at all when nothing is queued (first connect included).
scenario!(no_batch_when_nothing_is_queued, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Py4, Transports::Polling, "u1", "d1");
    c.expect_no_event(QUIET);
    let mut again = reconnect(&gw, c, "u1", "d1");
    again.expect_connected();
    again.expect_no_event(QUIET);
});

// Behaviour 24: messages received live but not acked are in the next `_batch`.
scenario!(unacked_live_messages_come_back_in_the_batch, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Sio1, Transports::Websocket, "u1", "d1");
    push(
        &gw,
        json!({"rooms": "user_1", "event": "live", "args": ["a"]}),
    );
    c.expect_event("live");
    let mut again = reconnect(&gw, c, "u1", "d1");
    again.expect_connected();
    let batch = again.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["live", "a"]])]);
    again.ack_event(&batch, vec![]);
});

// README Differences #6: the batch ack removes exactly the messages it carried; one pushed after
// the batch was sent survives it (delivered live and, unacked, in the next batch).
scenario!(batch_ack_keeps_messages_queued_after_the_batch, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    c.disconnect();
    c.close();
    push(&gw, json!({"rooms": "user_1", "event": "old", "args": [1]}));
    let mut back = client(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    back.expect_connected();
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["old", 1]])]);
    push(&gw, json!({"rooms": "user_1", "event": "new", "args": [2]}));
    let live = back.expect_event("new");
    assert!(live.has_ack);
    back.ack_event(&batch, vec![]);

    let mut third = reconnect(&gw, back, "u1", "d1");
    third.expect_connected();
    let batch = third.expect_event("_batch");
    assert_eq!(
        batch.args,
        vec![json!([["new", 2]])],
        "the batch ack did not take the newer message"
    );
    third.ack_event(&batch, vec![]);
});

// Behaviour 24: a device disconnected for longer than device_ttl (counted from its disconnect,
// README Differences #1) is dropped: nothing is queued for it any more.
scenario!(device_expires_device_ttl_after_disconnect, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).device_ttl(1).start();
    let mut c = connected(&gw, Lib::Sio2, Transports::Polling, "u1", "gone");
    c.disconnect();
    c.close();
    std::thread::sleep(Duration::from_millis(2500));
    push(&gw, json!({"rooms": "user_1", "event": "late", "args": []}));
    let mut back = client(&gw, Lib::Sio2, Transports::Polling, "u1", "gone");
    assert_eq!(back.expect_connected(), json!({"device_ttl": 1}));
    back.expect_no_event(QUIET);
});

// README Differences #1: a connected device is never pruned — not even one that reconnected after
// an earlier disconnect (the original dropped it device_ttl after the old disconnect).
scenario!(connected_device_is_never_pruned, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).device_ttl(1).start();
    let c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "stay");
    let mut c = reconnect(&gw, c, "u1", "stay");
    c.expect_connected();
    std::thread::sleep(Duration::from_millis(2500));
    push(
        &gw,
        json!({"rooms": "user_1", "event": "still_here", "args": [1]}),
    );
    let ev = c.expect_event("still_here");
    c.ack_event(&ev, vec![]);
});

// README Differences #7: device_ttl 0 keeps messages until acked, however long the device is away.
scenario!(device_ttl_zero_keeps_until_acked, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).env("DEVICE_TTL", "0").start();
    let mut c = connected(&gw, Lib::Py5, Transports::Websocket, "u1", "d0");
    c.disconnect();
    c.close();
    std::thread::sleep(Duration::from_millis(1500));
    push(&gw, json!({"rooms": "user_1", "event": "kept", "args": []}));
    std::thread::sleep(Duration::from_millis(1500));
    let mut back = client(&gw, Lib::Py5, Transports::Websocket, "u1", "d0");
    assert_eq!(back.expect_connected(), json!({"device_ttl": 0}));
    let batch = back.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["kept"]])]);
    back.ack_event(&batch, vec![]);
});

// Behaviour 24 (kept): a user who never connected has no device, so nothing is queued.
scenario!(unknown_user_gets_nothing_queued, |bin| {
    let stub = StubSite::start();
    stub.user("new", &["user_9"]);
    let gw = user_site(bin, &stub).start();
    push(
        &gw,
        json!({"rooms": "user_9", "event": "before", "args": []}),
    );
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "new", "d");
    c.expect_no_event(QUIET);
});
