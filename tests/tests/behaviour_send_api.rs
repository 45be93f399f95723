//! `POST /send` answers (behaviours 18–21, 39 in tests/README.md; README Differences #9, #10, #13):
//! the exact texts of the original for 200/400/401, form and JSON bodies, and a clear 400 — never a
//! 500 — for every malformed input.

mod common;

use common::*;
use courier_tests::{Gateway, Lib, Site, StubSite, Transports, http, json, scenario, send};

const KEY: &str = Site::API_KEY;

fn gateway(bin: courier_tests::Bin, stub: &StubSite) -> Gateway {
    stub.user("u1", &["user_1", "staff"]);
    user_site(bin, stub).start()
}

// Behaviour 18: site and apiKey must be in the query string, non-empty.
scenario!(missing_site_or_api_key_is_400, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    let body = r#"{"rooms":"user_1","event":"x"}"#;
    for query in [
        "".to_string(),
        format!("apiKey={KEY}"),
        format!("site={SITE}"),
        format!("site=&apiKey={KEY}"),
        format!("site={SITE}&apiKey="),
    ] {
        let r = send(gw.port(), &query, Some("application/json"), body);
        assert_eq!(r.status, 400, "query {query:?}: {r:?}");
        assert_eq!(
            r.body, "Missing query param 'site' or 'apiKey'.",
            "query {query:?}"
        );
    }
    // An apiKey in the body does not count.
    let r = send(
        gw.port(),
        &format!("site={SITE}"),
        Some("application/json"),
        &format!(r#"{{"apiKey":"{KEY}","rooms":"user_1","event":"x"}}"#),
    );
    assert_eq!(
        (r.status, r.body.as_str()),
        (400, "Missing query param 'site' or 'apiKey'.")
    );
});

// Behaviour 19 / README Differences #13: unknown site and wrong key are indistinguishable.
scenario!(unknown_site_or_wrong_key_is_401, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    let body = r#"{"rooms":"user_1","event":"x"}"#;
    for query in [
        format!("site={SITE}&apiKey=wrong"),
        format!("site={SITE}&apiKey={KEY}x"),
        format!("site=nosuchsite&apiKey={KEY}"),
        format!("site=__proto__&apiKey={KEY}"),
        format!("site=constructor&apiKey={KEY}"),
        format!("site=GOODCITY&apiKey={KEY}"),
    ] {
        let r = send(gw.port(), &query, Some("application/json"), body);
        assert_eq!(
            (r.status, r.body.as_str()),
            (401, "ApiKey invalid."),
            "query {query:?}"
        );
    }
});

// Behaviour 19: a numeric YAML apiKey compares as its decimal text.
scenario!(numeric_api_key_matches_its_text, |bin| {
    let stub = StubSite::start();
    stub.user("u1", &["user_1"]);
    let gw = Gateway::builder(bin)
        .site(Site::for_stub(SITE, &stub).api_key_number(54321))
        .start();
    let r = send(
        gw.port(),
        &format!("site={SITE}&apiKey=54321"),
        Some("application/json"),
        r#"{"rooms":"user_1","event":"x"}"#,
    );
    assert_ok(&r);
    let r = send(
        gw.port(),
        &format!("site={SITE}&apiKey=054321"),
        Some("application/json"),
        r#"{"rooms":"user_1","event":"x"}"#,
    );
    assert_eq!((r.status, r.body.as_str()), (401, "ApiKey invalid."));
});

// Behaviour 19: 200 OK even when nobody receives it.
scenario!(send_without_recipients_is_ok, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    for body in [
        json!({"rooms": "user_404", "event": "x"}),
        json!({"rooms": ["nobody-group"], "event": "x", "args": [1]}),
        json!({"rooms": [], "event": "x"}),
    ] {
        push(&gw, body);
    }
});

// Behaviour 20: form bodies with qs "extended" semantics; every leaf is a string.
scenario!(form_bodies_use_extended_semantics, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    let mut c = connected(&gw, Lib::Sio2, Transports::Websocket, "u1", "d1");
    let r = send(
        gw.port(),
        &format!("site={SITE}&apiKey={KEY}"),
        Some("application/x-www-form-urlencoded"),
        "rooms[]=user_1&rooms[]=staff&event=x&args[]=a&args[1][id]=5&args[1][n][]=x&args[2]=7",
    );
    assert_ok(&r);
    let ev = c.expect_event("x");
    assert_eq!(
        ev.args,
        vec![json!("a"), json!({"id": "5", "n": ["x"]}), json!("7")]
    );
    c.ack_event(&ev, vec![]);
    c.expect_no_event(QUIET);

    let r = send(
        gw.port(),
        &format!("site={SITE}&apiKey={KEY}"),
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        "rooms=user_1&event=plain&args=one%20arg%26more",
    );
    assert_ok(&r);
    let ev = c.expect_event("plain");
    assert_eq!(ev.args, vec![json!("one arg&more")]);
    c.ack_event(&ev, vec![]);
});

/// Asserts a refusal's status and exact `text/plain` body.
fn assert_plain(r: &courier_tests::HttpResponse, status: u16, body: &str) {
    assert_eq!((r.status, r.body.as_str()), (status, body), "{r:?}");
    assert_eq!(r.media_type().as_deref(), Some("text/plain"), "{r:?}");
}

// Behaviour 20 / README Differences #10: malformed bodies are a clear 400 (or 413/415) naming the
// problem, never a 500 page.
scenario!(malformed_bodies_are_clear_400s, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    let query = format!("site={SITE}&apiKey={KEY}");
    let json_body = |body: &str| send(gw.port(), &query, Some("application/json"), body);

    // JSON syntax, and body-parser's strict mode (only an object or array at the top level).
    for body in [
        "{not json",
        r#"{"rooms":"user_1","event":"x"} trailing"#,
        r#""just a string""#,
        "42",
    ] {
        let r = json_body(body);
        assert_clear_400(&r);
        assert!(r.body.starts_with("SyntaxError: "), "{body:?}: {r:?}");
    }
    assert_plain(
        &json_body(r#"[{"rooms":"user_1","event":"x"}]"#),
        400,
        "The body must be a JSON object with 'rooms', 'event' and optional 'args'.",
    );
    let bad_rooms = "Body param 'rooms' must be a string or an array of strings.";
    assert_plain(&json_body(r#"{"rooms":5,"event":"x"}"#), 400, bad_rooms);
    assert_plain(
        &json_body(r#"{"rooms":[{"a":1}],"event":"x"}"#),
        400,
        bad_rooms,
    );
    assert_plain(
        &json_body(r#"{"rooms":["user_1",7],"event":"x"}"#),
        400,
        bad_rooms,
    );
    assert_plain(
        &json_body(r#"{"event":"x"}"#),
        400,
        "Missing body param 'rooms'.",
    );
    assert_plain(&json_body("{}"), 400, "Missing body param 'rooms'.");
    assert_plain(
        &json_body(r#"{"rooms":"user_1"}"#),
        400,
        "Missing body param 'event'.",
    );
    assert_plain(
        &json_body(r#"{"rooms":"user_1","event":{"not":"a string"}}"#),
        400,
        "Body param 'event' must be a string.",
    );
    assert_plain(
        &json_body(r#"{"rooms":"user_1","event":""}"#),
        400,
        "Body param 'event' must not be empty.",
    );

    // Content types nobody parses.
    assert_plain(
        &send(
            gw.port(),
            &query,
            Some("text/plain"),
            "rooms=user_1&event=x",
        ),
        415,
        "Unsupported Content-Type 'text/plain': send application/json or application/x-www-form-urlencoded.",
    );
    assert_plain(
        &send(gw.port(), &query, None, r#"{"rooms":"user_1","event":"x"}"#),
        415,
        "Missing Content-Type: send application/json or application/x-www-form-urlencoded.",
    );

    // Over body-parser's 100 kB limit.
    let big = json!({"rooms": "user_1", "event": "x", "args": ["y".repeat(200_000)]});
    assert_plain(
        &json_body(&big.to_string()),
        413,
        "request entity too large",
    );

    // Still healthy afterwards.
    assert_eq!(http(gw.port(), "GET", "/healthcheck", &[], b"").body, "ok");
});

// README Differences #9: reserved Socket.IO event names are refused with 400 and deliver nothing.
scenario!(reserved_event_names_are_refused, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    let mut c = connected(&gw, Lib::Sio4, Transports::Websocket, "u1", "d1");
    for name in [
        "error",
        "connect",
        "connection",
        "disconnect",
        "disconnecting",
        "newListener",
        "removeListener",
        "_settings",
        "_batch",
        "_resync",
    ] {
        let r = send(
            gw.port(),
            &format!("site={SITE}&apiKey={KEY}"),
            Some("application/json"),
            &json!({"rooms": "user_1", "event": name, "args": [1]}).to_string(),
        );
        assert_plain(&r, 400, &format!("Event name '{name}' is reserved."));
    }
    c.expect_no_event(QUIET);
    let mut again = reconnect(&gw, c, "u1", "d1");
    again.expect_connected();
    again.expect_no_event(QUIET);
});

// Behaviour 39: no CORS on /send; OPTIONS answers Allow: POST; other methods and routes 404.
scenario!(send_route_methods, |bin| {
    let stub = StubSite::start();
    let gw = gateway(bin, &stub);
    let options = http(
        gw.port(),
        "OPTIONS",
        "/send",
        &[("Origin", "http://example.test")],
        b"",
    );
    assert_eq!(options.status, 200, "{options:?}");
    assert_eq!(options.header("allow"), Some("POST"));
    assert_eq!(
        options.header("access-control-allow-origin"),
        None,
        "no CORS on /send"
    );
    let get = http(gw.port(), "GET", "/send", &[], b"");
    assert_eq!(get.status, 404, "{get:?}");
    let ok = send(
        gw.port(),
        &format!("site={SITE}&apiKey={KEY}"),
        Some("application/json"),
        r#"{"rooms":"user_1","event":"x"}"#,
    );
    assert_ok(&ok);
    assert_eq!(ok.header("access-control-allow-origin"), None);
});
