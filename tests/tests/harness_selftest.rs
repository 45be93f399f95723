//! Self-tests of the harness, independent of Courier: every client driver against the npm
//! socket.io 4.8 reference server, and the StubSite, Redis and HTTP fixtures on their own.
//! If these pass and a behaviour scenario fails, the failure is Courier's.

use std::time::{Duration, Instant};

use courier_tests::{
    AuthReply, Bin, Client, Lib, PollingSession, RawWebSocket, Redis, RedisCluster,
    ReferenceServer, Resp, Site, StubSite, Transports, decode_payload, encode_payload, http, json,
    matrix, scenario, send,
};

/// Connect, receive, ack in both directions, disconnect — with every library over every transport.
#[test]
fn every_driver_talks_to_the_reference_server() {
    let server = ReferenceServer::start();
    matrix::for_each(&matrix::full(), |i, lib, transports| {
        let token = format!("tok{i}");
        let device = format!("dev{i}");
        let mut builder = Client::builder(lib, transports)
            .namespace("/chat")
            .token(&token)
            .device(&device)
            .meta("m=1&x");
        if lib.has_auth_object() {
            builder = builder.auth(json!({"k": "v"}));
        }
        let mut client = builder.connect(server.port());
        client.expect_connect();

        let welcome = client.expect_event("welcome");
        let info = &welcome.args[0];
        assert_eq!(info["token"], json!(token));
        assert_eq!(info["deviceId"], json!(device));
        assert_eq!(
            info["meta"],
            json!("m=1&x"),
            "query values are URL-encoded by every library"
        );
        assert_eq!(info["eio"], json!(lib.eio().to_string()));
        if lib.has_auth_object() {
            assert_eq!(info["auth"], json!({"k": "v"}));
        }
        assert!(!welcome.has_ack);

        // The upgrade may complete before or after the next events: collect until both seen.
        let mut ask = None;
        let mut upgraded = info["transport"] == json!("websocket");
        match transports {
            Transports::Polling => assert_eq!(info["transport"], json!("polling")),
            Transports::Websocket => assert_eq!(info["transport"], json!("websocket")),
            Transports::Upgrade => {}
        }
        while ask.is_none() || (transports == Transports::Upgrade && !upgraded) {
            let event = client.next_event();
            match event.name.as_str() {
                "ask" => ask = Some(event),
                "upgraded" => {
                    assert_eq!(
                        transports,
                        Transports::Upgrade,
                        "only upgrade mode upgrades"
                    );
                    upgraded = true;
                }
                other => client.fail(&format!("unexpected event {other}")),
            }
        }
        let ask = ask.unwrap_or_else(|| unreachable!());
        assert_eq!(ask.args, vec![json!("question"), json!(7)]);
        assert!(ask.has_ack);
        client.ack_event(&ask, vec![json!("answer"), json!({"n": 1})]);
        let back = client.expect_event("ack_received");
        assert_eq!(back.args, vec![json!("answer"), json!({"n": 1})]);

        client.wait_for_transport(Client::settled_transport(transports));
        let echoed =
            client.emit_with_ack("echo", vec![json!(1), json!("x")], Duration::from_secs(10));
        assert_eq!(echoed, Some(vec![json!(1), json!("x")]));

        client.expect_no_event(Duration::from_millis(200));
        assert_eq!(
            client.transport().as_deref(),
            Some(Client::settled_transport(transports)),
            "polling-only stays on polling"
        );
        let reason = client.disconnect();
        assert!(!reason.is_empty(), "a disconnect carries a reason");
    });
}

/// A namespace refusal surfaces with exactly the server's text, in every library.
#[test]
fn every_driver_reports_refusals_verbatim() {
    let server = ReferenceServer::start();
    let combos: Vec<_> = Lib::ALL
        .iter()
        .map(|&lib| (lib, Transports::Polling))
        .collect();
    matrix::for_each(&combos, |_, lib, transports| {
        let mut refused = Client::builder(lib, transports)
            .namespace("/chat")
            .token("bad")
            .connect(server.port());
        refused.expect_connect_error("Authentication failed");
        refused.expect_no_event(Duration::from_millis(200));

        let mut unknown = Client::builder(lib, transports)
            .namespace("/nope")
            .token("t")
            .connect(server.port());
        unknown.expect_connect_error("Invalid namespace");
    });
}

/// Auto-ack mode answers at once; a server disconnect reaches the client as a disconnect.
#[test]
fn auto_ack_and_server_disconnect() {
    let server = ReferenceServer::start();
    let combos = [
        (Lib::Sio1, Transports::Websocket),
        (Lib::Py4, Transports::Polling),
        (Lib::Py5, Transports::Websocket),
    ];
    matrix::for_each(&combos, |_, lib, transports| {
        let mut client = Client::builder(lib, transports)
            .namespace("/chat")
            .token("t")
            .auto_ack(vec![json!("auto")])
            .connect(server.port());
        client.expect_connect();
        client.expect_event("welcome");
        assert!(client.expect_event("ask").has_ack);
        assert_eq!(
            client.expect_event("ack_received").args,
            vec![json!("auto")]
        );
        client.emit("kick", vec![]);
        client.expect_disconnect();
    });
}

/// Drivers put reserved event names on the wire even though the libraries refuse to: the
/// reference server (socket.io-parser 4.2) treats a received `disconnect` event as a protocol
/// violation and closes the connection, which only happens if it was really sent.
#[test]
fn drivers_can_send_reserved_event_names() {
    let server = ReferenceServer::start();
    let combos = [
        (Lib::Sio1, Transports::Polling),
        (Lib::Sio2, Transports::Websocket),
        (Lib::Sio4, Transports::Websocket),
        (Lib::Py4, Transports::Polling),
        (Lib::Py5, Transports::Websocket),
    ];
    matrix::for_each(&combos, |_, lib, transports| {
        let mut client = Client::builder(lib, transports)
            .namespace("/chat")
            .token("t")
            .auto_ack(vec![])
            .connect(server.port());
        client.expect_connect();
        client.expect_event("welcome");
        client.expect_event("ask");
        client.expect_event("ack_received");
        client.emit("harmless", vec![json!("x")]);
        client.expect_no_event(Duration::from_millis(200));
        client.emit("disconnect", vec![json!("x")]);
        client.expect_disconnect();
    });
}

/// A server that never answers: the expectation fails (loudly) instead of hanging.
#[test]
fn expectations_fail_instead_of_hanging() {
    let server = ReferenceServer::start();
    let mut client = Client::builder(Lib::Sio4, Transports::Websocket)
        .namespace("/chat")
        .token("t")
        .connect(server.port());
    client.expect_connect();
    let welcome = client.maybe_event(Duration::from_secs(10)).map(|e| e.name);
    assert_eq!(welcome.as_deref(), Some("welcome"));
    client.expect_event("ask");
    assert_eq!(client.maybe_event(Duration::from_millis(200)), None);
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        client.expect_event_within("never-sent", Duration::from_millis(300))
    }));
    let message = outcome
        .expect_err("must fail")
        .downcast::<String>()
        .map(|s| *s)
        .unwrap_or_default();
    assert!(message.contains("never-sent"), "{message}");
    assert!(
        message.contains("driver messages"),
        "the failure quotes the driver: {message}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn stub_site_answers_per_token_and_records_requests() {
    let stub = StubSite::start();
    stub.user("u3", &["user_3", "reviewer"]);
    stub.set_auth("html", AuthReply::html(401, "<html>no</html>"));
    stub.set_auth(
        "slow",
        AuthReply::rooms(&["user_9"]).delayed(Duration::from_millis(600)),
    );

    let ok = http(
        stub.port(),
        "GET",
        "/rooms",
        &[("Authorization", "Bearer u3"), ("X-META", "abc")],
        b"",
    );
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (200, r#"["user_3","reviewer"]"#)
    );
    assert_eq!(ok.media_type().as_deref(), Some("application/json"));

    let html = http(
        stub.port(),
        "GET",
        "/rooms",
        &[("Authorization", "Bearer html")],
        b"",
    );
    assert_eq!((html.status, html.body.as_str()), (401, "<html>no</html>"));
    assert_eq!(html.media_type().as_deref(), Some("text/html"));

    let unknown = http(
        stub.port(),
        "GET",
        "/rooms",
        &[("Authorization", "Bearer nobody")],
        b"",
    );
    assert_eq!(unknown.status, 401);

    let started = Instant::now();
    let slow = http(
        stub.port(),
        "GET",
        "/rooms",
        &[("Authorization", "Token slow")],
        b"",
    );
    assert_eq!(slow.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(600),
        "the delay is applied"
    );

    let put = http(
        stub.port(),
        "PUT",
        "/users/3",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer u3"),
        ],
        br#"{"id":"3","user":{"last_connected":"2026-01-01T00:00:00.000Z"}}"#,
    );
    assert_eq!(put.status, 200);
    stub.set_user_update_status(500);
    assert_eq!(http(stub.port(), "PUT", "/users/4", &[], b"{}").status, 500);

    let auth = stub.wait_auth_requests(4);
    assert_eq!(auth[0].header("authorization"), Some("Bearer u3"));
    assert_eq!(auth[0].header("X-Meta"), Some("abc"));
    assert_eq!(auth[3].header("authorization"), Some("Token slow"));
    let updates = stub.wait_user_updates(2);
    assert_eq!(updates[0].0, "3");
    assert_eq!(
        updates[0].1.json()["user"]["last_connected"],
        json!("2026-01-01T00:00:00.000Z")
    );
    assert_eq!(updates[1].0, "4");
    assert_eq!(
        stub.update_user_url(),
        format!("http://127.0.0.1:{}/users/:id", stub.port())
    );

    stub.clear_requests();
    assert!(stub.requests().is_empty());
}

#[test]
fn send_helper_reports_status_type_and_body() {
    let stub = StubSite::start();
    let answer = send(
        stub.port(),
        "site=s&apiKey=k",
        Some("application/json"),
        r#"{"rooms":"x"}"#,
    );
    assert_eq!(answer.status, 404);
    assert_eq!(answer.media_type().as_deref(), Some("text/plain"));
    assert_eq!(answer.body, "not found");
    let seen = stub.requests();
    assert_eq!(seen[0].method, "POST");
    assert_eq!(seen[0].path, "/send");
    assert_eq!(seen[0].query, "site=s&apiKey=k");
    assert_eq!(seen[0].header("content-type"), Some("application/json"));
    assert_eq!(seen[0].body, r#"{"rooms":"x"}"#);
}

#[test]
fn redis_fixture_runs_commands_and_restarts() {
    let mut volatile = Redis::start();
    assert_eq!(
        volatile.cmd(&[
            "RPUSH",
            "/s:socket.io:user_1:d:ev",
            "1:[\"ev\"]",
            "2:[\"ev\"]"
        ]),
        Resp::Int(2)
    );
    assert_eq!(
        volatile.list("/s:socket.io:user_1:d:ev"),
        vec!["1:[\"ev\"]", "2:[\"ev\"]"]
    );
    assert_eq!(volatile.keys("/s:*"), vec!["/s:socket.io:user_1:d:ev"]);
    assert_eq!(volatile.cmd(&["GET", "missing"]).text(), None);
    assert!(matches!(volatile.cmd(&["NOSUCHCOMMAND"]), Resp::Error(_)));
    volatile.restart();
    assert!(volatile.keys("*").is_empty(), "no persistence unless asked");

    let mut durable = Redis::start_persistent();
    durable.cmd(&["SET", "k", "v"]);
    durable.kill();
    durable.start_again();
    assert_eq!(
        durable.cmd(&["GET", "k"]).text().as_deref(),
        Some("v"),
        "AOF survives kill -9"
    );
    assert!(durable.url().starts_with("redis://127.0.0.1:"));
}

#[test]
fn redis_cluster_fixture_forms_routes_and_fails_over() {
    let mut cluster = RedisCluster::start(3);
    assert_eq!(cluster.masters().len(), 3);
    assert_eq!(cluster.replicas().len(), 3);
    assert_eq!(cluster.seed_urls().len(), 6);
    // Keys of one hash tag share a slot and a master; the master answers for its slot.
    assert_eq!(cluster.slot_of("a{tag}"), cluster.slot_of("b{tag}"));
    assert_eq!(
        cluster.cmd_for_key("k{tag}", &["SET", "k{tag}", "v"]),
        Resp::Simple("OK".into())
    );
    let master = cluster.master_of("k{tag}");
    let other = cluster
        .masters()
        .into_iter()
        .find(|port| *port != master)
        .expect("another master");
    assert!(
        matches!(cluster.cmd_on(other, &["GET", "k{tag}"]), Resp::Error(e) if e.starts_with("MOVED")),
        "another master redirects"
    );
    assert_eq!(cluster.keys("k*"), vec!["k{tag}"]);
    // The write reached the replica before the kill (WAIT), so it survives the failover.
    assert_eq!(cluster.cmd_on(master, &["WAIT", "1", "5000"]), Resp::Int(1));
    let killed = cluster.kill_master_of("k{tag}");
    assert_eq!(killed, master);
    assert_ne!(
        cluster.master_of("k{tag}"),
        killed,
        "a replica was promoted"
    );
    assert_eq!(
        cluster
            .cmd_for_key("k{tag}", &["GET", "k{tag}"])
            .text()
            .as_deref(),
        Some("v")
    );
}

#[test]
fn sites_render_in_the_original_layout() {
    let stub = StubSite::start();
    let yaml = Site::for_stub("goodcity", &stub)
        .public_channel("browse")
        .to_yaml();
    assert_eq!(
        yaml,
        format!(
            "\"goodcity\":\n  authUrl: \"{}\"\n  authScheme: \"Bearer\"\n  apiKey: \"secret-key\"\n  userRoomPrefix: \"user_\"\n  updateUserUrl: \"{}\"\n  publicChannel: \"browse\"\n",
            stub.auth_url(),
            stub.update_user_url()
        )
    );
    let numeric = Site::new("newsite")
        .api_key_number(54321)
        .broadcast_mode()
        .http_timeout_ms(500)
        .to_yaml();
    assert_eq!(
        numeric,
        "\"newsite\":\n  apiKey: 54321\n  httpTimeout: 500\n"
    );
}

scenario!(scenario_macro_passes_the_matching_binary, |bin| {
    let test_name = std::thread::current()
        .name()
        .unwrap_or_default()
        .to_string();
    let expected = match bin {
        Bin::Tokio => "::tokio",
        Bin::Smol => "::smol",
    };
    assert!(
        test_name.ends_with(expected),
        "{test_name} ran with {bin:?}"
    );
    assert!(bin.name().starts_with("courier-"));
});

/// The raw polling session against the reference server: EIO3 framing, the implicit `40`, a
/// namespace CONNECT with the query in it, the refusal packet.
#[test]
fn raw_polling_session_speaks_eio3_and_eio4() {
    let server = ReferenceServer::start();
    let mut s3 = PollingSession::handshake(server.port(), 3, "token=t&deviceId=d");
    assert_eq!(s3.open["upgrades"], json!(["websocket"]));
    assert!(s3.open["pingInterval"].is_number());
    let first = s3.get_until(|p| p == "40");
    assert!(
        first.contains(&"40".to_string()),
        "EIO3 connects / at once: {first:?}"
    );
    assert_eq!(s3.post(&["40/chat?token=bad,"]).body, "ok");
    let refused = s3.get_until(|p| p.starts_with("44/chat"));
    assert_eq!(
        refused.last().map(String::as_str),
        Some(r#"44/chat,"Authentication failed""#)
    );
    assert_eq!(s3.post(&["2"]).body, "ok");
    assert!(
        s3.get_until(|p| p == "3").contains(&"3".to_string()),
        "the engine stays open"
    );

    let mut s4 = PollingSession::handshake(server.port(), 4, "token=t");
    assert_eq!(s4.post(&[r#"40/chat,{"token":"bad"}"#]).body, "ok");
    let refused = s4.get_until(|p| p.starts_with("44/chat"));
    assert_eq!(
        refused.last().map(String::as_str),
        Some(r#"44/chat,{"message":"Authentication failed"}"#)
    );
    assert_eq!(encode_payload(3, &["4é", "2"]), "2:4é1:2");
    assert_eq!(decode_payload(3, "2:4é1:2"), vec!["4é", "2"]);
    assert_eq!(decode_payload(4, "4a\u{1e}2"), vec!["4a", "2"]);
}

/// The raw WebSocket client against the reference server: EIO4 open, CONNECT with auth, events,
/// an ack, the close handshake; and EIO3 over WebSocket.
#[test]
fn raw_websocket_speaks_to_the_reference_server() {
    let server = ReferenceServer::start();
    let mut ws = RawWebSocket::connect(
        server.port(),
        "/socket.io/?EIO=4&transport=websocket&deviceId=w",
    );
    let open = ws.recv_text(Duration::from_secs(10)).expect("open packet");
    assert!(
        open.starts_with("0{") && open.contains("\"upgrades\":[]"),
        "{open}"
    );
    ws.send_text(r#"40/chat,{"token":"raw"}"#);
    let seen = ws.recv_until(|m| m.starts_with("42/chat,0[\"ask\""));
    assert!(seen[0].starts_with("40/chat,{\"sid\":"), "{seen:?}");
    assert!(
        seen[1].starts_with(r#"42/chat,["welcome",{"token":null,"deviceId":"w""#),
        "{seen:?}"
    );
    ws.send_text(r#"43/chat,0["answer"]"#);
    let back = ws.recv_until(|m| m.contains("ack_received"));
    assert_eq!(
        back.last().map(String::as_str),
        Some(r#"42/chat,["ack_received","answer"]"#)
    );
    let long = format!("42/chat,2[\"echo\",\"{}\"]", "x".repeat(70_000));
    ws.send_text(&long);
    let echoed = ws.recv_until(|m| m.starts_with("43/chat,2"));
    let expected = format!("43/chat,2[\"{}\"]", "x".repeat(70_000));
    assert!(
        echoed.last() == Some(&expected),
        "16-bit and 64-bit frame lengths round-trip"
    );
    ws.close();

    let mut ws3 = RawWebSocket::connect(server.port(), "/socket.io/?EIO=3&transport=websocket");
    assert!(
        ws3.recv_text(Duration::from_secs(10))
            .is_some_and(|m| m.starts_with("0{"))
    );
    assert_eq!(
        ws3.recv_text(Duration::from_secs(10)).as_deref(),
        Some("40")
    );
    ws3.send_text("2");
    assert_eq!(ws3.recv_text(Duration::from_secs(10)).as_deref(), Some("3"));
}
