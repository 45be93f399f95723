//! Typed reading of one YAML mapping with errors that name the file, the section and the key.
//!
//! The original read its YAML with js-yaml and used values with JavaScript's truthiness, so
//! a key whose value is `null` (`key:` with nothing after it) counts as absent here too.

use serde_yaml::{Mapping, Value};

use super::ConfigError;

/// Parses a whole YAML document; an empty document is `null`. Merge keys (`<<:`) are applied,
/// as js-yaml did.
pub(super) fn parse_document(path: &str, text: &str) -> Result<Value, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let mut value: Value = serde_yaml::from_str(text).map_err(|e| ConfigError {
        source_name: path.to_owned(),
        message: format!("not valid YAML: {e}"),
    })?;
    value.apply_merge().map_err(|e| ConfigError {
        source_name: path.to_owned(),
        message: format!("bad merge key: {e}"),
    })?;
    Ok(value)
}

/// How a value is described in error messages.
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// One mapping of one source, with the words that locate it (`production`, `site "goodcity"`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Section<'a> {
    /// File path, or `environment`.
    pub source: &'a str,
    /// Where in the file, e.g. `production.io`.
    pub context: &'a str,
    /// The mapping.
    pub map: &'a Mapping,
}

impl<'a> Section<'a> {
    /// An error about `key` of this section: `<source>: <context>: <key> <problem>`.
    pub fn error(&self, key: &str, problem: impl std::fmt::Display) -> ConfigError {
        ConfigError {
            source_name: self.source.to_owned(),
            message: format!("{}: {key} {problem}", self.context),
        }
    }

    /// The value of `key`, `None` when absent or null.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// A text value. Numbers and booleans are refused: every text key of the original is a
    /// name, a URL or a word.
    pub fn string(&self, key: &str) -> Result<Option<&'a str>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(key, format!("must be text, got {}", describe(other)))),
        }
    }

    /// A non-negative whole number, written as a number or as digits in a string (a `"3600"`
    /// worked in the original too).
    pub fn whole_number(&self, key: &str, what: &str) -> Result<Option<u64>, ConfigError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let parsed = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => parse_whole_number(s),
            _ => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| self.error(key, format!("must be {what}, got {}", describe(value))))
    }

    /// A boolean.
    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.error(
                key,
                format!("must be true or false, got {}", describe(other)),
            )),
        }
    }

    /// A nested mapping.
    pub fn mapping(&self, key: &str) -> Result<Option<&'a Mapping>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Mapping(m)) => Ok(Some(m)),
            Some(other) => {
                Err(self.error(key, format!("must be a mapping, got {}", describe(other))))
            }
        }
    }

    /// Adds one warning per key that is neither in `known` nor in `retired`.
    /// `retired` pairs a key the original (or its README) once used with why it is ignored.
    pub fn warn_unknown(
        &self,
        known: &[&str],
        retired: &[(&str, &str)],
        warnings: &mut Vec<String>,
    ) {
        for key in self.map.keys() {
            let name = match key {
                Value::String(s) => s.clone(),
                other => describe(other),
            };
            if known.contains(&name.as_str()) {
                continue;
            }
            let why = retired
                .iter()
                .find(|(retired_key, _)| *retired_key == name)
                .map_or("is not a known key and is ignored", |(_, why)| why);
            warnings.push(format!("{}: {}: {name} {why}", self.source, self.context));
        }
    }
}

/// Digits only (surrounding spaces allowed), no sign, no fraction, fits in `u64`.
pub(super) fn parse_whole_number(text: &str) -> Option<u64> {
    let digits = text.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}
