//! Log lines: one JSON object per event, lowercase levels, fields spread into the line,
//! filtered by level.

use std::sync::{Arc, Mutex};

use courier_core::net::{AppEvent, Level};
use courier_io::logging::{JsonLines, log_event};
use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

fn lines_of(filter: &str, log: impl FnOnce()) -> Vec<Value> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(JsonLines::to_buffer(Arc::clone(&buffer)));
    tracing::subscriber::with_default(subscriber, log);
    let text = String::from_utf8(buffer.lock().expect("buffer").clone()).expect("UTF-8");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is one JSON object"))
        .collect()
}

#[test]
fn application_events_become_one_json_line_each() {
    let lines = lines_of("info", || {
        log_event(
            &AppEvent::new(Level::Info, "Socket connected")
                .with("site", "goodcity")
                .with("dataId", 7_530_115_940_332_077_057u64)
                .with("offset", -3i64)
                .with("resync", true)
                .with("room", "quote\"and\nnewline"),
        );
        log_event(&AppEvent::new(Level::Debug, "Not shown at info"));
        log_event(
            &AppEvent::new(Level::Error, "Authentication error").with("reason", "Auth 500 error"),
        );
        tracing::warn!(target: "courier", error = "boom", "cluster publish failed");
    });
    assert_eq!(lines.len(), 3, "{lines:?}");
    let first = &lines[0];
    assert_eq!(first["level"], "info");
    assert_eq!(first["message"], "Socket connected");
    assert_eq!(first["site"], "goodcity");
    assert_eq!(first["dataId"], 7_530_115_940_332_077_057u64);
    assert_eq!(first["offset"], -3);
    assert_eq!(first["resync"], true);
    assert_eq!(first["room"], "quote\"and\nnewline");
    assert!(
        first["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24)
    );
    assert_eq!(lines[1]["level"], "error");
    assert_eq!(lines[1]["reason"], "Auth 500 error");
    assert_eq!(lines[2]["level"], "warn");
    assert_eq!(lines[2]["error"], "boom");
}

#[test]
fn the_filter_decides_what_is_written() {
    let lines = lines_of("warn", || {
        log_event(&AppEvent::new(Level::Info, "Socket connected"));
        log_event(&AppEvent::new(Level::Warn, "Slow consumer"));
    });
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["message"], "Slow consumer");
    let lines = lines_of("courier=debug", || {
        log_event(&AppEvent::new(Level::Debug, "Detail"));
    });
    assert_eq!(lines[0]["level"], "debug");
}
