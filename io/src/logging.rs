//! Logs: one JSON object per line on stdout, `{"timestamp","level","message",...fields}`, level
//! names in lowercase (`debug`, `info`, `warn`, `error`), filtered `RUST_LOG`-style (default
//! `info`).
//!
//! Every line is written by [`JsonLines`], the tracing-subscriber layer, so one subscriber and
//! one filter see every line. Application events ([`AppEvent`]) are the hot path (three lines
//! per delivered message), so [`log_event`] asks tracing only whether their level is enabled for
//! target `courier` and then hands the event straight to the installed [`JsonLines`], which
//! formats it into a reused per-thread buffer: no tracing event, no `serde_json` values.
//!
//! Lines are written whole, one `write` per line, unless a [`LineBatch`] is open on the thread:
//! then they collect in the buffer and go out in one `write` when the last batch closes (or the
//! buffer grows past [`BATCH_FLUSH_BYTES`]). The driver opens one batch per pass over its inputs
//! and closes it before it waits again, so no line waits for the next input.
//!
//! The line format is the one `serde_json` produced for an insertion-ordered map: the three fixed
//! keys first, then the fields in order; a field named like a fixed key is dropped, and a
//! repeated field keeps its first position with its last value.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use courier_core::net::{AppEvent, FieldValue, Level};
use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::runtime::Runtime;

/// Installs the JSON logger as the global subscriber, stamping lines with `runtime`'s wall
/// clock. `filter` is a `RUST_LOG`-style directive string (`None`: `info`). Harmless when a
/// subscriber is already installed (tests).
pub fn init<R: Runtime>(runtime: &R, filter: Option<&str>) {
    let filter = filter
        .and_then(|text| EnvFilter::try_new(text).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let runtime = runtime.clone();
    let clock = WallClock::new(move || runtime.unix_ms());
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(JsonLines::stdout(clock))
        .try_init();
}

/// The clock log lines are stamped with, in Unix milliseconds: the runtime's
/// ([`Runtime::unix_ms`]), or a fixed one in tests.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// A clock that reads `now`.
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> WallClock {
        WallClock(Arc::new(now))
    }
}

impl std::fmt::Debug for WallClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WallClock")
    }
}

/// The lowest level enabled for target `courier` (`Error` when even that is off): the gateway
/// builds no event below it (see `Gateway::set_event_level`).
pub fn min_enabled_level() -> Level {
    [Level::Debug, Level::Info, Level::Warn]
        .into_iter()
        .find(|level| enabled(*level))
        .unwrap_or(Level::Error)
}

fn enabled(level: Level) -> bool {
    match level {
        Level::Debug => tracing::enabled!(target: "courier", tracing::Level::DEBUG),
        Level::Info => tracing::enabled!(target: "courier", tracing::Level::INFO),
        Level::Warn => tracing::enabled!(target: "courier", tracing::Level::WARN),
        Level::Error => tracing::enabled!(target: "courier", tracing::Level::ERROR),
    }
}

/// Writes one application event, if its level is enabled for target `courier`.
pub fn log_event(event: &AppEvent) {
    if !enabled(event.level) {
        // Nothing is formatted for a line nobody writes.
        return;
    }
    let written = tracing::dispatcher::get_default(|dispatch| {
        dispatch.downcast_ref::<JsonLines>().map(|lines| {
            lines.write(level_name(event.level), event.message, &event.fields);
        })
    });
    if written.is_none() {
        log_through_tracing(event);
    }
}

/// For a subscriber without [`JsonLines`]: the event as a tracing event, its fields as one JSON
/// object in the field `app_fields` (tracing's macros cannot name fields at run time).
fn log_through_tracing(event: &AppEvent) {
    let mut app_fields = String::from("{");
    let mut first = true;
    for_each_unique_field(&event.fields, |name, value| {
        if !first {
            app_fields.push(',');
        }
        first = false;
        write_json_string(&mut app_fields, name);
        app_fields.push(':');
        write_json_value(&mut app_fields, value);
    });
    app_fields.push('}');
    let app_fields = app_fields.as_str();
    let message = event.message;
    match event.level {
        Level::Debug => tracing::debug!(target: "courier", app_fields, "{message}"),
        Level::Info => tracing::info!(target: "courier", app_fields, "{message}"),
        Level::Warn => tracing::warn!(target: "courier", app_fields, "{message}"),
        Level::Error => tracing::error!(target: "courier", app_fields, "{message}"),
    }
}

/// The field [`log_through_tracing`] carries an event's fields in.
const APP_FIELDS: &str = "app_fields";

/// The keys every line starts with; a field of the same name is dropped.
const FIXED_KEYS: [&str; 3] = ["timestamp", "level", "message"];

/// Buffered lines beyond this many bytes are written at once, even inside a [`LineBatch`].
pub const BATCH_FLUSH_BYTES: usize = 64 * 1024;

/// A buffer that grew past this (one huge line, a long batch) is not kept for reuse.
const KEPT_CAPACITY: usize = 1024 * 1024;

/// Calls `visit` once per distinct field name, in order of first appearance, with the value of
/// that name's last appearance, skipping the [`FIXED_KEYS`] (what an insertion-ordered map
/// filled with `insert` holds).
fn for_each_unique_field<N: AsRef<str>>(
    fields: &[(N, FieldValue)],
    mut visit: impl FnMut(&str, &FieldValue),
) {
    for (index, (name, value)) in fields.iter().enumerate() {
        let name = name.as_ref();
        if FIXED_KEYS.contains(&name) {
            continue;
        }
        let seen_before = fields[..index]
            .iter()
            .any(|(other, _)| other.as_ref() == name);
        if seen_before {
            continue;
        }
        let last_value = fields[index + 1..]
            .iter()
            .rev()
            .find(|(other, _)| other.as_ref() == name)
            .map_or(value, |(_, later)| later);
        visit(name, last_value);
    }
}

/// Appends one line (with its newline) for an event at `unix_ms`.
fn write_line<N: AsRef<str>>(
    out: &mut String,
    unix_ms: u64,
    level: &str,
    message: &str,
    fields: &[(N, FieldValue)],
) {
    out.push_str("{\"timestamp\":\"");
    courier_core::iso8601::write(out, unix_ms);
    out.push_str("\",\"level\":");
    write_json_string(out, level);
    out.push_str(",\"message\":");
    write_json_string(out, message);
    for_each_unique_field(fields, |name, value| {
        out.push(',');
        write_json_string(out, name);
        out.push(':');
        write_json_value(out, value);
    });
    out.push_str("}\n");
}

/// The line for one event at `unix_ms`, as written (without the newline).
pub fn format_line<N: AsRef<str>>(
    unix_ms: u64,
    level: &str,
    message: &str,
    fields: &[(N, FieldValue)],
) -> String {
    let mut line = String::new();
    write_line(&mut line, unix_ms, level, message, fields);
    line.pop();
    line
}

fn write_json_value(out: &mut String, value: &FieldValue) {
    match value {
        FieldValue::Str(text) => write_json_string(out, text),
        FieldValue::U64(n) => {
            let _ = write!(out, "{n}");
        }
        FieldValue::I64(n) => {
            let _ = write!(out, "{n}");
        }
        FieldValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        FieldValue::Millis(d) => {
            let micros = d.as_micros();
            let _ = write!(out, "{}.{:03}", micros / 1000, micros % 1000);
        }
    }
}

/// Appends `text` as a JSON string literal, escaped as `serde_json` does: `"` and `\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx` (lowercase hex);
/// everything else, non-ASCII included, as is.
pub fn write_json_string(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let mut unescaped_from = 0;
    for (index, &byte) in text.as_bytes().iter().enumerate() {
        let short = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Every byte escaped is ASCII, so `index` is a character boundary.
        out.push_str(&text[unescaped_from..index]);
        unescaped_from = index + 1;
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        } else {
            out.push_str(short);
        }
    }
    out.push_str(&text[unescaped_from..]);
    out.push('"');
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
    clock: WallClock,
}

/// Where lines go.
#[derive(Clone)]
enum Sink {
    Stdout,
    Writer(Arc<Mutex<dyn Write + Send>>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Sink::Stdout => f.write_str("Stdout"),
            Sink::Writer(_) => f.write_str("Writer"),
        }
    }
}

impl Sink {
    fn is(&self, other: &Sink) -> bool {
        match (self, other) {
            (Sink::Stdout, Sink::Stdout) => true,
            (Sink::Writer(a), Sink::Writer(b)) => std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b)),
            _ => false,
        }
    }

    /// Writes whole lines in one call. A closed stdout is no reason to stop serving.
    fn write_all(&self, bytes: &[u8]) {
        match self {
            Sink::Stdout => {
                let mut stdout = std::io::stdout().lock();
                // Stdout is line-buffered: text ending in a newline goes out in one `write`.
                let _ = stdout.write_all(bytes);
                let _ = stdout.flush();
            }
            Sink::Writer(writer) => {
                if let Ok(mut writer) = writer.lock() {
                    let _ = writer.write_all(bytes);
                    let _ = writer.flush();
                }
            }
        }
    }
}

impl JsonLines {
    /// Lines to stdout.
    pub fn stdout(clock: WallClock) -> JsonLines {
        JsonLines {
            sink: Sink::Stdout,
            clock,
        }
    }

    /// Lines appended to `buffer` (for tests).
    pub fn to_buffer(buffer: Arc<Mutex<Vec<u8>>>, clock: WallClock) -> JsonLines {
        JsonLines {
            sink: Sink::Writer(buffer),
            clock,
        }
    }

    /// Lines written to `writer`, whole lines per `write_all` call (for tests).
    pub fn to_writer(writer: Arc<Mutex<dyn Write + Send>>, clock: WallClock) -> JsonLines {
        JsonLines {
            sink: Sink::Writer(writer),
            clock,
        }
    }

    /// Formats one line, now, and writes it (or buffers it in an open [`LineBatch`]).
    fn write<N: AsRef<str>>(&self, level: &str, message: &str, fields: &[(N, FieldValue)]) {
        let unix_ms = (self.clock.0)();
        let buffered = THREAD_LINES.try_with(|lines| {
            let Ok(mut lines) = lines.try_borrow_mut() else {
                return false;
            };
            if let Some(pending) = &lines.sink
                && !pending.is(&self.sink)
            {
                lines.flush();
            }
            if lines.sink.is_none() {
                lines.sink = Some(self.sink.clone());
            }
            write_line(&mut lines.text, unix_ms, level, message, fields);
            if lines.open_batches == 0 || lines.text.len() >= BATCH_FLUSH_BYTES {
                lines.flush();
            }
            true
        });
        if buffered != Ok(true) {
            // The thread is ending, or a line is written from within a write: no reuse.
            let mut line = String::new();
            write_line(&mut line, unix_ms, level, message, fields);
            self.sink.write_all(line.as_bytes());
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for JsonLines {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = FieldCollector::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        if !metadata.target().starts_with("courier") {
            let target = FieldValue::Str(Cow::Owned(metadata.target().to_owned()));
            visitor.fields.push((Cow::Borrowed("target"), target));
        }
        self.write(
            tracing_level_name(metadata.level()),
            &visitor.message,
            &visitor.fields,
        );
    }
}

/// The message and the fields of one tracing event, in order.
#[derive(Default)]
struct FieldCollector {
    message: String,
    fields: Vec<(Cow<'static, str>, FieldValue)>,
}

impl FieldCollector {
    fn push(&mut self, field: &Field, value: FieldValue) {
        self.fields.push((Cow::Borrowed(field.name()), value));
    }
}

impl Visit for FieldCollector {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let text = format!("{value:?}");
        if field.name() == "message" {
            self.message = text;
        } else {
            self.push(field, FieldValue::Str(Cow::Owned(text)));
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.message);
        } else if field.name() == APP_FIELDS {
            // An application event that reached this layer as a tracing event.
            if let Ok(Value::Object(members)) = serde_json::from_str(value) {
                for (name, member) in members {
                    let member = match member {
                        Value::String(text) => FieldValue::Str(Cow::Owned(text)),
                        Value::Bool(b) => FieldValue::Bool(b),
                        Value::Number(n) if n.is_u64() => FieldValue::U64(n.as_u64().unwrap_or(0)),
                        Value::Number(n) if n.is_i64() => FieldValue::I64(n.as_i64().unwrap_or(0)),
                        other => FieldValue::Str(Cow::Owned(other.to_string())),
                    };
                    self.fields.push((Cow::Owned(name), member));
                }
            }
        } else {
            self.push(field, FieldValue::Str(Cow::Owned(value.to_owned())));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(field, FieldValue::U64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, FieldValue::I64(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, FieldValue::Bool(value));
    }
}

/// Per thread: the line buffer and the batches open on the thread.
struct ThreadLines {
    /// Formatted lines not yet written (between writes: only inside a batch).
    text: String,
    /// Where `text` goes.
    sink: Option<Sink>,
    /// [`LineBatch`]es alive on this thread.
    open_batches: usize,
}

impl ThreadLines {
    fn flush(&mut self) {
        if let Some(sink) = &self.sink
            && !self.text.is_empty()
        {
            sink.write_all(self.text.as_bytes());
        }
        self.text.clear();
        if self.text.capacity() > KEPT_CAPACITY {
            self.text = String::new();
        }
        self.sink = None;
    }
}

impl Drop for ThreadLines {
    fn drop(&mut self) {
        self.flush();
    }
}

thread_local! {
    static THREAD_LINES: RefCell<ThreadLines> = const {
        RefCell::new(ThreadLines { text: String::new(), sink: None, open_batches: 0 })
    };
}

/// While alive, lines logged on this thread are collected and written together when the last
/// batch of the thread closes: one `write` for a whole driver pass instead of one per line.
///
/// Not `Send`: a batch lives on the thread that opened it, and cannot be held across an `await`
/// of a task that may move between threads (nor delay lines while the task sleeps).
#[derive(Debug)]
#[must_use = "lines are batched only while the batch is alive"]
pub struct LineBatch {
    _on_this_thread: PhantomData<*const ()>,
}

/// Opens a [`LineBatch`] on this thread.
pub fn batch() -> LineBatch {
    let _ = THREAD_LINES.try_with(|lines| {
        if let Ok(mut lines) = lines.try_borrow_mut() {
            lines.open_batches += 1;
        }
    });
    LineBatch {
        _on_this_thread: PhantomData,
    }
}

impl Drop for LineBatch {
    fn drop(&mut self) {
        let _ = THREAD_LINES.try_with(|lines| {
            if let Ok(mut lines) = lines.try_borrow_mut() {
                lines.open_batches = lines.open_batches.saturating_sub(1);
                if lines.open_batches == 0 {
                    lines.flush();
                }
            }
        });
    }
}

/// Writes the lines this thread has buffered now (before the process exits from inside a
/// batch).
pub fn flush() {
    let _ = THREAD_LINES.try_with(|lines| {
        if let Ok(mut lines) = lines.try_borrow_mut() {
            lines.flush();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_fields_follow_the_fixed_keys_and_cannot_replace_them() {
        let fields = [
            ("site", FieldValue::from("goodcity")),
            ("level", FieldValue::from("spoofed")),
            ("timestamp", FieldValue::Bool(true)),
        ];
        let line = format_line(0, "info", "Socket connected", &fields);
        assert_eq!(
            line,
            r#"{"timestamp":"1970-01-01T00:00:00.000Z","level":"info","message":"Socket connected","site":"goodcity"}"#
        );
    }

    #[test]
    fn a_repeated_field_keeps_its_first_place_and_its_last_value() {
        let fields = [
            ("a", FieldValue::U64(1)),
            ("b", FieldValue::I64(-2)),
            ("a", FieldValue::Bool(false)),
        ];
        let line = format_line(0, "warn", "m", &fields);
        assert!(
            line.ends_with(r#""message":"m","a":false,"b":-2}"#),
            "{line}"
        );
    }

    #[test]
    fn escapes_like_serde_json() {
        let mut out = String::new();
        write_json_string(&mut out, "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀/");
        assert_eq!(
            out,
            r#""a\"b\\c\n\r\t\b\f\u0000\u001f"#.to_owned() + "\u{7f}é😀/\""
        );
        assert_eq!(
            out,
            Value::String("a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}é😀/".into()).to_string()
        );
    }
}
