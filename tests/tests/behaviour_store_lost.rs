//! Redis loses Courier's data under connected clients on two nodes (both binaries, both protocol
//! generations): every connected device still gets what is sent, live, through either node, and
//! once the nodes have registered their devices again, sends are queued for them as before.
//!
//! Two ways of losing it: Redis restarted without persistence (the epoch key goes with the
//! data, every node notices and registers its devices again), and the data gone but the epoch
//! kept (a failover to a replica that missed the latest writes: only a send that finds a
//! connected device unknown can tell).

mod common;

use std::time::Duration;

use common::*;
use courier_tests::{
    Bin, Client, Gateway, Lib, Redis, Site, StubSite, Transports, json, scenario, send_json,
    wait_until,
};

/// Long enough for a restarted Redis, the nodes' reconnection and their next epoch check on a
/// loaded machine; the scenario waits for conditions, never for this long.
const RECOVERY: Duration = Duration::from_secs(30);

/// One client per (node, protocol generation); user `u3` has a device on each node.
struct World {
    redis: Redis,
    /// Kept alive: reconnecting clients authenticate against it.
    _stub: StubSite,
    node_a: Gateway,
    node_b: Gateway,
    /// `(client, token, device, room, on node a)`.
    clients: Vec<(Client, &'static str, &'static str, &'static str, bool)>,
}

fn other(bin: Bin) -> Bin {
    match bin {
        Bin::Tokio => Bin::Smol,
        Bin::Smol => Bin::Tokio,
    }
}

fn world(bin: Bin) -> World {
    let redis = Redis::start();
    let stub = StubSite::start();
    stub.user("u1", &["user_1", "staff"]);
    stub.user("u2", &["user_2", "staff"]);
    stub.user("u3", &["user_3"]);
    // At `debug`: the scenario waits for per-delivery lines ("Message removed").
    let node_a = user_site(bin, &stub)
        .redis(&redis)
        .env("RUST_LOG", DEBUG_LOG)
        .start();
    let node_b = user_site(other(bin), &stub)
        .redis(&redis)
        .env("RUST_LOG", DEBUG_LOG)
        .start();
    let plan = [
        (Lib::Sio2, "u1", "d1", "user_1", true),
        (Lib::Sio4, "u2", "d2", "user_2", false),
        (Lib::Sio4, "u3", "d3a", "user_3", true),
        (Lib::Py4, "u3", "d3b", "user_3", false),
    ];
    let clients = plan
        .into_iter()
        .map(|(lib, token, device, room, on_a)| {
            let node = if on_a { &node_a } else { &node_b };
            let c = connected(node, lib, Transports::Websocket, token, device);
            (c, token, device, room, on_a)
        })
        .collect();
    // Sends below rely on each node hearing the other from the start.
    wait_for_line(&node_a, "cluster bus subscribed", &[]);
    wait_for_line(&node_b, "cluster bus subscribed", &[]);
    let mut world = World {
        redis,
        _stub: stub,
        node_a,
        node_b,
        clients,
    };
    // Every device registered before anything is lost: a stored send reaches each of them.
    everyone_receives(&mut world, true, "registered");
    world
}

/// `/send` to every user through node a (`through_a`) or b — once the node's store answers
/// again (a probe to a user nobody is has its `503 retry later` until then) — and every
/// client gets the event live, with an ack (acked).
fn everyone_receives(world: &mut World, through_a: bool, event: &str) {
    let node = if through_a {
        &world.node_a
    } else {
        &world.node_b
    };
    let probe = json!({"rooms": "user_nobody", "event": "probe"});
    let mut last = None;
    let answering = wait_until(RECOVERY, || {
        let r = send_json(node.port(), SITE, Site::API_KEY, "", &probe);
        let ok = r.status == 200;
        last = Some(r);
        ok
    });
    assert!(answering, "the store never answered again: {last:?}");
    push(
        node,
        json!({"rooms": ["user_1", "user_2", "user_3"], "event": event, "args": [1]}),
    );
    for (c, ..) in &mut world.clients {
        let ev = c.expect_event(event);
        assert!(
            ev.has_ack,
            "{event} asks for an ack like any user-room message"
        );
        c.ack_event(&ev, vec![]);
    }
}

/// The gateways' log filter: the per-delivery lines are `debug`.
const DEBUG_LOG: &str = "info,courier=debug";

/// Waits until `gw` logged a line with `message` and every one of `fields`.
fn wait_for_line(gw: &Gateway, message: &str, fields: &[&str]) {
    let found = wait_until(RECOVERY, || {
        gw.log_lines_containing(message)
            .iter()
            .any(|line| fields.iter().all(|field| line.contains(field)))
    });
    if !found {
        gw.fail(&format!("no {message:?} line with {fields:?}"));
    }
}

/// Waits until each node has registered each of its devices again.
fn wait_registered_again(world: &World) {
    for (_, _, device, _, on_a) in &world.clients {
        let node = if *on_a { &world.node_a } else { &world.node_b };
        let field = format!(r#""deviceId":"{device}""#);
        wait_for_line(node, "Device registered again", &[&field]);
    }
}

/// Disconnect every client, send to every user, reconnect: each `_batch` has the message.
/// `last` is the last stored event the clients acked: its removal is waited for, so nothing
/// but the new message can be left queued.
fn later_sends_are_queued_again(mut world: World, last: &str) {
    for (_, _, device, _, on_a) in &world.clients {
        let node = if *on_a { &world.node_a } else { &world.node_b };
        let fields = [
            format!(r#""deviceId":"{device}""#),
            format!(r#""event":"{last}""#),
        ];
        wait_for_line(node, "Message removed", &[&fields[0], &fields[1]]);
    }
    let mut offline = Vec::new();
    for (mut c, token, device, room, on_a) in std::mem::take(&mut world.clients) {
        let lib = c.lib();
        c.disconnect();
        c.close();
        offline.push((lib, token, device, room, on_a));
    }
    push(
        &world.node_b,
        json!({"rooms": ["user_1", "user_2", "user_3"], "event": "queued", "args": [2]}),
    );
    for (lib, token, device, _, on_a) in offline {
        let node = if on_a { &world.node_a } else { &world.node_b };
        let mut back = client(node, lib, Transports::Websocket, token, device);
        back.expect_connected();
        let batch = back.expect_event("_batch");
        assert_eq!(batch.args, vec![json!([["queued", 2]])], "{device}");
        back.ack_event(&batch, vec![]);
    }
}

/// Count of "cluster bus subscribed" lines of a node.
fn subscriptions(gw: &Gateway) -> usize {
    gw.log_lines_containing("cluster bus subscribed").len()
}

// Redis restarted empty: the epoch key is gone with everything else; both nodes notice, tell
// each other, and register their devices again, while sends through either node reach every
// connected device live.
scenario!(
    redis_restarted_empty_under_connected_clients_on_two_nodes,
    |bin| {
        let mut world = world(bin);
        let before = (subscriptions(&world.node_a), subscriptions(&world.node_b));
        world.redis.restart();
        // What a node publishes while it is not subscribed is lost to it (pub/sub keeps nothing):
        // the scenario sends once both hear each other again.
        let resubscribed = wait_until(RECOVERY, || {
            subscriptions(&world.node_a) > before.0 && subscriptions(&world.node_b) > before.1
        });
        assert!(resubscribed, "the cluster bus never came back");
        everyone_receives(&mut world, true, "after_loss_a");
        everyone_receives(&mut world, false, "after_loss_b");
        wait_for_line(&world.node_a, "Store lost its data", &[]);
        wait_for_line(&world.node_b, "Store lost its data", &[]);
        wait_registered_again(&world);
        everyone_receives(&mut world, false, "registered_again");
        later_sends_are_queued_again(world, "registered_again");
    }
);

// The data is gone but the epoch kept (a replica that missed the latest writes): the first send
// finds the devices unknown, delivers live to them on both nodes and registers them again.
scenario!(
    registrations_lost_with_the_epoch_kept_are_found_by_use,
    |bin| {
        let mut world = world(bin);
        let deleted = world.redis.cmd(&[
            "EVAL",
            "local n = 0 \
         for _, key in ipairs(redis.call('KEYS', 'courier:{*')) do \
           redis.call('DEL', key) n = n + 1 \
         end \
         return n",
            "0",
        ]);
        assert!(deleted.int() > 0, "the registrations were there to lose");
        assert_eq!(world.redis.cmd(&["EXISTS", "courier:epoch"]).int(), 1);
        everyone_receives(&mut world, true, "found_by_use");
        wait_for_line(&world.node_a, "Device unknown to the store", &[]);
        wait_for_line(&world.node_b, "Device unknown to the store", &[]);
        wait_registered_again(&world);
        assert!(
            world
                .node_a
                .log_lines_containing("Store lost its data")
                .is_empty(),
            "the epoch did not change"
        );
        // Groups were registered again too.
        push(
            &world.node_b,
            json!({"rooms": "staff", "event": "grp", "args": []}),
        );
        for (c, _, _, room, _) in &mut world.clients {
            if *room != "user_3" {
                let ev = c.expect_event("grp");
                c.ack_event(&ev, vec![]);
            }
        }
        everyone_receives(&mut world, false, "registered_again");
        later_sends_are_queued_again(world, "registered_again");
    }
);
