//! Several devices of one user (behaviours 11, 33 in tests/README.md): each deviceId has its own
//! queue and its own acks; one device's disconnect or ack does not touch the other's.

mod common;

use common::*;
use courier_tests::{Lib, StubSite, Transports, json, scenario};

// Both devices receive every message live, each with its own ack request.
scenario!(each_device_receives_and_acks_its_own_copy, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut phone = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "phone");
    let mut laptop = connected(&gw, Lib::Sio2, Transports::Polling, "u1", "laptop");
    push(
        &gw,
        json!({"rooms": "user_1", "event": "note", "args": [1]}),
    );
    let on_phone = phone.expect_event("note");
    let on_laptop = laptop.expect_event("note");
    assert!(on_phone.has_ack && on_laptop.has_ack);
    phone.ack_event(&on_phone, vec![]);

    // The laptop did not ack: its copy is still queued, the phone's is not.
    let mut laptop = reconnect(&gw, laptop, "u1", "laptop");
    laptop.expect_connected();
    let batch = laptop.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["note", 1]])]);
    laptop.ack_event(&batch, vec![]);
    let mut phone = reconnect(&gw, phone, "u1", "phone");
    phone.expect_connected();
    phone.expect_no_event(QUIET);
});

// One device offline, the other online: the online one gets it live, the offline one in its
// batch.
scenario!(offline_device_queues_while_the_other_receives_live, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = user_site(bin, &stub).start();
    let mut phone = connected(&gw, Lib::Py5, Transports::Websocket, "u1", "phone");
    let mut laptop = connected(&gw, Lib::Py4, Transports::Polling, "u1", "laptop");
    laptop.disconnect();
    laptop.close();
    push(&gw, json!({"rooms": "user_1", "event": "a", "args": []}));
    push(&gw, json!({"rooms": "user_1", "event": "b", "args": []}));
    for name in ["a", "b"] {
        let ev = phone.expect_event(name);
        phone.ack_event(&ev, vec![]);
    }
    let mut laptop = client(&gw, Lib::Py4, Transports::Polling, "u1", "laptop");
    laptop.expect_connected();
    let batch = laptop.expect_event("_batch");
    assert_eq!(batch.args, vec![json!([["a"], ["b"]])]);
    laptop.ack_event(&batch, vec![]);
    phone.expect_no_event(QUIET);
});

// Several users, several devices: a send to one user never reaches another's devices.
scenario!(users_do_not_see_each_others_messages, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    stub.user("u2", &["user_2"]);
    let gw = user_site(bin, &stub).start();
    let mut one = connected(
        &gw,
        Lib::Sio4,
        Transports::Websocket,
        "u1",
        "same-device-id",
    );
    let mut two = connected(
        &gw,
        Lib::Sio4,
        Transports::Websocket,
        "u2",
        "same-device-id",
    );
    push(
        &gw,
        json!({"rooms": "user_1", "event": "private", "args": []}),
    );
    let ev = one.expect_event("private");
    one.ack_event(&ev, vec![]);
    two.expect_no_event(QUIET);
});
