//! Log lines: one JSON object per event, lowercase levels, fields spread into the line,
//! filtered by level; byte-identical to the serde_json-based format; batched writes.

use std::io::Write;
use std::sync::{Arc, Mutex};

use courier_core::iso8601::format as iso_timestamp;
use courier_core::net::{AppEvent, FieldValue, Level};
use courier_io::logging::{self, JsonLines, WallClock, format_line, log_event, write_json_string};
use proptest::prelude::*;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

fn system_clock() -> WallClock {
    WallClock::new(courier_io::system_unix_ms)
}

fn lines_of(filter: &str, log: impl FnOnce()) -> Vec<Value> {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(JsonLines::to_buffer(Arc::clone(&buffer), system_clock()));
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

/// The line as the serde_json-based logger wrote it: an insertion-ordered map of the fixed keys,
/// then the fields (`insert`: a repeated name keeps its place, takes the last value), fixed keys
/// not replaceable.
fn serde_json_line(
    timestamp: &str,
    level: &str,
    message: &str,
    fields: &[(&str, FieldValue)],
) -> String {
    let mut members = Map::new();
    for (name, value) in fields {
        let value = match value {
            FieldValue::Str(text) => Value::String(text.to_string()),
            FieldValue::U64(n) => Value::from(*n),
            FieldValue::I64(n) => Value::from(*n),
            FieldValue::Bool(b) => Value::Bool(*b),
            // Not generated below: serde_json would write a float its own way.
            FieldValue::Millis(d) => Value::from(d.as_secs_f64() * 1e3),
        };
        members.insert((*name).to_owned(), value);
    }
    let mut object = Map::new();
    object.insert("timestamp".into(), Value::String(timestamp.to_owned()));
    object.insert("level".into(), Value::String(level.to_owned()));
    object.insert("message".into(), Value::String(message.to_owned()));
    for (name, value) in members {
        object.entry(name).or_insert(value);
    }
    Value::Object(object).to_string()
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<String>().prop_map(|text| FieldValue::Str(text.into())),
        "[\\x00-\\x20\"\\\\/\\x7f-\\u{10ffff}]{0,12}".prop_map(|text| FieldValue::Str(text.into())),
        any::<u64>().prop_map(FieldValue::U64),
        any::<i64>().prop_map(FieldValue::I64),
        any::<bool>().prop_map(FieldValue::Bool),
    ]
}

fn field_name() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "site",
        "room",
        "deviceId",
        "dataId",
        "event",
        "a\"b",
        "tab\there",
        "é",
        "timestamp",
        "level",
        "message",
        "target",
    ])
}

proptest! {
    #[test]
    fn strings_are_escaped_exactly_as_serde_json_does(text in any::<String>()) {
        let mut out = String::new();
        write_json_string(&mut out, &text);
        prop_assert_eq!(&out, &serde_json::to_string(&text).expect("serialisable"));
    }

    #[test]
    fn control_quote_and_backslash_heavy_strings_too(text in "[\\x00-\\x1f\"\\\\a\\x7f\u{80}-\u{10ffff}]{0,40}") {
        let mut out = String::new();
        write_json_string(&mut out, &text);
        prop_assert_eq!(&out, &serde_json::to_string(&text).expect("serialisable"));
        prop_assert_eq!(serde_json::from_str::<String>(&out).expect("valid JSON"), text);
    }

    #[test]
    fn lines_are_byte_identical_to_the_serde_json_logger(
        unix_ms in 0u64..4_102_444_800_000,
        message in any::<String>(),
        fields in prop::collection::vec((field_name(), field_value()), 0..10),
    ) {
        let line = format_line(unix_ms, "info", &message, &fields);
        let timestamp = iso_timestamp(unix_ms);
        prop_assert_eq!(&line, &serde_json_line(&timestamp, "info", &message, &fields));
        let parsed: Value = serde_json::from_str(&line).expect("one JSON object");
        prop_assert_eq!(&parsed["message"], &Value::String(message));
    }
}

#[test]
fn delivery_lines_keep_the_format_the_integration_tests_grep() {
    let fields = [
        ("site", FieldValue::from("goodcity")),
        ("room", FieldValue::from("r1")),
        ("deviceId", FieldValue::from("d1")),
        ("event", FieldValue::from("live")),
        ("devices", FieldValue::U64(2)),
    ];
    assert_eq!(
        format_line(1_795_000_000_123, "info", "Message sent", &fields),
        "{\"timestamp\":\"2026-11-18T11:06:40.123Z\",\"level\":\"info\",\"message\":\"Message sent\",\
         \"site\":\"goodcity\",\"room\":\"r1\",\"deviceId\":\"d1\",\"event\":\"live\",\"devices\":2}"
    );
}

/// A writer that records each `write` call separately.
#[derive(Default)]
struct Writes(Vec<Vec<u8>>);

impl Write for Writes {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.push(bytes.to_vec());
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn with_recorded_writes(filter: &str, log: impl FnOnce(&Arc<Mutex<Writes>>)) -> Vec<Vec<u8>> {
    let writes = Arc::new(Mutex::new(Writes::default()));
    let sink: Arc<Mutex<dyn Write + Send>> = writes.clone();
    let subscriber = tracing_subscriber::registry()
        .with(EnvFilter::new(filter))
        .with(JsonLines::to_writer(sink, system_clock()));
    tracing::subscriber::with_default(subscriber, || log(&writes));
    std::mem::take(&mut writes.lock().expect("writes").0)
}

#[test]
fn without_a_batch_every_line_is_written_at_once() {
    let writes = with_recorded_writes("info", |writes| {
        log_event(&AppEvent::new(Level::Info, "one"));
        assert_eq!(writes.lock().expect("writes").0.len(), 1);
        log_event(&AppEvent::new(Level::Info, "two"));
        assert_eq!(writes.lock().expect("writes").0.len(), 2);
    });
    assert!(writes.iter().all(|write| write.ends_with(b"\n")));
}

#[test]
fn a_batch_writes_its_lines_once_when_the_last_batch_closes() {
    let writes = with_recorded_writes("info", |writes| {
        let outer = logging::batch();
        log_event(&AppEvent::new(Level::Info, "Message stored").with("dataId", "1"));
        {
            let _inner = logging::batch();
            log_event(&AppEvent::new(Level::Info, "Message sent").with("deviceId", "d1"));
        }
        tracing::warn!(target: "courier", "cluster bus backlog full; message dropped");
        log_event(&AppEvent::new(Level::Debug, "filtered out"));
        assert!(
            writes.lock().expect("writes").0.is_empty(),
            "nothing before the batch closes"
        );
        drop(outer);
        assert_eq!(writes.lock().expect("writes").0.len(), 1);
        log_event(&AppEvent::new(Level::Info, "Message removed"));
    });
    assert_eq!(
        writes.len(),
        2,
        "one write for the batch, one for the line after it"
    );
    let text = String::from_utf8(writes.concat()).expect("UTF-8");
    let messages: Vec<String> = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("JSON line")["message"].to_string())
        .collect();
    assert_eq!(
        messages,
        [
            "\"Message stored\"",
            "\"Message sent\"",
            "\"cluster bus backlog full; message dropped\"",
            "\"Message removed\""
        ]
    );
}

#[test]
fn a_large_batch_is_written_in_chunks_of_whole_lines() {
    let writes = with_recorded_writes("info", |_| {
        let _batch = logging::batch();
        for n in 0..2_000u64 {
            log_event(
                &AppEvent::new(Level::Info, "Message sent")
                    .with("n", n)
                    .with("pad", "x".repeat(100)),
            );
        }
    });
    assert!(writes.len() > 1, "flushed before the batch ended");
    assert!(
        writes
            .iter()
            .all(|write| write.len() <= logging::BATCH_FLUSH_BYTES + 1024)
    );
    assert!(writes.iter().all(|write| write.ends_with(b"\n")));
    let text = String::from_utf8(writes.concat()).expect("UTF-8");
    assert_eq!(text.lines().count(), 2_000);
}

#[test]
fn a_panic_inside_a_batch_still_writes_its_lines() {
    let writes = with_recorded_writes("info", |_| {
        let outcome = std::panic::catch_unwind(|| {
            let _batch = logging::batch();
            log_event(&AppEvent::new(Level::Error, "before the panic"));
            panic!("engine bug");
        });
        assert!(outcome.is_err());
    });
    assert_eq!(writes.len(), 1);
    assert!(String::from_utf8_lossy(&writes[0]).contains("\"message\":\"before the panic\""));
}

#[test]
fn lines_buffered_for_one_subscriber_are_written_before_another_takes_over() {
    let first = Arc::new(Mutex::new(Vec::new()));
    let second = Arc::new(Mutex::new(Vec::new()));
    let _batch = logging::batch();
    let subscriber = tracing_subscriber::registry()
        .with(JsonLines::to_buffer(Arc::clone(&first), system_clock()));
    tracing::subscriber::with_default(subscriber, || {
        log_event(&AppEvent::new(Level::Info, "first"))
    });
    let subscriber = tracing_subscriber::registry()
        .with(JsonLines::to_buffer(Arc::clone(&second), system_clock()));
    tracing::subscriber::with_default(subscriber, || {
        log_event(&AppEvent::new(Level::Info, "second"))
    });
    assert!(String::from_utf8_lossy(&first.lock().expect("first")).contains("\"first\""));
    assert!(second.lock().expect("second").is_empty());
    logging::flush();
    assert!(String::from_utf8_lossy(&second.lock().expect("second")).contains("\"second\""));
}

#[test]
fn events_reach_a_subscriber_without_json_lines_as_tracing_events() {
    #[derive(Default)]
    struct Captured(Vec<(String, String)>);
    impl Visit for Captured {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }
    struct Capture(Arc<Mutex<Vec<(String, String)>>>);
    impl<S: tracing::Subscriber> Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
            let mut captured = Captured::default();
            event.record(&mut captured);
            self.0.lock().expect("captured").extend(captured.0);
        }
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&seen)));
    tracing::subscriber::with_default(subscriber, || {
        log_event(
            &AppEvent::new(Level::Warn, "Slow consumer")
                .with("room", "r\"1")
                .with("n", 3u64),
        );
    });
    let seen = seen.lock().expect("seen").clone();
    assert_eq!(
        seen,
        [
            ("message".to_owned(), "Slow consumer".to_owned()),
            (
                "app_fields".to_owned(),
                r#"{"room":"r\"1","n":3}"#.to_owned()
            ),
        ]
    );
}

#[test]
fn a_duration_is_a_number_of_milliseconds_with_three_decimals() {
    let fields = [
        (
            "durationMs",
            FieldValue::from(std::time::Duration::from_micros(12_345)),
        ),
        (
            "short",
            FieldValue::from(std::time::Duration::from_micros(42)),
        ),
    ];
    let line = format_line(1_795_000_000_123, "info", "Message dispatched", &fields);
    assert!(
        line.ends_with(",\"durationMs\":12.345,\"short\":0.042}"),
        "{line}"
    );
    let parsed: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(parsed["durationMs"].as_f64(), Some(12.345));
}

#[test]
fn the_lowest_enabled_level_follows_the_filter() {
    for (filter, level) in [
        ("info", Level::Info),
        ("info,courier=debug", Level::Debug),
        ("warn", Level::Warn),
        ("off", Level::Error),
    ] {
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new(filter));
        let found = tracing::subscriber::with_default(subscriber, logging::min_enabled_level);
        assert_eq!(found, level, "{filter}");
    }
}
