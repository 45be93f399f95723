//! The gateway's plain HTTP surface: healthcheck, `OPTIONS /send`, 404, the client bundle, and
//! the `/send` answers that never reach routing.

mod sim;

use courier_core::net::Method;
use sim::Sim;

fn header<'a>(response: &'a courier_core::net::HttpResponse, name: &str) -> Option<&'a str> {
    response.headers.get(name)
}

#[test]
fn healthcheck_answers_ok_for_get_and_head() {
    let mut sim = Sim::goodcity();
    let get = sim.exchange(Method::Get, "/healthcheck", "", &[], b"");
    assert_eq!((get.status, &get.body[..]), (200, &b"ok"[..]));
    assert_eq!(
        header(&get, "content-type"),
        Some("text/html; charset=utf-8")
    );
    let head = sim.exchange(Method::Head, "/healthcheck", "", &[], b"");
    assert_eq!(head.status, 200);
}

#[test]
fn options_send_and_unknown_routes_answer_as_express_did() {
    let mut sim = Sim::goodcity();
    let options = sim.exchange(Method::Options, "/send", "", &[], b"");
    assert_eq!((options.status, &options.body[..]), (200, &b"POST"[..]));
    assert_eq!(header(&options, "allow"), Some("POST"));
    let get_send = sim.exchange(Method::Get, "/send", "", &[], b"");
    assert_eq!(get_send.status, 404);
    assert!(String::from_utf8_lossy(&get_send.body).contains("Cannot GET /send"));
}

#[test]
fn the_client_bundle_is_served_under_the_engine_path() {
    let mut sim = Sim::goodcity();
    let bundle = sim.exchange(Method::Get, "/socket.io/socket.io.js", "", &[], b"");
    assert_eq!(bundle.status, 200);
    assert_eq!(header(&bundle, "etag"), Some("\"1.7.4\""));
    let cached = sim.exchange(
        Method::Get,
        "/socket.io/socket.io.js",
        "v=2",
        &[("if-none-match", "\"1.7.4\"")],
        b"",
    );
    assert_eq!(cached.status, 304);
}

#[test]
fn send_refusals_have_the_original_texts_and_nothing_is_delivered() {
    let mut sim = Sim::goodcity();
    let missing = sim.send_json("site=goodcity", r#"{"rooms":"user_1","event":"e"}"#);
    assert_eq!(
        (missing.status, &missing.body[..]),
        (400, &b"Missing query param 'site' or 'apiKey'."[..])
    );
    let wrong = sim.send_json(
        "site=goodcity&apiKey=nope",
        r#"{"rooms":"user_1","event":"e"}"#,
    );
    assert_eq!(
        (wrong.status, &wrong.body[..]),
        (401, &b"ApiKey invalid."[..])
    );
    let unknown = sim.send_json(
        "site=elsewhere&apiKey=54321",
        r#"{"rooms":"user_1","event":"e"}"#,
    );
    assert_eq!(
        (unknown.status, &unknown.body[..]),
        (401, &b"ApiKey invalid."[..])
    );
    let malformed = sim.send_json("site=goodcity&apiKey=54321", "{not json");
    assert_eq!(malformed.status, 400);
    assert_eq!(
        header(&malformed, "content-type").map(|v| v.starts_with("text/plain")),
        Some(true)
    );
    let reserved = sim.send(r#"{"rooms":"user_1","event":"_batch"}"#);
    assert_eq!(reserved.status, 400);
    assert!(sim.store.device_count() == 0);
}

#[test]
fn form_bodies_are_routed_like_json_ones() {
    let mut sim = Sim::goodcity();
    sim.auth("u1", sim::AuthAnswer::Rooms(vec!["user_1"]));
    let mut client = sim.client(sim::Generation::V3, "token=u1&deviceId=d");
    sim.join(&mut client, "/goodcity");
    let response = sim.exchange(
        Method::Post,
        "/send",
        "site=goodcity&apiKey=54321",
        &[("content-type", "application/x-www-form-urlencoded")],
        b"rooms[]=user_1&event=x&args[]=a&args[1][id]=5",
    );
    assert_eq!(response.status, 200);
    let packets = sim.recv(&mut client);
    assert_eq!(
        packets,
        vec![r#"42/goodcity,0["x","a",{"id":"5"}]"#.to_owned()]
    );
}

#[test]
fn the_handshake_cookie_follows_the_io_options() {
    let mut sim = Sim::goodcity();
    let default = sim.exchange(
        Method::Get,
        "/socket.io/",
        "EIO=3&transport=polling&b64=1",
        &[],
        b"",
    );
    let cookie = header(&default, "set-cookie")
        .expect("a cookie by default")
        .to_owned();
    assert!(
        cookie.starts_with("io=") && cookie.ends_with("; Path=/; HttpOnly"),
        "{cookie}"
    );

    let config =
        "production:\n  io:\n    cookie: sid\n    cookiePath: /push\n    cookieHttpOnly: false\n";
    let mut sim = Sim::new(sim::GOODCITY, Some(config));
    let custom = sim.exchange(
        Method::Get,
        "/socket.io/",
        "EIO=4&transport=polling",
        &[],
        b"",
    );
    let cookie = header(&custom, "set-cookie").expect("the configured cookie");
    assert!(
        cookie.starts_with("sid=") && cookie.ends_with("; Path=/push"),
        "{cookie}"
    );

    let none = "production:\n  io:\n    cookie: false\n";
    let mut sim = Sim::new(sim::GOODCITY, Some(none));
    let plain = sim.exchange(
        Method::Get,
        "/socket.io/",
        "EIO=4&transport=polling",
        &[],
        b"",
    );
    assert_eq!(header(&plain, "set-cookie"), None);
}
