//! Logs: one JSON object per line on stdout, `{"timestamp","level","message",...fields}`, level
//! names in lowercase (`debug`, `info`, `warn`, `error`), filtered `RUST_LOG`-style (default
//! `info`).
//!
//! Application events ([`AppEvent`]) go through tracing too (target `courier`), so one
//! subscriber sees every line. Their field names are only known at run time, which tracing's
//! macros cannot express, so [`log_event`] carries them as one JSON object in the field
//! `app_fields`, and [`JsonLines`] (the tracing-subscriber layer writing every line) spreads that
//! object's members into the line.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use courier_core::net::{AppEvent, FieldValue, Level};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the JSON logger as the global subscriber. `filter` is a `RUST_LOG`-style directive
/// string (`None`: `info`). Harmless when a subscriber is already installed (tests).
pub fn init(filter: Option<&str>) {
    let filter = filter
        .and_then(|text| EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(JsonLines::stdout())
        .try_init();
}

/// Writes one application event, if its level is enabled for target `courier`.
pub fn log_event(event: &AppEvent) {
    let enabled = match event.level {
        Level::Debug => tracing::enabled!(target: "courier", tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: "courier", tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: "courier", tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: "courier", tracing::Level::ERROR),
    };
    if !enabled {
        // Skip building the fields of a line nobody writes.
        return;
    }
    let mut fields = Map::new();
    for (name, value) in &event.fields {
        let value = match value {
            FieldValue::Str(text) => Value::String(text.to_string()),
            FieldValue::U64(n) => Value::from(*n),
            FieldValue::I64(n) => Value::from(*n),
            FieldValue::Bool(b) => Value::Bool(*b),
        };
        fields.insert((*name).to_owned(), value);
    }
    let app_fields = Value::Object(fields).to_string();
    let message = event.message;
    match event.level {
        Level::Debug => tracing::debug!(target: "courier", app_fields, "{message}"),
        Level::Info => tracing::info!(target: "courier", app_fields, "{message}"),
        Level::Warn => tracing::warn!(target: "courier", app_fields, "{message}"),
        Level::Error => tracing::error!(target: "courier", app_fields, "{message}"),
    }
}

/// The field [`log_event`] carries an event's fields in.
const APP_FIELDS: &str = "app_fields";

/// The line for one event, as written (without the newline).
pub fn format_line(level: &str, message: &str, fields: Map<String, Value>) -> String {
    let mut object = Map::new();
    object.insert("timestamp".into(), Value::String(iso_timestamp_now()));
    object.insert("level".into(), Value::String(level.to_owned()));
    object.insert("message".into(), Value::String(message.to_owned()));
    for (name, value) in fields {
        // The three keys above are the line's own; a field of the same name cannot replace them.
        object.entry(name).or_insert(value);
    }
    Value::Object(object).to_string()
}

fn write_line(sink: &Sink, level: &str, message: &str, fields: Map<String, Value>) {
    let mut line = format_line(level, message, fields);
    line.push('\n');
    match sink {
        // One write per line under the lock, so lines of concurrent tasks never interleave. A
        // closed stdout is no reason to stop serving.
        Sink::Stdout => {
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
        Sink::Buffer(buffer) => {
            if let Ok(mut buffer) = buffer.lock() {
                buffer.extend_from_slice(line.as_bytes());
            }
        }
    }
}

/// Lowercase level name of an application event.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

fn tracing_level_name(level: &tracing::Level) -> &'static str {
    match *level {
        tracing::Level::TRACE => "trace",
        tracing::Level::DEBUG => "debug",
        tracing::Level::INFO => "info",
        tracing::Level::WARN => "warn",
        tracing::Level::ERROR => "error",
    }
}

/// The tracing-subscriber layer writing every tracing event as one JSON line.
#[derive(Debug, Clone)]
pub struct JsonLines {
    sink: Sink,
}

#[derive(Debug, Clone)]
enum Sink {
    Stdout,
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl JsonLines {
    /// Lines to stdout.
    pub fn stdout() -> JsonLines {
        JsonLines { sink: Sink::Stdout }
    }

    /// Lines appended to `buffer` (for tests).
    pub fn to_buffer(buffer: Arc<Mutex<Vec<u8>>>) -> JsonLines {
        JsonLines {
            sink: Sink::Buffer(buffer),
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = FieldCollector::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        if !metadata.target().starts_with("courier") {
            visitor
                .fields
                .insert("target".into(), Value::String(metadata.target().to_owned()));
        }
        write_line(
            &self.sink,
            tracing_level_name(metadata.level()),
            &visitor.message,
            visitor.fields,
        );
    }
}

#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Map<String, Value>,
}

impl Visit for FieldCollector {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.fields
                .insert(field.name().to_owned(), Value::String(text));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else if field.name() == APP_FIELDS {
            if let Ok(Value::Object(members)) = serde_json::from_str(value) {
                self.fields.extend(members);
            }
        } else {
            self.fields
                .insert(field.name().to_owned(), Value::String(value.to_owned()));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.fields
            .insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.fields
            .insert(field.name().to_owned(), Value::Bool(value));
    }
}

/// Now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn iso_timestamp_now() -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    iso_timestamp(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (proleptic Gregorian, UTC).
pub fn iso_timestamp(unix_ms: u64) -> String {
    let days = unix_ms / 86_400_000;
    let in_day = unix_ms % 86_400_000;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01.
    let z = i64::try_from(days).unwrap_or(0) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_iso_timestamps() {
        assert_eq!(iso_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso_timestamp(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(iso_timestamp(1_795_000_000_000), "2026-11-18T11:06:40.000Z");
    }

    #[test]
    fn event_fields_follow_the_fixed_keys_and_cannot_replace_them() {
        let mut fields = Map::new();
        fields.insert("site".into(), Value::String("goodcity".into()));
        fields.insert("level".into(), Value::String("spoofed".into()));
        let line = format_line("info", "Socket connected", fields);
        let parsed: Value = serde_json::from_str(&line).expect("valid JSON");
        assert_eq!(parsed["level"], "info");
        assert_eq!(parsed["message"], "Socket connected");
        assert_eq!(parsed["site"], "goodcity");
        assert!(line.starts_with("{\"timestamp\":"));
    }
}
