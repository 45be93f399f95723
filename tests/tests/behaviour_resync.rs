//! Acks with resync (behaviours 28, 29 in tests/README.md; README Differences #3): with `resync`
//! on, an ack must be for the head of that event's queue; otherwise the client gets `_resync` and
//! that event's queue (only that one, only that device's) is cleared. `resync` is a boolean:
//! `true`/`1` on, `false`/`0`/ empty/absent off.

mod common;

use common::*;
use courier_tests::{Lib, StubSite, Transports, json, scenario};

/// Pushes m1, m2 of event `ev` and one `other` event with `resync_query`, acks m2 first and
/// returns whether a `_resync` arrived.
fn out_of_order_ack_triggers_resync(bin: courier_tests::Bin, lib: Lib, resync_query: &str) -> bool {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, lib, Transports::Websocket, "u1", "d1");
    push_with(
        &gw,
        resync_query,
        json!({"rooms": "user_1", "event": "ev", "args": [1]}),
    );
    push_with(
        &gw,
        resync_query,
        json!({"rooms": "user_1", "event": "ev", "args": [2]}),
    );
    push_with(
        &gw,
        resync_query,
        json!({"rooms": "user_1", "event": "other", "args": [3]}),
    );
    let _m1 = c.expect_event("ev");
    let m2 = c.expect_event("ev");
    let _other = c.expect_event("other");
    c.ack_event(&m2, vec![]);
    let saw_resync = match c.maybe_event(QUIET) {
        Some(ev) => {
            assert_eq!(ev.name, "_resync", "{ev:?}");
            assert!(ev.args.is_empty(), "_resync has no arguments");
            assert!(!ev.has_ack, "_resync asks for no ack");
            true
        }
        None => false,
    };
    // Either way the `other` queue is intact; with resync the `ev` queue is cleared, without it
    // only m2 is gone.
    let mut back = reconnect(&gw, c, "u1", "d1");
    back.expect_connected();
    let batch = back.expect_event("_batch");
    let expected = if saw_resync {
        json!([["other", 3]])
    } else {
        json!([["ev", 1], ["other", 3]])
    };
    assert_eq!(batch.args, vec![expected]);
    back.ack_event(&batch, vec![]);
    saw_resync
}

scenario!(resync_true_and_1_turn_the_head_check_on, |bin| {
    assert!(out_of_order_ack_triggers_resync(
        bin,
        Lib::Sio2,
        "resync=true"
    ));
    assert!(out_of_order_ack_triggers_resync(bin, Lib::Sio4, "resync=1"));
});

scenario!(resync_false_0_empty_and_absent_leave_it_off, |bin| {
    for query in ["resync=false", "resync=0", "resync=", ""] {
        assert!(
            !out_of_order_ack_triggers_resync(bin, Lib::Sio2, query),
            "{query:?} must not resync"
        );
    }
});

// In-order acks with resync on never trigger `_resync` and empty the queue.
scenario!(in_order_acks_with_resync_are_quiet, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut c = connected(&gw, Lib::Py5, Transports::Polling, "u1", "d1");
    for n in 1..=3 {
        push_with(
            &gw,
            "resync=true",
            json!({"rooms": "user_1", "event": "ev", "args": [n]}),
        );
    }
    for n in 1..=3 {
        let ev = c.expect_event("ev");
        assert_eq!(ev.args, vec![json!(n)]);
        c.ack_event(&ev, vec![]);
    }
    c.expect_no_event(QUIET);
    let mut back = reconnect(&gw, c, "u1", "d1");
    back.expect_connected();
    back.expect_no_event(QUIET);
});

// Behaviour 29: `_resync` clears only the acking device's queue of that event.
scenario!(resync_clears_only_that_devices_event_queue, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut a = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "a");
    let mut b = connected(&gw, Lib::Sio2, Transports::Websocket, "u1", "b");
    push_with(
        &gw,
        "resync=true",
        json!({"rooms": "user_1", "event": "ev", "args": [1]}),
    );
    push_with(
        &gw,
        "resync=true",
        json!({"rooms": "user_1", "event": "ev", "args": [2]}),
    );
    a.expect_event("ev");
    let a2 = a.expect_event("ev");
    a.ack_event(&a2, vec![]);
    assert_eq!(
        a.expect_event("_resync").args,
        Vec::<courier_tests::Value>::new()
    );
    b.expect_event("ev");
    b.expect_event("ev");
    let mut b = reconnect(&gw, b, "u1", "b");
    b.expect_connected();
    let batch = b.expect_event("_batch");
    assert_eq!(
        batch.args,
        vec![json!([["ev", 1], ["ev", 2]])],
        "device b keeps its queue"
    );
    b.ack_event(&batch, vec![]);
});
