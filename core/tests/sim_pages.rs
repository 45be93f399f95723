//! The demo and status pages through the gateway: off (404) unless the demo site runs or an
//! operator key is configured, and the key checked (401) before `/status.json` is handed to the
//! adapter (which builds the document from the metrics snapshot; `tests/tests/pages.rs` checks
//! it on the real binaries).

mod sim;

use courier_core::gateway::config::{Config, ConfigSources, SourceFile, load};
use courier_core::gateway::{Gateway, GatewayOptions};
use courier_core::net::{Engine, Headers, HttpRequest, Method, Output, RequestId};
use sim::Sim;

const WITH_KEY: &str = "production:\n  admin:\n    apiKey: op-key\n";

#[test]
fn pages_are_404_without_a_key_or_the_demo_site() {
    let mut sim = Sim::goodcity();
    for path in ["/", "/demo", "/status", "/status.json"] {
        let r = sim.exchange(Method::Get, path, "key=anything", &[], b"");
        assert_eq!(r.status, 404, "{path}");
        assert!(String::from_utf8_lossy(&r.body).contains("Cannot GET"));
    }
}

#[test]
fn the_operator_key_opens_the_status_page_and_nothing_else_does() {
    let mut sim = Sim::new(sim::GOODCITY, Some(WITH_KEY));
    for (query, headers) in [
        ("", vec![]),
        ("key=wrong", vec![]),
        ("", vec![("authorization", "Bearer wrong")]),
        ("key=op-key", vec![("authorization", "Bearer wrong")]),
        ("", vec![("authorization", "op-key")]),
    ] {
        for path in ["/status", "/status.json"] {
            let r = sim.exchange(Method::Get, path, query, &headers, b"");
            assert_eq!(
                (r.status, &r.body[..]),
                (401, &b"Admin key invalid."[..]),
                "{path}?{query} {headers:?}"
            );
        }
    }
    let page = sim.exchange(Method::Get, "/status", "key=op-key", &[], b"");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.headers.get("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.headers.get("content-security-policy").is_some());
    assert_eq!(page.headers.get("cache-control"), Some("no-store"));
    for (query, headers) in [
        ("key=op-key", vec![]),
        ("", vec![("authorization", "Bearer op-key")]),
    ] {
        let data = sim.exchange(Method::Get, "/status.json", query, &headers, b"");
        assert_eq!((data.status, &data.body[..]), (200, &b"true"[..]));
        assert_eq!(
            data.headers.get("content-type"),
            Some("application/json; charset=utf-8")
        );
    }
    // The demo page stays off: this is not the demo site.
    assert_eq!(sim.exchange(Method::Get, "/", "", &[], b"").status, 404);
}

#[test]
fn the_demo_page_is_served_with_the_demo_site() {
    let mut gateway = Gateway::new(
        Config::demo(),
        GatewayOptions {
            node_id: 1,
            seed: 1,
            clustered: false,
            epoch_check: None,
            engine: None,
        },
    );
    let now = std::time::Instant::now();
    gateway.handle_wall_clock(1_700_000_000_000, now);
    for path in ["/", "/demo", "/DEMO/"] {
        let request = HttpRequest {
            method: Method::Get,
            path: path.to_owned(),
            query: String::new(),
            headers: Headers::default(),
            body: bytes::Bytes::new(),
            body_truncated: false,
            websocket: false,
        };
        gateway.handle_http(RequestId(1), request, now);
        let Output::HttpResponse(_, response) = gateway.poll_output() else {
            panic!("an answer for {path}");
        };
        assert_eq!(response.status, 200, "{path}");
        let html = String::from_utf8_lossy(&response.body);
        assert!(html.contains("/socket.io/socket.io.js"), "{path}");
        // Data from messages is only ever text.
        assert!(!html.contains("innerHTML"), "{path}");
    }
}

#[test]
fn the_key_comes_from_the_environment_first_and_must_not_be_empty() {
    let sources = |config: &str, env: &[(&str, &str)]| ConfigSources {
        config_yml: Some(SourceFile {
            path: "config.yml".into(),
            text: config.into(),
        }),
        sites_yml: None,
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let config = load(&sources(WITH_KEY, &[("ADMIN_API_KEY", "from-env")])).expect("loads");
    let key = config.admin_key.expect("a key");
    assert!(key.matches("from-env") && !key.matches("op-key"));
    assert!(
        !format!("{key:?}").contains("from-env"),
        "Debug hides the key"
    );
    let config = load(&sources(WITH_KEY, &[("ADMIN_API_KEY", "")])).expect("loads");
    assert!(config.admin_key.expect("the file's key").matches("op-key"));
    assert!(
        load(&sources("production:\n  port: 1\n", &[]))
            .expect("loads")
            .admin_key
            .is_none()
    );
    let error = load(&sources("production:\n  admin:\n    apiKey: ''\n", &[])).expect_err("empty");
    assert_eq!(
        error.to_string(),
        "config.yml: production.admin: apiKey must not be empty"
    );
    let error = load(&sources("production:\n  admin: 3\n", &[])).expect_err("not a mapping");
    assert!(error.to_string().contains("admin"), "{error}");
    let config = load(&sources(
        "production:\n  admin:\n    apiKey: k\n    user: x\n",
        &[],
    ))
    .expect("loads");
    assert!(
        config
            .warnings
            .iter()
            .any(|w| w.contains("production.admin: user")),
        "{:?}",
        config.warnings
    );
}
