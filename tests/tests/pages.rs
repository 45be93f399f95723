//! The demo page and the status page in a real headless Chromium, on both binaries: the demo
//! page connects, shows the transport, every event and its ack, a `_batch` of what was sent
//! while away, and shows hostile payloads as text; the status page shows the connection and
//! counts moving after sends; the operator key gives 401 when wrong or missing, and no key
//! configured leaves both pages 404. Each page is screenshotted into `target/screenshots/`.

use courier_tests::{
    Bin, Browser, Gateway, Site, StubSite, Value, http, json, scenario, send_json,
};

const ADMIN_KEY: &str = "operator-key-for-tests";

fn demo_gateway(bin: Bin) -> Gateway {
    Gateway::builder(bin)
        .arg("--demo")
        .env("ADMIN_API_KEY", ADMIN_KEY)
        .start()
}

fn send(gw: &Gateway, room: &str, event: &str, args: Value) {
    let r = send_json(
        gw.port(),
        "demo",
        "demo",
        "",
        &json!({"rooms": [room], "event": event, "args": args}),
    );
    assert_eq!((r.status, r.body.as_str()), (200, "OK"), "/send {event}");
}

/// The JavaScript that is true once the demo page shows an acknowledged `event`.
fn acked(event: &str) -> String {
    format!("document.querySelector('#log > li[data-event=\"{event}\"][data-acked=\"true\"]')")
}

/// The text of the arguments the demo page shows for the latest `event`.
fn shown_args(browser: &mut Browser, event: &str) -> String {
    let js =
        format!("document.querySelector('#log > li[data-event=\"{event}\"] .args').textContent");
    browser
        .eval("demo", &js)
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Every `_batch` on the page, newest first, as `[[event, args text], ...]`.
const BATCHES: &str = "Array.from(document.querySelectorAll('#log > li.batch')).map(li => \
     Array.from(li.querySelectorAll('.batch-item')).map(i => \
     [i.dataset.event, i.querySelector('.args').textContent]))";

fn wait_state(browser: &mut Browser, state: &str) {
    browser.wait_for(
        "demo",
        &format!("document.getElementById('state').classList.contains('{state}')"),
    );
}

scenario!(demo_page_shows_the_whole_loop, |bin| {
    let gw = demo_gateway(bin);
    let mut browser = Browser::start();
    let url = format!("{}/?user=u1&device=d1", gw.url());
    assert_eq!(browser.open("demo", &url), 200);
    wait_state(&mut browser, "connected");
    // socket.io-client 1.7.4 starts on polling and upgrades.
    browser.wait_for(
        "demo",
        "document.getElementById('transport').textContent === 'websocket'",
    );
    browser.wait_for(
        "demo",
        "document.querySelector('#log > li[data-event=\"_settings\"]')",
    );
    assert_eq!(
        shown_args(&mut browser, "_settings"),
        r#"[{"device_ttl":3600}]"#
    );

    // A send appears live and the page acknowledges it.
    send(&gw, "user_u1", "hello", json!(["world", 1]));
    browser.wait_for("demo", &acked("hello"));
    assert_eq!(shown_args(&mut browser, "hello"), r#"["world",1]"#);

    // Away: two sends (to the user, to its group); back: one `_batch` with both, in order, and
    // without the message acknowledged before (its ack emptied that queue entry).
    browser.click("demo", "#disconnect");
    wait_state(&mut browser, "disconnected");
    send(&gw, "user_u1", "one", json!([1]));
    send(&gw, "staff", "two", json!([2]));
    browser.click("demo", "#connect");
    browser.wait_for(
        "demo",
        "document.querySelector('#log > li.batch[data-acked=\"true\"]')",
    );
    assert_eq!(
        browser.eval("demo", BATCHES),
        json!([[["one", "[1]"], ["two", "[2]"]]])
    );
    browser.screenshot("demo", &format!("demo-batch-{}", bin.name()));

    // The batch was acknowledged, so the store holds nothing for this device: reconnecting
    // brings no `_batch`. The store runs commands in order, so a `_batch` would be emitted
    // before the live message sent after the reconnect.
    browser.click("demo", "#disconnect");
    wait_state(&mut browser, "disconnected");
    browser.click("demo", "#connect");
    wait_state(&mut browser, "connected");
    send(&gw, "user_u1", "marker", json!([]));
    browser.wait_for("demo", &acked("marker"));
    assert_eq!(
        browser.eval(
            "demo",
            "document.querySelectorAll('#log > li.batch').length"
        ),
        json!(1),
        "a second _batch arrived: the acknowledged messages were still queued"
    );

    // The page's own form sends through POST /send.
    browser.fill("demo", "#event", "from-the-form");
    browser.fill("demo", "#args", r#"{"n": 7}"#);
    browser.click("demo", "#send");
    browser.wait_for("demo", &acked("from-the-form"));
    assert_eq!(shown_args(&mut browser, "from-the-form"), r#"[{"n":7}]"#);
    assert_eq!(
        browser.eval("demo", "document.getElementById('sendResult').textContent"),
        json!("200 OK (to user_u1)")
    );
    browser.screenshot("demo", &format!("demo-{}", bin.name()));
    let incidents = browser.incidents();
    assert_eq!(incidents["pageErrors"], json!([]), "{incidents}");
});

scenario!(demo_page_shows_hostile_payloads_as_text, |bin| {
    let gw = demo_gateway(bin);
    let mut browser = Browser::start();
    assert_eq!(
        browser.open("demo", &format!("{}/demo?user=x&device=d1", gw.url())),
        200
    );
    wait_state(&mut browser, "connected");
    let img = r#"<img src=x onerror="window.__xss=1;alert('img')">"#;
    let script = "<script>window.__xss=2;alert('script')</script>";
    send(
        &gw,
        "user_x",
        "<b>event</b>",
        json!([img, {"html": script}]),
    );
    send(&gw, "user_x", script, json!([[img]]));
    browser.wait_for("demo", &acked("<b>event</b>"));
    browser.wait_for(
        "demo",
        "Array.from(document.querySelectorAll('#log > li')).some(li => \
         li.dataset.event.startsWith('<script>') && li.dataset.acked === 'true')",
    );
    // The markup is shown as text...
    let text = browser.eval("demo", "document.getElementById('log').textContent");
    let text = text.as_str().unwrap_or_default();
    assert!(text.contains("<b>event</b>"), "{text}");
    assert!(
        text.contains(r#"<img src=x onerror=\"window.__xss=1;alert('img')\">"#),
        "{text}"
    );
    assert!(
        text.contains("<script>window.__xss=2;alert('script')</script>"),
        "{text}"
    );
    // ...and never became elements, ran, or opened a dialog.
    assert_eq!(
        browser.eval(
            "demo",
            "document.querySelectorAll('#log img, #log script, #log b').length"
        ),
        json!(0)
    );
    assert_eq!(
        browser.eval("demo", "window.__xss === undefined"),
        json!(true)
    );
    browser.screenshot("demo", &format!("demo-xss-{}", bin.name()));
    let incidents = browser.incidents();
    assert_eq!(incidents["dialogs"], json!([]), "{incidents}");
    assert_eq!(incidents["pageErrors"], json!([]), "{incidents}");
});

/// The text of one cell of the status page's site `demo`.
fn cell(metric: &str, class: &str) -> String {
    format!(
        "(document.querySelector('[data-site=\"demo\"] [data-metric=\"{metric}\"] .{class}') || {{}}).textContent"
    )
}

scenario!(status_page_shows_connections_and_counts_moving, |bin| {
    let gw = demo_gateway(bin);
    let mut browser = Browser::start();
    assert_eq!(
        browser.open("demo", &format!("{}/?user=tok-u2&device=dev-d1", gw.url())),
        200
    );
    browser.wait_for(
        "demo",
        "document.getElementById('transport').textContent === 'websocket'",
    );
    let status_url = format!("{}/status?key={ADMIN_KEY}", gw.url());
    assert_eq!(browser.open("status", &status_url), 200);
    // The demo page's socket: socket.io-client 1.7.4 is Engine.IO 3, upgraded to WebSocket.
    browser.wait_for(
        "status",
        "(document.querySelector('[data-site=\"demo\"] [data-transport=\"websocket\"] .eio3') || {}).textContent === '1'",
    );
    browser.wait_for("status", &format!("{} === '0'", cell("sends", "total")));

    for i in 0..3 {
        send(&gw, "user_tok-u2", "tick", json!([i]));
    }
    browser.wait_for("demo", "document.querySelectorAll('#log > li[data-event=\"tick\"][data-acked=\"true\"]').length === 3");
    // The page polls every second; the totals it shows catch up with the sends and acks.
    browser.wait_for(
        "status",
        &format!(
            "{} === '3' && {} === '3' && {} === '3'",
            cell("sends", "total"),
            cell("delivered live", "total"),
            cell("acks", "total")
        ),
    );
    assert_eq!(
        browser.eval(
            "status",
            "document.getElementById('node-runtime').textContent"
        ),
        json!(bin.name().trim_start_matches("courier-"))
    );
    assert_eq!(
        browser.eval("status", "document.getElementById('error').textContent"),
        json!("")
    );
    browser.screenshot("status", &format!("status-{}", bin.name()));

    // The data: the agreed shape, and nothing secret or personal in it.
    let r = http(
        gw.port(),
        "GET",
        "/status.json",
        &[("Authorization", &format!("Bearer {ADMIN_KEY}"))],
        b"",
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.media_type().as_deref(), Some("application/json"));
    let snapshot: Value = serde_json::from_str(&r.body).expect("status.json is JSON");
    let site = &snapshot["sites"][0];
    assert_eq!(site["name"], json!("demo"));
    assert_eq!(site["connections"]["websocket"]["eio3"], json!(1));
    assert_eq!(site["totals"]["sends"], json!(3));
    assert_eq!(site["totals"]["acks"], json!(3));
    assert_eq!(snapshot["node"]["store"], json!("memory"));
    assert_eq!(snapshot["nodes"][0]["self"], json!(true));
    for key in ["timestampMs", "node", "nodes", "sites", "store"] {
        assert!(snapshot.get(key).is_some(), "{key} missing: {snapshot}");
    }
    for secret in [ADMIN_KEY, "tok-u2", "dev-d1", "apiKey", "token", "room"] {
        assert!(!r.body.contains(secret), "{secret} in {}", r.body);
    }
    assert!(!gw.logs().iter().any(|line| line.contains(ADMIN_KEY)));
});

scenario!(status_page_needs_the_operator_key, |bin| {
    let gw = demo_gateway(bin);
    let bearer = |key: &str| format!("Bearer {key}");
    for (target, headers) in [
        ("/status".to_owned(), vec![]),
        ("/status?key=wrong".to_owned(), vec![]),
        ("/status.json".to_owned(), vec![]),
        ("/status.json?key=wrong".to_owned(), vec![]),
        (
            "/status.json".to_owned(),
            vec![("Authorization", bearer("wrong"))],
        ),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = http(gw.port(), "GET", &target, &headers, b"");
        assert_eq!(
            (r.status, r.body.as_str()),
            (401, "Admin key invalid."),
            "{target}"
        );
    }
    let r = http(
        gw.port(),
        "GET",
        &format!("/status.json?key={ADMIN_KEY}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    let mut browser = Browser::start();
    assert_eq!(browser.open("status", &format!("{}/status", gw.url())), 401);
    browser.screenshot("status", &format!("status-401-{}", bin.name()));
});

scenario!(pages_are_off_without_demo_or_key, |bin| {
    let stub = StubSite::start();
    let gw = Gateway::builder(bin)
        .site(Site::for_stub("goodcity", &stub))
        .start();
    for target in ["/", "/demo", "/status", "/status.json", "/status?key=x"] {
        let r = http(gw.port(), "GET", target, &[], b"");
        assert_eq!(r.status, 404, "{target}");
        assert!(r.body.contains("Cannot GET"), "{target}: {}", r.body);
    }
    drop(gw);

    // The key from config.yml turns the status page on (and only it).
    let gw = Gateway::builder(bin)
        .site(Site::for_stub("goodcity", &stub))
        .config("admin: {apiKey: from-config}")
        .start();
    assert_eq!(http(gw.port(), "GET", "/", &[], b"").status, 404);
    assert_eq!(
        http(gw.port(), "GET", "/status?key=from-config", &[], b"").status,
        200
    );
    let r = http(
        gw.port(),
        "GET",
        "/status.json",
        &[("Authorization", "Bearer from-config")],
        b"",
    );
    assert_eq!(r.status, 200);
    let snapshot: Value = serde_json::from_str(&r.body).expect("status.json is JSON");
    assert_eq!(snapshot["sites"][0]["name"], json!("goodcity"));
    assert!(!r.body.contains(&stub.auth_url()), "{}", r.body);
});

scenario!(demo_page_shows_resync_after_an_out_of_order_ack, |bin| {
    let gw = demo_gateway(bin);
    let mut browser = Browser::start();
    assert_eq!(
        browser.open("demo", &format!("{}/?user=r1&device=d1", gw.url())),
        200
    );
    wait_state(&mut browser, "connected");
    browser.click("demo", "#autoAck");
    for i in 1..=2 {
        let r = send_json(
            gw.port(),
            "demo",
            "demo",
            "resync=true",
            &json!({"rooms": ["user_r1"], "event": "ev", "args": [i]}),
        );
        assert_eq!(r.status, 200);
    }
    browser.wait_for(
        "demo",
        "document.querySelectorAll('#log > li[data-event=\"ev\"] .ack-button').length === 2",
    );
    // The newest entry is first: acknowledge message 2 before message 1.
    assert_eq!(shown_args(&mut browser, "ev"), "[2]");
    browser.click("demo", "#log > li[data-event=\"ev\"] .ack-button");
    browser.wait_for("demo", "document.querySelector('#log > li.resync')");
    browser.screenshot("demo", &format!("demo-resync-{}", bin.name()));
});
