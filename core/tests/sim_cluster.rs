//! Nodes sharing one store: a `/send` taken by the node that holds none of the recipients
//! reaches them through the cluster bus at the cost of a local fan-out — one bus message for
//! the whole send per node holding recipients, addressed to that node alone (not one per user
//! room, not one every node reads), and on the receiving node the same store commands a local
//! delivery costs (one `Ack` per delivery, no re-registration, no extra check).

mod sim;

use courier_core::gateway::cluster::{MAX_REMOTE_TARGETS, RemoteHeader};
use courier_core::gateway::store::{MemoryStore, StoreCommand};
use courier_core::net::{BusTarget, Engine};
use sim::{AuthAnswer, Client, Generation, Sim};

const NSP: &str = "/goodcity";

/// Node 1 with `users` connected clients, each its own user in group `staff`; node 2 with
/// none. The store lives in node 1's [`Sim`] until a test moves it.
fn two_nodes(users: usize) -> (Sim, Sim, Vec<Client>) {
    let mut holder = Sim::goodcity_clustered(1);
    let mut clients = Vec::new();
    for i in 0..users {
        let token: &'static str = Box::leak(format!("u{i}").into_boxed_str());
        let room: &'static str = Box::leak(format!("user_{i}").into_boxed_str());
        holder.auth(token, AuthAnswer::Rooms(vec![room, "staff"]));
        let mut client = holder.client(Generation::V4, &format!("token={token}&deviceId=d{i}"));
        holder.join(&mut client, NSP);
        clients.push(client);
    }
    let sender = Sim::goodcity_clustered(2);
    (holder, sender, clients)
}

fn move_store(from: &mut Sim, to: &mut Sim) {
    to.store = std::mem::replace(&mut from.store, MemoryStore::new());
}

fn deliver_headers(sim: &Sim) -> Vec<(RemoteHeader, usize)> {
    sim.published_headers()
        .into_iter()
        .filter_map(|header| match &header {
            RemoteHeader::Deliver { targets, .. } => {
                let count = targets.len();
                Some((header, count))
            }
            _ => None,
        })
        .collect()
}

fn command_name(command: &StoreCommand) -> &'static str {
    match command {
        StoreCommand::Connect { .. } => "connect",
        StoreCommand::NextBatch { .. } => "next batch",
        StoreCommand::Enqueue { .. } => "enqueue",
        StoreCommand::Ack { .. } => "ack",
        StoreCommand::AckBatch { .. } => "ack batch",
        StoreCommand::Disconnect { .. } => "disconnect",
        StoreCommand::ResolveGroups { .. } => "resolve groups",
        StoreCommand::ForgetGroupMember { .. } => "forget group member",
        StoreCommand::CheckEpoch { .. } => "check epoch",
    }
}

fn count(commands: &[StoreCommand], name: &str) -> usize {
    commands.iter().filter(|c| command_name(c) == name).count()
}

#[test]
fn a_group_send_to_another_nodes_users_is_one_bus_message_and_costs_what_a_local_one_does() {
    const USERS: usize = 40;
    let (mut holder, mut sender, mut clients) = two_nodes(USERS);
    move_store(&mut holder, &mut sender);
    let body = r#"{"rooms":["staff"],"event":"news","args":[1]}"#;
    assert_eq!(sender.send(body).status, 200);

    // The sending node: the group lookup, one enqueue per user, nothing else; one message.
    assert_eq!(count(&sender.executed, "resolve groups"), 1);
    assert_eq!(count(&sender.executed, "enqueue"), USERS);
    assert_eq!(count(&sender.executed, "connect"), 0);
    assert_eq!(count(&sender.executed, "forget group member"), 0);
    let delivers = deliver_headers(&sender);
    assert_eq!(delivers.len(), 1, "one bus message for the whole send");
    assert_eq!(delivers[0].1, USERS);
    assert_eq!(sender.published.len(), 1, "nothing else is published");

    // The holding node: every client gets it once, with an ack; each ack is one store `Ack`.
    move_store(&mut sender, &mut holder);
    holder.executed.clear();
    let (to, message) = sender.published[0].clone();
    assert_eq!(to, BusTarget::Node(1), "addressed to the holder alone");
    let now = holder.now;
    holder.gateway.handle_remote(message, now);
    holder.run();
    for client in &mut clients {
        let packets = holder.recv(client);
        let got = sim::events_named(&packets, NSP, "news");
        assert_eq!(got.len(), 1, "{packets:?}");
        let ack = sim::ack_id(got[0], NSP).expect("asks for an ack");
        holder.ack(client, NSP, ack);
    }
    assert_eq!(count(&holder.executed, "ack"), USERS);
    assert_eq!(
        holder.executed.len(),
        USERS,
        "no registration or other command: {:?}",
        holder.executed.iter().map(command_name).collect::<Vec<_>>()
    );
    assert!(!holder.logged("Device unknown to the store"));
    assert!(holder.published.is_empty(), "the holder publishes nothing");

    // The acks removed what was stored: a reconnect gets no `_batch`.
    let mut again = holder.client(Generation::V4, "token=u0&deviceId=d0");
    let packets = holder.join(&mut again, NSP);
    assert!(
        sim::events_named(&packets, NSP, "_batch").is_empty(),
        "{packets:?}"
    );
}

#[test]
fn a_send_to_users_on_both_nodes_emits_here_and_publishes_only_the_others() {
    let (mut holder, mut sender, _clients) = two_nodes(3);
    move_store(&mut holder, &mut sender);
    sender.auth("local", AuthAnswer::Rooms(vec!["user_local", "staff"]));
    let mut local = sender.client(Generation::V3, "token=local&deviceId=here");
    sender.join(&mut local, NSP);
    let body = r#"{"rooms":["staff","user_1"],"event":"mixed","args":[2]}"#;
    assert_eq!(sender.send(body).status, 200);
    let packets = sender.recv(&mut local);
    assert_eq!(sim::events_named(&packets, NSP, "mixed").len(), 1);
    let delivers = deliver_headers(&sender);
    assert_eq!(delivers.len(), 1);
    let RemoteHeader::Deliver { targets, .. } = &delivers[0].0 else {
        unreachable!()
    };
    let mut rooms: Vec<&str> = targets.iter().map(|t| t.room.as_str()).collect();
    rooms.sort_unstable();
    assert_eq!(rooms, ["user_0", "user_1", "user_2"]);
    assert!(targets.iter().all(|t| t.node == 1));
}

#[test]
fn a_send_to_more_users_than_one_message_carries_is_split() {
    let users = MAX_REMOTE_TARGETS + 5;
    let (mut holder, mut sender, _clients) = two_nodes(users);
    move_store(&mut holder, &mut sender);
    let body = r#"{"rooms":["staff"],"event":"big","args":[3]}"#;
    assert_eq!(sender.send(body).status, 200);
    let sizes: Vec<usize> = deliver_headers(&sender).iter().map(|(_, n)| *n).collect();
    assert_eq!(sizes, [MAX_REMOTE_TARGETS, 5]);
}

/// Joins `users` clients `<prefix>0…`, each its own user in group `staff`, to `sim`.
fn join_users(sim: &mut Sim, prefix: &str, users: usize) -> Vec<Client> {
    (0..users)
        .map(|i| {
            let token: &'static str = Box::leak(format!("{prefix}{i}").into_boxed_str());
            let room: &'static str = Box::leak(format!("user_{prefix}{i}").into_boxed_str());
            sim.auth(token, AuthAnswer::Rooms(vec![room, "staff"]));
            let mut client = sim.client(Generation::V4, &format!("token={token}&deviceId=d"));
            sim.join(&mut client, NSP);
            client
        })
        .collect()
}

#[test]
fn a_send_to_users_on_two_other_nodes_is_one_message_addressed_to_each() {
    // Node 1 holds 3 users, node 3 holds MAX_REMOTE_TARGETS + 2; node 2 takes the send.
    let (mut one, mut sender, mut on_one) = two_nodes(3);
    let mut three = Sim::goodcity_clustered(3);
    move_store(&mut one, &mut three);
    let mut on_three = join_users(&mut three, "t", MAX_REMOTE_TARGETS + 2);
    move_store(&mut three, &mut sender);
    let body = r#"{"rooms":["staff"],"event":"split","args":[4]}"#;
    assert_eq!(sender.send(body).status, 200);

    // Per node: its own targets only, split at the limit; nothing for all nodes.
    let mut parts: Vec<(BusTarget, usize)> = sender
        .published
        .iter()
        .map(|(to, _)| *to)
        .zip(deliver_headers(&sender).iter().map(|(_, count)| *count))
        .collect();
    parts.sort_unstable_by_key(|(to, count)| (format!("{to:?}"), *count));
    assert_eq!(
        parts,
        [
            (BusTarget::Node(1), 3),
            (BusTarget::Node(3), 2),
            (BusTarget::Node(3), MAX_REMOTE_TARGETS),
        ]
    );

    // Each node, handed what was addressed to it, delivers once to each of its clients.
    move_store(&mut sender, &mut one);
    for (node, sim, clients) in [(1, &mut one, &mut on_one), (3, &mut three, &mut on_three)] {
        for (to, message) in &sender.published {
            if *to == BusTarget::Node(node) {
                let now = sim.now;
                sim.gateway.handle_remote(message.clone(), now);
            }
        }
        sim.run();
        for client in clients.iter_mut() {
            let packets = sim.recv(client);
            assert_eq!(
                sim::events_named(&packets, NSP, "split").len(),
                1,
                "{packets:?}"
            );
        }
    }
}
