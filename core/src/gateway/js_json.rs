//! JSON as Node.js (V8) parses and prints it, where the original's observable output depends on
//! it: `JSON.parse` error texts (they reach clients as `Auth error: SyntaxError: …` and appear
//! in `/send` 400 answers) and `JSON.stringify` output (the payloads clients receive).
//!
//! - [`parse`] accepts exactly what `JSON.parse` accepts and, for anything else, returns the
//!   message Node 22's `JSON.parse` gives, e.g. `Unexpected end of JSON input`,
//!   `Unexpected token '<', "<html>no</html>" is not valid JSON`, or
//!   `Expected ',' or ']' after array element in JSON at position 2 (line 1 column 3)`.
//!   Positions count UTF-16 code units, as in JavaScript.
//! - [`JsValue::write_json`] prints like `JSON.stringify`: numbers in JavaScript's shortest
//!   form (`1`, `1e+21`, `1.5e-7`; non-finite as `null`), object keys that are array indices
//!   first in ascending order and then the others in insertion order (JavaScript's own-key
//!   order), strings escaped as V8 does.
//!
//! Nesting deeper than [`MAX_DEPTH`] is refused with [`JsonError::TooDeep`] instead of
//! exhausting the stack.

use std::collections::HashMap;
use std::fmt::Write as _;

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 512;

/// A JSON value as JavaScript holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum JsValue {
    /// `null`
    Null,
    /// `true` / `false`
    Bool(bool),
    /// A number (a double, as in JavaScript).
    Number(f64),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<JsValue>),
    /// An object: keys in insertion order, unique (a repeated key replaced the earlier value
    /// in place, as `JSON.parse` does).
    Object(Vec<(String, JsValue)>),
}

/// Why [`parse`] refused its input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// A `SyntaxError`; the text is V8's message without the `SyntaxError: ` prefix.
    #[error("SyntaxError: {0}")]
    Syntax(String),
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl JsValue {
    /// The compact `JSON.stringify` text of this value.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    /// Appends the compact `JSON.stringify` text of this value.
    pub fn write_json(&self, out: &mut String) {
        match self {
            JsValue::Null => out.push_str("null"),
            JsValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            JsValue::Number(n) => write_number(*n, out),
            JsValue::String(s) => write_string(s, out),
            JsValue::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            JsValue::Object(entries) => {
                out.push('{');
                let mut first = true;
                for (key, value) in ordered_entries(entries) {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    write_string(key, out);
                    out.push(':');
                    value.write_json(out);
                }
                out.push('}');
            }
        }
    }
}

/// Own-key order of a JavaScript object: array-index keys ascending, then the rest in
/// insertion order.
fn ordered_entries(entries: &[(String, JsValue)]) -> impl Iterator<Item = &(String, JsValue)> {
    let mut indexed: Vec<(u32, &(String, JsValue))> = entries
        .iter()
        .filter_map(|entry| array_index(&entry.0).map(|i| (i, entry)))
        .collect();
    indexed.sort_by_key(|(i, _)| *i);
    indexed.into_iter().map(|(_, entry)| entry).chain(
        entries
            .iter()
            .filter(|entry| array_index(&entry.0).is_none()),
    )
}

/// The array index a key names (`"0"`, `"17"`; not `"01"`, not ≥ 2³²−1).
pub fn array_index(key: &str) -> Option<u32> {
    if key.is_empty() || key.len() > 10 || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if key.len() > 1 && key.starts_with('0') {
        return None;
    }
    key.parse::<u64>()
        .ok()
        .filter(|n| *n < u64::from(u32::MAX))
        .map(|n| n as u32)
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `Number.prototype.toString()` for a double (radix 10), `null` for non-finite values.
pub fn write_number(n: f64, out: &mut String) {
    if !n.is_finite() {
        out.push_str("null");
        return;
    }
    if n == 0.0 {
        out.push('0');
        return;
    }
    if n < 0.0 {
        out.push('-');
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, like ECMAScript's algorithm.
    let scientific = format!("{:e}", n.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let k = digits.len() as i64;
    let n_pos = exponent.parse::<i64>().unwrap_or(0) + 1;
    if k <= n_pos && n_pos <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n_pos - k) as usize));
    } else if 0 < n_pos && n_pos <= 21 {
        out.push_str(&digits[..n_pos as usize]);
        out.push('.');
        out.push_str(&digits[n_pos as usize..]);
    } else if -6 < n_pos && n_pos <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n_pos) as usize));
        out.push_str(&digits);
    } else {
        out.push_str(&digits[..1]);
        if k > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = n_pos - 1;
        let _ = write!(out, "e{}{}", if e >= 0 { "+" } else { "-" }, e.abs());
    }
}

/// Parses `bytes` as `JSON.parse` would after body-parser decoded them (UTF-8, invalid bytes
/// as U+FFFD, a leading byte-order mark dropped).
pub fn parse_bytes(bytes: &[u8]) -> Result<JsValue, JsonError> {
    let text = String::from_utf8_lossy(bytes);
    parse(text.strip_prefix('\u{feff}').unwrap_or(&text))
}

/// Parses `text` exactly as `JSON.parse` does. See the module docs for the error texts.
pub fn parse(text: &str) -> Result<JsValue, JsonError> {
    let mut parser = Parser {
        source: text,
        chars: text.chars().collect(),
        at: 0,
    };
    let value = parser.value(0)?;
    parser.skip_whitespace();
    if parser.at < parser.chars.len() {
        return Err(parser.error(Some(UNEXPECTED_NON_WHITESPACE)));
    }
    Ok(value)
}

const UNEXPECTED_NON_WHITESPACE: &str = "Unexpected non-whitespace character after JSON";
const EXPECTED_COMMA_OR_RBRACK: &str = "Expected ',' or ']' after array element in JSON";
const EXPECTED_COMMA_OR_RBRACE: &str = "Expected ',' or '}' after property value in JSON";
const EXPECTED_PROPERTY_OR_RBRACE: &str = "Expected property name or '}' in JSON";
const EXPECTED_DOUBLE_QUOTED_PROPERTY: &str = "Expected double-quoted property name in JSON";
const EXPECTED_COLON: &str = "Expected ':' after property name in JSON";
const UNTERMINATED_STRING: &str = "Unterminated string in JSON";
const BAD_CONTROL_CHARACTER: &str = "Bad control character in string literal in JSON";
const BAD_UNICODE_ESCAPE: &str = "Bad Unicode escape in JSON";
const BAD_ESCAPED_CHARACTER: &str = "Bad escaped character in JSON";
const NO_NUMBER_AFTER_MINUS: &str = "No number after minus sign in JSON";
const UNTERMINATED_FRACTION: &str = "Unterminated fractional number in JSON";
const EXPONENT_MISSING_NUMBER: &str = "Exponent part is missing a number in JSON";

/// V8's context width around an unexpected token.
const CONTEXT: usize = 10;

struct Parser<'a> {
    source: &'a str,
    chars: Vec<char>,
    at: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.at += 1;
        }
    }

    fn utf16_position(&self, index: usize) -> usize {
        self.chars[..index.min(self.chars.len())]
            .iter()
            .map(|c| c.len_utf16())
            .sum()
    }

    /// V8's `ReportUnexpectedToken` at the current position: `message` when the caller gives
    /// one, otherwise by the kind of token found there.
    fn error(&self, message: Option<&str>) -> JsonError {
        let position = self.utf16_position(self.at);
        let located = |text: &str| {
            let before = &self.chars[..self.at.min(self.chars.len())];
            let line = 1 + before.iter().filter(|c| **c == '\n').count();
            let line_start = before
                .iter()
                .rposition(|c| *c == '\n')
                .map_or(0, |i| self.utf16_position(i + 1));
            let column = position - line_start + 1;
            JsonError::Syntax(format!(
                "{text} at position {position} (line {line} column {column})"
            ))
        };
        if let Some(message) = message {
            return located(message);
        }
        match self.peek() {
            None => JsonError::Syntax("Unexpected end of JSON input".to_owned()),
            Some('0'..='9' | '-') => located("Unexpected number in JSON"),
            Some('"') => located("Unexpected string in JSON"),
            Some(token) => JsonError::Syntax(self.unexpected_token(token)),
        }
    }

    fn unexpected_token(&self, token: char) -> String {
        if matches!(
            self.source,
            "undefined" | "NaN" | "Infinity" | "[object Object]"
        ) {
            return format!("\"{}\" is not valid JSON", self.source);
        }
        let length = self.chars.len();
        if length <= 2 * CONTEXT + 1 {
            return format!(
                "Unexpected token '{token}', \"{}\" is not valid JSON",
                self.source
            );
        }
        let slice = |from: usize, to: usize| -> String {
            self.chars[from..to.min(length)].iter().collect()
        };
        let at = self.at;
        if at < CONTEXT {
            format!(
                "Unexpected token '{token}', \"{}\"... is not valid JSON",
                slice(0, at + CONTEXT)
            )
        } else if at < length - CONTEXT {
            format!(
                "Unexpected token '{token}', ...\"{}\"... is not valid JSON",
                slice(at - CONTEXT, at + CONTEXT)
            )
        } else {
            format!(
                "Unexpected token '{token}', ...\"{}\" is not valid JSON",
                slice(at - CONTEXT, length)
            )
        }
    }

    fn value(&mut self, depth: usize) -> Result<JsValue, JsonError> {
        if depth > MAX_DEPTH {
            return Err(JsonError::TooDeep);
        }
        self.skip_whitespace();
        match self.peek() {
            Some('"') => self.string().map(JsValue::String),
            Some('-' | '0'..='9') => self.number(),
            Some('t') => self.literal("true", JsValue::Bool(true)),
            Some('f') => self.literal("false", JsValue::Bool(false)),
            Some('n') => self.literal("null", JsValue::Null),
            Some('[') => self.array(depth),
            Some('{') => self.object(depth),
            _ => Err(self.error(None)),
        }
    }

    fn literal(&mut self, word: &str, value: JsValue) -> Result<JsValue, JsonError> {
        for expected in word.chars() {
            if self.peek() != Some(expected) {
                return Err(self.error(None));
            }
            self.at += 1;
        }
        Ok(value)
    }

    fn array(&mut self, depth: usize) -> Result<JsValue, JsonError> {
        self.at += 1;
        let mut items = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some(']') {
            self.at += 1;
            return Ok(JsValue::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_whitespace();
            match self.peek() {
                Some(',') => self.at += 1,
                Some(']') => {
                    self.at += 1;
                    return Ok(JsValue::Array(items));
                }
                _ => return Err(self.error(Some(EXPECTED_COMMA_OR_RBRACK))),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<JsValue, JsonError> {
        self.at += 1;
        let mut entries: Vec<(String, JsValue)> = Vec::new();
        self.skip_whitespace();
        if self.peek() == Some('}') {
            self.at += 1;
            return Ok(JsValue::Object(entries));
        }
        let mut positions: HashMap<String, usize> = HashMap::new();
        let mut expecting = EXPECTED_PROPERTY_OR_RBRACE;
        loop {
            self.skip_whitespace();
            if self.peek() != Some('"') {
                return Err(self.error(Some(expecting)));
            }
            let key = self.string()?;
            self.skip_whitespace();
            if self.peek() != Some(':') {
                return Err(self.error(Some(EXPECTED_COLON)));
            }
            self.at += 1;
            let value = self.value(depth + 1)?;
            // A map from key to position keeps big objects linear (a 100 kB body may hold
            // thousands of keys, and it is parsed before the apiKey is checked).
            match positions.get(&key) {
                Some(&at) => entries[at].1 = value,
                None => {
                    positions.insert(key.clone(), entries.len());
                    entries.push((key, value));
                }
            }
            self.skip_whitespace();
            match self.peek() {
                Some(',') => {
                    self.at += 1;
                    expecting = EXPECTED_DOUBLE_QUOTED_PROPERTY;
                }
                Some('}') => {
                    self.at += 1;
                    return Ok(JsValue::Object(entries));
                }
                _ => return Err(self.error(Some(EXPECTED_COMMA_OR_RBRACE))),
            }
        }
    }

    fn string(&mut self) -> Result<String, JsonError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error(Some(UNTERMINATED_STRING)));
            };
            match c {
                '"' => {
                    self.at += 1;
                    return Ok(out);
                }
                '\\' => {
                    self.at += 1;
                    let escaped = match self.peek() {
                        // V8 reports a backslash at the very end as the input ending.
                        None => return Err(self.error(None)),
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('/') => '/',
                        Some('b') => '\u{8}',
                        Some('f') => '\u{c}',
                        Some('n') => '\n',
                        Some('r') => '\r',
                        Some('t') => '\t',
                        Some('u') => {
                            let unit = self.hex4()?;
                            self.unicode_escape(unit)?
                        }
                        Some(_) => return Err(self.error(Some(BAD_ESCAPED_CHARACTER))),
                    };
                    out.push(escaped);
                    self.at += 1;
                }
                c if (c as u32) < 0x20 => return Err(self.error(Some(BAD_CONTROL_CHARACTER))),
                c => {
                    out.push(c);
                    self.at += 1;
                }
            }
        }
    }

    /// Reads the 4 hex digits after `\u` (the cursor is on the `u`) and leaves the cursor on
    /// the last digit.
    fn hex4(&mut self) -> Result<u32, JsonError> {
        let mut unit = 0;
        for _ in 0..4 {
            self.at += 1;
            match self.peek().and_then(|c| c.to_digit(16)) {
                Some(digit) => unit = unit * 16 + digit,
                None => return Err(self.error(Some(BAD_UNICODE_ESCAPE))),
            }
        }
        Ok(unit)
    }

    /// Joins a surrogate pair written as two escapes; a lone surrogate (legal in JavaScript,
    /// not in a Rust string) becomes U+FFFD.
    fn unicode_escape(&mut self, unit: u32) -> Result<char, JsonError> {
        if (0xD800..0xDC00).contains(&unit)
            && self.chars.get(self.at + 1) == Some(&'\\')
            && self.chars.get(self.at + 2) == Some(&'u')
        {
            let saved = self.at;
            self.at += 2;
            let low = self.hex4()?;
            if (0xDC00..0xE000).contains(&low) {
                let code = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                return Ok(char::from_u32(code).unwrap_or('\u{fffd}'));
            }
            self.at = saved;
        }
        Ok(char::from_u32(unit).unwrap_or('\u{fffd}'))
    }

    fn number(&mut self) -> Result<JsValue, JsonError> {
        let start = self.at;
        if self.peek() == Some('-') {
            self.at += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.error(Some(NO_NUMBER_AFTER_MINUS)));
            }
        }
        if self.peek() == Some('0') {
            self.at += 1;
            // V8 reports a digit after a leading zero as an unexpected number, whatever the
            // context.
            if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.error(None));
            }
        } else {
            self.digits();
        }
        if self.peek() == Some('.') {
            self.at += 1;
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.error(Some(UNTERMINATED_FRACTION)));
            }
            self.digits();
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.at += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.at += 1;
            }
            if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
                return Err(self.error(Some(EXPONENT_MISSING_NUMBER)));
            }
            self.digits();
        }
        let text: String = self.chars[start..self.at].iter().collect();
        Ok(JsValue::Number(text.parse::<f64>().unwrap_or(f64::NAN)))
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
    }
}

/// body-parser's `strict` check: the first non-whitespace character must be `{` or `[`.
/// Returns the `SyntaxError` message body-parser produced for a violation (it re-parses the
/// body with everything from that character on replaced by `#`, then puts the original text
/// back into the message), or `None` when the body passes.
pub fn strict_violation(text: &str) -> Option<String> {
    // Every `/send` body passes through here: the usual answer (an object) needs no copy.
    let Some(first) = text
        .chars()
        .find(|c| !matches!(c, ' ' | '\t' | '\n' | '\r'))
    else {
        // Only whitespace: body-parser parses the empty string.
        return Some("Unexpected end of JSON input".to_owned());
    };
    if matches!(first, '{' | '[') {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    // Only whitespace comes before it, so its first occurrence is where it is.
    let index = chars.iter().position(|c| *c == first).unwrap_or(0);
    let partial: String = chars[..index]
        .iter()
        .copied()
        .chain(std::iter::repeat_n('#', chars.len() - index))
        .collect();
    let message = match parse(&partial) {
        Err(JsonError::Syntax(message)) => message,
        _ => return Some("strict violation".to_owned()),
    };
    // Each run of `#` becomes the original text from `index`, of the run's length.
    let mut out = String::with_capacity(message.len());
    let mut rest = message.as_str();
    while let Some(start) = rest.find('#') {
        out.push_str(&rest[..start]);
        let run = rest[start..].chars().take_while(|c| *c == '#').count();
        out.extend(chars[index..(index + run).min(chars.len())].iter());
        rest = &rest[start + run..];
    }
    out.push_str(rest);
    Some(out)
}
