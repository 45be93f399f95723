//! `POST /send`: every 400/401/413/415 text, JSON and form bodies, qs nesting, reserved events,
//! and the routes around it.

use courier_core::gateway::config::Config;
use courier_core::gateway::config::{ConfigSources, SourceFile, load};
use courier_core::gateway::routes::{Route, fixed_response, not_found, route, send_ok};
use courier_core::gateway::send::{BODY_LIMIT, RESERVED_EVENTS, SendRequest, parse_send};
use courier_core::net::{HttpResponse, Method};

const SITES: &str = "
goodcity:
  authUrl: http://127.0.0.1:9/rooms
  authScheme: Bearer
  apiKey: 54321
  userRoomPrefix: user_
other:
  authUrl: http://127.0.0.1:9/rooms
  authScheme: Bearer
  apiKey: otherkey
";

fn config() -> Config {
    load(&ConfigSources {
        sites_yml: Some(SourceFile {
            path: "sites.yml".into(),
            text: SITES.into(),
        }),
        ..ConfigSources::default()
    })
    .expect("valid config")
}

const Q: &str = "site=goodcity&apiKey=54321";
const JSON: Option<&str> = Some("application/json");
const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn send(query: &str, content_type: Option<&str>, body: &str) -> Result<SendRequest, HttpResponse> {
    parse_send(&config(), query, content_type, body.as_bytes(), false)
}

fn refused(query: &str, content_type: Option<&str>, body: &str) -> (u16, String, String) {
    match send(query, content_type, body) {
        Ok(request) => panic!("expected a refusal, got {request:?}"),
        Err(response) => (
            response.status,
            response
                .headers
                .get("content-type")
                .unwrap_or_default()
                .to_owned(),
            String::from_utf8_lossy(&response.body).into_owned(),
        ),
    }
}

fn accepted(query: &str, content_type: Option<&str>, body: &str) -> SendRequest {
    send(query, content_type, body)
        .unwrap_or_else(|r| panic!("refused: {} {}", r.status, String::from_utf8_lossy(&r.body)))
}

const HTML: &str = "text/html; charset=utf-8";
const PLAIN: &str = "text/plain; charset=utf-8";

#[test]
fn readme_example_json() {
    let body = r#"{"rooms": ["user_1", "staff"], "event": "update_store", "args": ["user", {"id":1,"age":5}]}"#;
    let request = accepted("site=goodcity&apiKey=54321&resync=false", JSON, body);
    assert_eq!(request.site, "goodcity");
    assert_eq!(request.rooms, ["user_1", "staff"]);
    assert_eq!(request.event, "update_store");
    assert_eq!(
        &request.payload[..],
        br#"["update_store","user",{"id":1,"age":5}]"#
    );
    assert!(!request.resync);
}

#[test]
fn args_spread_scalar_or_missing_null_and_rooms_string_or_array() {
    let payload =
        |body: &str| String::from_utf8(accepted(Q, JSON, body).payload.to_vec()).expect("utf-8");
    assert_eq!(
        payload(r#"{"rooms":"user_1","event":"grp"}"#),
        r#"["grp",null]"#
    );
    assert_eq!(
        payload(r#"{"rooms":"user_1","event":"e","args":5}"#),
        r#"["e",5]"#
    );
    assert_eq!(
        payload(r#"{"rooms":"user_1","event":"e","args":{"b":1,"1":2}}"#),
        r#"["e",{"1":2,"b":1}]"#
    );
    assert_eq!(
        payload(r#"{"rooms":"user_1","event":"e","args":null}"#),
        r#"["e",null]"#
    );
    assert_eq!(
        payload(r#"{"rooms":"user_1","event":"e","args":[]}"#),
        r#"["e"]"#
    );
    let rooms = accepted(Q, JSON, r#"{"rooms":["a","b","a",""],"event":"e"}"#).rooms;
    assert_eq!(
        rooms,
        ["a", "b", ""],
        "exact duplicates removed, order kept"
    );
    assert!(
        accepted(Q, JSON, r#"{"rooms":[],"event":"e"}"#)
            .rooms
            .is_empty()
    );
}

#[test]
fn form_bodies_follow_qs_extended_with_string_leaves() {
    let body = "rooms[]=user_1&rooms[]=staff&event=x&args[]=a&args[1][id]=5&args[1][n][]=x";
    let request = accepted(Q, FORM, body);
    assert_eq!(request.rooms, ["user_1", "staff"]);
    assert_eq!(&request.payload[..], br#"["x","a",{"id":"5","n":["x"]}]"#);
    let jquery = accepted(
        Q,
        Some("application/x-www-form-urlencoded; charset=UTF-8"),
        "rooms%5B%5D=user_1&event=hi+there&args=%E2%82%AC",
    );
    assert_eq!(
        (jquery.rooms, jquery.event.as_str()),
        (vec!["user_1".to_owned()], "hi there")
    );
    assert_eq!(&jquery.payload[..], "[\"hi there\",\"€\"]".as_bytes());
    assert_eq!(
        &accepted(Q, FORM, "rooms=user_1&event=e").payload[..],
        br#"["e",null]"#
    );
}

#[test]
fn query_parameter_checks_and_texts() {
    let body = r#"{"rooms":"user_1","event":"e"}"#;
    for query in [
        "",
        "site=goodcity",
        "apiKey=54321",
        "site=&apiKey=54321",
        "site=goodcity&apiKey=",
    ] {
        assert_eq!(
            refused(query, JSON, body),
            (
                400,
                HTML.into(),
                "Missing query param 'site' or 'apiKey'.".into()
            ),
            "{query}"
        );
    }
    for query in [
        "site=goodcity&apiKey=wrong",
        "site=nosuch&apiKey=54321",
        "site=other&apiKey=54321",
        "site=goodcity&apiKey=54321x",
        "site=GoodCity&apiKey=54321",
        "site[]=goodcity&apiKey=54321",
        "site=goodcity&apiKey[]=54321",
        "site=__proto__&apiKey=x",
    ] {
        assert_eq!(
            refused(query, JSON, body),
            (401, HTML.into(), "ApiKey invalid.".into()),
            "{query}"
        );
    }
    // apiKey in the body is ignored.
    assert_eq!(
        refused("site=goodcity", JSON, r#"{"apiKey":"54321"}"#).0,
        400
    );
    assert_eq!(
        accepted("site=other&apiKey=otherkey", JSON, body).site,
        "other"
    );
}

#[test]
fn resync_is_a_boolean() {
    let body = r#"{"rooms":"user_1","event":"e"}"#;
    for (value, expected) in [
        ("", false),
        ("false", false),
        ("0", false),
        ("true", true),
        ("1", true),
        ("yes", true),
    ] {
        assert_eq!(
            accepted(&format!("{Q}&resync={value}"), JSON, body).resync,
            expected,
            "resync={value}"
        );
    }
    assert!(!accepted(Q, JSON, body).resync);
}

#[test]
fn body_validation_texts() {
    let text = |body: &str| refused(Q, JSON, body);
    assert_eq!(
        text("[1,2]"),
        (
            400,
            PLAIN.into(),
            "The body must be a JSON object with 'rooms', 'event' and optional 'args'.".into()
        )
    );
    assert_eq!(
        text(r#"{"event":"e"}"#),
        (400, PLAIN.into(), "Missing body param 'rooms'.".into())
    );
    assert_eq!(
        text(""),
        (400, PLAIN.into(), "Missing body param 'rooms'.".into()),
        "an empty JSON body is an empty object"
    );
    assert_eq!(
        text(r#"{"rooms":5,"event":"e"}"#),
        (
            400,
            PLAIN.into(),
            "Body param 'rooms' must be a string or an array of strings.".into()
        )
    );
    assert_eq!(
        text(r#"{"rooms":["a",5],"event":"e"}"#).2,
        "Body param 'rooms' must be a string or an array of strings."
    );
    assert_eq!(
        text(r#"{"rooms":{"a":1},"event":"e"}"#).2,
        "Body param 'rooms' must be a string or an array of strings."
    );
    assert_eq!(
        text(r#"{"rooms":"a"}"#),
        (400, PLAIN.into(), "Missing body param 'event'.".into())
    );
    assert_eq!(
        text(r#"{"rooms":"a","event":7}"#),
        (
            400,
            PLAIN.into(),
            "Body param 'event' must be a string.".into()
        )
    );
    assert_eq!(
        text(r#"{"rooms":"a","event":""}"#),
        (
            400,
            PLAIN.into(),
            "Body param 'event' must not be empty.".into()
        )
    );
    assert_eq!(
        refused(Q, FORM, "rooms[a]=1&event=e").2,
        "Body param 'rooms' must be a string or an array of strings."
    );
}

#[test]
fn reserved_events_are_refused() {
    for event in RESERVED_EVENTS {
        let body = format!(r#"{{"rooms":"user_1","event":"{event}"}}"#);
        assert_eq!(
            refused(Q, JSON, &body),
            (
                400,
                PLAIN.into(),
                format!("Event name '{event}' is reserved.")
            )
        );
    }
    for event in [
        "_batch",
        "_resync",
        "_settings",
        "connect",
        "disconnect",
        "error",
    ] {
        assert!(RESERVED_EVENTS.contains(&event));
    }
    assert_eq!(
        accepted(Q, JSON, r#"{"rooms":"a","event":"_custom"}"#).event,
        "_custom"
    );
}

#[test]
fn malformed_json_gets_the_json_parse_message_before_the_key_check() {
    let refuse = |body: &str| refused("", JSON, body);
    assert_eq!(
        refuse("{"),
        (
            400,
            PLAIN.into(),
            "SyntaxError: Expected property name or '}' in JSON at position 1 (line 1 column 2)"
                .into()
        )
    );
    assert_eq!(
        refuse("<html>no</html>").2,
        "SyntaxError: Unexpected token '<', \"<html>no</html>\" is not valid JSON"
    );
    assert_eq!(
        refuse("\"str\"").2,
        "SyntaxError: Unexpected token '\"', \"\"str\"\" is not valid JSON"
    );
    assert_eq!(refuse("  ").2, "SyntaxError: Unexpected end of JSON input");
    let deep = "[".repeat(600) + &"]".repeat(600);
    assert_eq!(
        refuse(&deep).2,
        "The JSON body is nested deeper than 512 levels."
    );
}

#[test]
fn size_charset_and_content_type() {
    let big = format!(
        r#"{{"rooms":"a","event":"e","args":"{}"}}"#,
        "x".repeat(BODY_LIMIT)
    );
    assert_eq!(
        refused("", JSON, &big),
        (413, PLAIN.into(), "request entity too large".into())
    );
    let truncated = parse_send(&config(), Q, JSON, b"{", true).expect_err("truncated");
    assert_eq!(truncated.status, 413);
    let many = vec!["a=1"; 1001].join("&");
    assert_eq!(
        refused("", FORM, &many),
        (413, PLAIN.into(), "too many parameters".into())
    );
    assert_eq!(
        refused(Q, Some("application/json; charset=latin1"), "{}"),
        (415, PLAIN.into(), "unsupported charset \"LATIN1\"".into())
    );
    assert_eq!(
        refused(
            Q,
            Some("application/x-www-form-urlencoded; charset=utf-16"),
            "a=1"
        )
        .0,
        415
    );
    assert_eq!(
        accepted(
            Q,
            Some("Application/JSON; charset=utf-8"),
            r#"{"rooms":"a","event":"e"}"#
        )
        .event,
        "e"
    );
    assert_eq!(
        refused(Q, Some("text/plain"), "rooms=a"),
        (415, PLAIN.into(), "Unsupported Content-Type 'text/plain': send application/json or application/x-www-form-urlencoded.".into())
    );
    assert_eq!(
        refused(Q, None, "x").2,
        "Missing Content-Type: send application/json or application/x-www-form-urlencoded."
    );
    // An unsupported type does not get past the key check.
    assert_eq!(
        refused("site=goodcity&apiKey=no", Some("text/plain"), "x").0,
        401
    );
}

fn body(response: &HttpResponse) -> &str {
    std::str::from_utf8(&response.body).expect("utf-8")
}

#[test]
fn routes_and_fixed_answers() {
    assert_eq!(route(&Method::Get, "/healthcheck"), Route::Healthcheck);
    assert_eq!(route(&Method::Head, "/HealthCheck/"), Route::Healthcheck);
    assert_eq!(route(&Method::Post, "/send"), Route::Send);
    assert_eq!(route(&Method::Post, "/send/"), Route::Send);
    assert_eq!(route(&Method::Options, "/send"), Route::Options);
    assert_eq!(
        route(&Method::Options, "/healthcheck"),
        Route::HealthcheckOptions
    );
    assert_eq!(route(&Method::Get, "/send"), Route::NotFound);
    assert_eq!(route(&Method::Post, "/healthcheck"), Route::NotFound);
    // The pages answer 404 themselves unless the demo site runs or an operator key is set.
    assert_eq!(route(&Method::Get, "/"), Route::Demo);
    assert_eq!(route(&Method::Head, "/demo/"), Route::Demo);
    assert_eq!(route(&Method::Post, "/"), Route::NotFound);
    assert_eq!(route(&Method::Get, "/status"), Route::Status);
    assert_eq!(route(&Method::Get, "/status.json"), Route::StatusJson);
    assert_eq!(route(&Method::Head, "/status.json"), Route::NotFound);
    assert_eq!(route(&Method::Post, "/sendx"), Route::NotFound);

    let ok = fixed_response(Route::Healthcheck, &Method::Get, "/healthcheck").expect("fixed");
    assert_eq!(
        (ok.status, ok.headers.get("content-type"), body(&ok)),
        (200, Some(HTML), "ok")
    );
    assert_eq!(ok.headers.get("x-powered-by"), Some("Express"));
    let head = fixed_response(Route::Healthcheck, &Method::Head, "/healthcheck").expect("fixed");
    assert_eq!((head.status, body(&head)), (200, ""));
    let options = fixed_response(Route::Options, &Method::Options, "/send").expect("fixed");
    assert_eq!(
        (options.status, options.headers.get("allow"), body(&options)),
        (200, Some("POST"), "POST")
    );
    assert!(
        options.headers.get("access-control-allow-origin").is_none(),
        "no CORS on Express routes"
    );
    assert!(fixed_response(Route::Send, &Method::Post, "/send").is_none());

    let missing = fixed_response(Route::NotFound, &Method::Get, "/send").expect("fixed");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.headers.get("content-type"), Some(HTML));
    assert!(
        body(&missing).contains("<pre>Cannot GET /send</pre>"),
        "{}",
        body(&missing)
    );
    let escaped = not_found(&Method::Get, "/a<b>%zz");
    assert!(
        body(&escaped).contains("<pre>Cannot GET /a%3Cb%3E%25zz</pre>"),
        "{}",
        body(&escaped)
    );

    assert_eq!(
        ok.headers.get("etag"),
        Some("W/\"2-eoX0dku9ba8cNUXvu/DyeabcC+s\"")
    );
    assert_eq!(
        options.headers.get("etag"),
        Some("W/\"4-Yf+Bwwqjx254r+pisuO9HfpJ6FQ\"")
    );
    let unauthorised =
        parse_send(&config(), "site=goodcity&apiKey=no", JSON, b"{}", false).expect_err("401");
    assert_eq!(
        unauthorised.headers.get("etag"),
        Some("W/\"f-shUWMXLK6rtBRvwCK1RBVbrGWuo\"")
    );
    assert_eq!(unauthorised.headers.get("x-powered-by"), Some("Express"));
    let sent = send_ok();
    assert_eq!(
        sent.headers.get("etag"),
        Some("W/\"2-nOO9QiTIwXgNtWtBJezz8kv3SLc\"")
    );
    assert_eq!(
        (sent.status, sent.headers.get("content-type"), body(&sent)),
        (200, Some(PLAIN), "OK")
    );
}

mod properties {
    use super::{FORM, JSON, Q, config};
    use courier_core::gateway::qs::{self, QUERY_OPTIONS};
    use courier_core::gateway::send::parse_send;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn any_body_gets_a_request_or_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..256), form in any::<bool>()) {
            let content_type = if form { FORM } else { JSON };
            if let Err(response) = parse_send(&config(), Q, content_type, &body, false) {
                prop_assert!((400..500).contains(&response.status), "status {}", response.status);
                prop_assert!(!response.body.is_empty());
            }
        }

        #[test]
        fn qs_never_panics_on_bracket_soup(input in "[a-z\\[\\]=&%5BD0-9+]{0,80}") {
            let _query = qs::parse(&input, &QUERY_OPTIONS);
            let _form = qs::parse(&input, &qs::form_options(100));
        }

        #[test]
        fn form_rooms_and_args_round_trip(rooms in proptest::collection::vec("[a-z_0-9]{1,8}", 1..5), args in proptest::collection::vec("[ -~]{0,8}", 1..5)) {
            let mut body = String::from("event=e");
            for room in &rooms {
                body.push_str(&format!("&rooms[]={}", courier_core::urlencoded::encode_component(room)));
            }
            for arg in &args {
                body.push_str(&format!("&args[]={}", courier_core::urlencoded::encode_component(arg)));
            }
            let request = parse_send(&config(), Q, FORM, body.as_bytes(), false).map_err(|r| TestCaseError::fail(String::from_utf8_lossy(&r.body).into_owned()))?;
            let mut expected_rooms: Vec<String> = Vec::new();
            for room in rooms {
                if !expected_rooms.contains(&room) {
                    expected_rooms.push(room);
                }
            }
            prop_assert_eq!(request.rooms, expected_rooms);
            let payload: Vec<String> = serde_json::from_slice(&request.payload).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&payload[0], "e");
            prop_assert_eq!(&payload[1..], &args[..]);
        }
    }
}

#[test]
fn form_depth_and_qs_merge_rules_reach_send() {
    let deep = format!("rooms=a&event=e&args{}=1", "[x]".repeat(33));
    assert_eq!(
        refused(Q, FORM, &deep),
        (400, PLAIN.into(), "The input exceeded the depth".into())
    );
    // qs 6.15: a plain value merged into an object gives an array of both.
    assert_eq!(
        &accepted(Q, FORM, "rooms=a&event=e&args[b]=1&args=c").payload[..],
        br#"["e",{"b":"1"},"c"]"#
    );
}
