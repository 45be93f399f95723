//! Connect-time auth: the call, and every outcome string of the original.

use std::time::Duration;

use bytes::Bytes;
use courier_core::gateway::auth::{MISSING_VALUE, auth_call, auth_outcome, demo_rooms};
use courier_core::gateway::config::{Config, Site};
use courier_core::net::{CallFailure, CallResult, Method};

fn site(prefix: Option<&str>, public: Option<&str>) -> Site {
    Site {
        name: "goodcity".into(),
        auth_url: "http://127.0.0.1:3000/rooms".into(),
        auth_scheme: "Bearer".into(),
        api_key: "k".into(),
        user_room_prefix: prefix.map(str::to_owned),
        update_user_url: None,
        public_channel: public.map(str::to_owned),
        http_timeout: Duration::from_millis(2500),
        demo: false,
    }
}

fn respond(status: u16, body: &str) -> CallResult {
    CallResult::Response {
        status,
        body: Bytes::from(body.to_owned()),
    }
}

#[test]
fn the_call_carries_scheme_token_and_meta() {
    let call = auth_call(&site(Some("user_"), None), "u3", Some("abc")).expect("call");
    assert_eq!(call.method, Method::Get);
    assert_eq!(call.url, "http://127.0.0.1:3000/rooms");
    assert_eq!(call.headers.get("authorization"), Some("Bearer u3"));
    assert_eq!(call.headers.get("x-meta"), Some("abc"));
    assert_eq!(call.timeout, Duration::from_millis(2500));
    assert!(call.body.is_empty());
    let missing = auth_call(&site(Some("user_"), None), MISSING_VALUE, None).expect("call");
    assert_eq!(
        missing.headers.get("authorization"),
        Some("Bearer undefined")
    );
    assert_eq!(missing.headers.get("x-meta"), Some("undefined"));
}

#[test]
fn header_values_fetch_would_refuse_become_auth_errors() {
    let s = site(Some("user_"), None);
    assert_eq!(
        auth_call(&s, "a\r\nX-Evil: 1", None).err().as_deref(),
        Some("Auth error: TypeError: Headers.append: invalid header value.")
    );
    assert_eq!(
        auth_call(&s, "t€", None).err().as_deref(),
        Some(
            "Auth error: TypeError: Cannot convert argument to a ByteString because the character at index 8 has a value of 8364 which is greater than 255."
        )
    );
    assert_eq!(
        auth_call(&s, "tok ", Some(" m "))
            .expect("trimmed")
            .headers
            .get("x-meta"),
        Some("m")
    );
}

#[test]
fn outcomes_in_user_room_mode() {
    let s = site(Some("user_"), Some("browse"));
    let outcome = |status, body| auth_outcome(&s, &respond(status, body));
    assert_eq!(
        outcome(200, r#"["user_3","reviewer","user_3"]"#),
        Ok(vec!["user_3".into(), "reviewer".into()])
    );
    assert_eq!(outcome(200, r#"["browse"]"#), Ok(vec!["browse".into()]));
    assert_eq!(
        outcome(401, r#"{"error":"no"}"#),
        Err("Authentication failed".into())
    );
    assert_eq!(
        outcome(401, "<html>no</html>"),
        Err(
            "Auth error: SyntaxError: Unexpected token '<', \"<html>no</html>\" is not valid JSON"
                .into()
        )
    );
    assert_eq!(
        outcome(401, ""),
        Err("Auth error: SyntaxError: Unexpected end of JSON input".into())
    );
    assert_eq!(outcome(500, "{}"), Err("Auth 500 error".into()));
    assert_eq!(outcome(403, "[]"), Err("Auth 403 error".into()));
    assert_eq!(outcome(201, "[]"), Err("Auth 201 error".into()));
    assert_eq!(
        outcome(200, r#"["reviewer"]"#),
        Err("User is missing a private room".into())
    );
    assert_eq!(
        outcome(200, "[]"),
        Err("User is missing a private room".into())
    );
    assert_eq!(
        outcome(200, "[\"User_3\"]"),
        Err("User is missing a private room".into()),
        "case-sensitive prefix"
    );
    assert_eq!(
        outcome(200, r#"{"a":1}"#),
        Err("Auth error: TypeError: data.some is not a function".into())
    );
    assert_eq!(
        outcome(200, "null"),
        Err("Auth error: TypeError: Cannot read properties of null (reading 'some')".into())
    );
    assert_eq!(
        outcome(200, r#"[5,"user_1"]"#),
        Err("Auth error: TypeError: room.indexOf is not a function".into())
    );
    assert_eq!(
        outcome(200, r#"[null]"#),
        Err("Auth error: TypeError: Cannot read properties of null (reading 'indexOf')".into())
    );
    assert_eq!(
        outcome(200, r#"["user_1",5]"#),
        Ok(vec!["user_1".into()]),
        "some() stops at the first user room"
    );
}

#[test]
fn outcomes_in_broadcast_mode() {
    let s = site(None, None);
    let outcome = |status, body| auth_outcome(&s, &respond(status, body));
    assert_eq!(
        outcome(200, r#"["staff","undefinedroom"]"#),
        Ok(vec!["staff".into(), "undefinedroom".into()])
    );
    assert_eq!(outcome(200, "[]"), Ok(vec![]));
    assert_eq!(
        outcome(200, r#"{"rooms":["a"]}"#),
        Ok(vec![]),
        "an object body: admitted, no rooms"
    );
    assert_eq!(
        outcome(200, r#""staff""#),
        Err("Auth error: TypeError: data.forEach is not a function".into())
    );
    assert_eq!(outcome(401, "[]"), Err("Authentication failed".into()));
}

#[test]
fn failures_without_an_answer() {
    let s = site(Some("user_"), None);
    assert_eq!(
        auth_outcome(&s, &CallResult::Failed(CallFailure::Timeout)),
        Err("Auth error: timeout".into())
    );
    assert_eq!(
        auth_outcome(
            &s,
            &CallResult::Failed(CallFailure::Network("connection refused".into()))
        ),
        Err("Auth error: TypeError: fetch failed".into())
    );
    assert_eq!(
        auth_outcome(
            &s,
            &CallResult::Failed(CallFailure::InvalidUrl("no host".into()))
        ),
        Err("Auth error: TypeError: fetch failed".into())
    );
}

#[test]
fn demo_site_rooms() {
    assert_eq!(demo_rooms("t"), ["user_t", "staff"]);
    let demo = Config::demo();
    let site = demo.site("demo").expect("demo");
    assert!(demo_rooms("7").iter().any(|room| site.is_user_room(room)));
}
