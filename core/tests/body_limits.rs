//! Bounded request bodies: which limit the gateway gives each request, the counting of a body
//! as it arrives, the per-process budget, and the `io.requestTimeout` / `io.requestBodyBudget`
//! configuration keys.

use std::collections::BTreeMap;

use courier_core::body::{BodyBudget, BodyCounter, BodyLimit, BodyRules, TooLarge};
use courier_core::gateway::config::{self, ConfigSources, SourceFile};
use courier_core::gateway::send::BODY_LIMIT;
use courier_core::gateway::{Gateway, GatewayOptions};
use courier_core::net::{Engine, Method};

fn load(config_yml: &str) -> Result<config::Config, String> {
    config::load(&ConfigSources {
        config_yml: Some(SourceFile {
            path: "config.yml".into(),
            text: config_yml.into(),
        }),
        sites_yml: None,
        env: BTreeMap::new(),
    })
    .map_err(|e| e.to_string())
}

fn gateway_rules(config_yml: &str) -> BodyRules {
    let config = load(config_yml).expect("config loads");
    let options = GatewayOptions {
        node_id: 1,
        seed: 1,
        clustered: false,
        epoch_check: None,
        engine: None,
    };
    Gateway::new(config, options).body_rules(1)
}

#[test]
fn the_gateway_limits_polling_posts_and_send_and_ignores_other_bodies() {
    let rules = gateway_rules("production:\n  io:\n    maxHttpBufferSize: 5000\n");
    let limit = |method: Method, path: &str| rules.limit(&method, path);
    assert_eq!(limit(Method::Post, "/socket.io/"), BodyLimit::UpTo(5000));
    assert_eq!(limit(Method::Post, "/socket.io"), BodyLimit::UpTo(5000));
    assert_eq!(limit(Method::Get, "/socket.io/"), BodyLimit::Ignore);
    assert_eq!(limit(Method::Post, "/send"), BodyLimit::UpTo(BODY_LIMIT));
    assert_eq!(
        limit(Method::Post, "/SEND/"),
        BodyLimit::UpTo(BODY_LIMIT),
        "matched as Express matched the route"
    );
    assert_eq!(BODY_LIMIT, 100 * 1024, "body-parser's 100 kB");
    for (method, path) in [
        (Method::Get, "/send"),
        (Method::Options, "/send"),
        (Method::Get, "/healthcheck"),
        (Method::Post, "/healthcheck"),
        (Method::Post, "/elsewhere"),
        (Method::Get, "/socket.io/socket.io.js"),
        (Method::Post, "/socket.io/socket.io.js"),
    ] {
        assert_eq!(
            limit(method.clone(), path),
            BodyLimit::Ignore,
            "{method} {path}"
        );
    }
}

#[test]
fn the_engine_path_follows_io_path() {
    let rules = gateway_rules("production:\n  io:\n    path: /push/\n");
    assert_eq!(
        rules.limit(&Method::Post, "/push/"),
        BodyLimit::UpTo(1_000_000)
    );
    assert_eq!(rules.limit(&Method::Post, "/socket.io/"), BodyLimit::Ignore);
}

#[test]
fn other_engines_read_every_body_up_to_the_adapters_cap() {
    let rules = BodyRules::uniform(1234);
    assert_eq!(
        rules.limit(&Method::Get, "/anything"),
        BodyLimit::UpTo(1234)
    );
    assert_eq!(rules.limit(&Method::Post, "/send"), BodyLimit::UpTo(1234));
}

#[test]
fn a_declared_length_over_the_limit_is_refused_before_reading() {
    assert_eq!(BodyCounter::start(100, Some(101)), Err(TooLarge));
    assert_eq!(BodyCounter::start(100, Some(u64::MAX)), Err(TooLarge));
    let counter = BodyCounter::start(100, Some(100)).expect("exactly the limit is fine");
    assert_eq!(
        counter.reserved(),
        100,
        "a declared body is reserved up front"
    );
}

#[test]
fn a_declared_body_needs_no_more_budget_while_it_arrives() {
    let mut counter = BodyCounter::start(100, Some(60)).expect("under the limit");
    assert_eq!(counter.take(30), Ok(0));
    assert_eq!(counter.take(30), Ok(0));
    assert_eq!(counter.received(), 60);
}

#[test]
fn a_chunked_body_is_counted_and_cut_at_the_limit() {
    let mut counter = BodyCounter::start(100, None).expect("chunked starts");
    assert_eq!(counter.reserved(), 0);
    assert_eq!(counter.take(40), Ok(40));
    assert_eq!(counter.take(60), Ok(60), "exactly the limit is kept");
    assert_eq!(counter.take(1), Err(TooLarge), "one byte more is too large");
    assert_eq!(counter.received(), 100);
    let mut huge = BodyCounter::start(100, None).expect("chunked starts");
    assert_eq!(huge.take(usize::MAX), Err(TooLarge));
}

#[test]
fn the_budget_is_never_overdrawn() {
    let mut budget = BodyBudget::new(100);
    assert!(budget.try_reserve(70));
    assert!(!budget.try_reserve(31), "over the budget");
    assert_eq!(budget.used(), 70, "a refused reservation takes nothing");
    assert!(budget.try_reserve(30));
    budget.release(100);
    assert_eq!(budget.used(), 0);
    assert!(!budget.try_reserve(usize::MAX));
}

#[test]
fn request_timeout_and_budget_have_defaults() {
    let io = load("production:\n  port: 1\n").expect("loads").io;
    assert_eq!(io.request_timeout_ms, 30_000);
    assert_eq!(io.request_body_budget, 64 << 20);
    let big = load("production:\n  io:\n    maxHttpBufferSize: 100000000\n")
        .expect("the original's default maxHttpBufferSize still starts")
        .io;
    assert_eq!(
        big.request_body_budget, 100_000_000,
        "the default budget always fits the largest body"
    );
    let set = load("production:\n  io:\n    requestTimeout: 500\n    requestBodyBudget: 2000000\n")
        .expect("loads")
        .io;
    assert_eq!(
        (set.request_timeout_ms, set.request_body_budget),
        (500, 2_000_000)
    );
}

#[test]
fn bad_request_timeout_or_budget_names_the_key_and_the_file() {
    assert_eq!(
        load("production:\n  io:\n    requestTimeout: 0\n").unwrap_err(),
        "config.yml: production.io: requestTimeout must be greater than 0"
    );
    assert_eq!(
        load("production:\n  io:\n    requestTimeout: soon\n").unwrap_err(),
        "config.yml: production.io: requestTimeout must be a whole number of milliseconds, got \"soon\""
    );
    assert_eq!(
        load("production:\n  io:\n    requestBodyBudget: 1000\n").unwrap_err(),
        "config.yml: production.io: requestBodyBudget must be at least maxHttpBufferSize (1000000), so the largest allowed body fits, got 1000"
    );
}
