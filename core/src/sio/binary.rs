//! Binary attachments: placeholders on the wire, binary values in the application's data.
//!
//! On the wire every binary value inside the args is replaced, depth first, by
//! `{"_placeholder":true,"num":N}` and travels as the N-th Engine.IO binary message after the
//! packet. [`serde_json::Value`] has no bytes type, so inside this crate a binary value is the
//! object `{"_binary":"<standard base64>"}` (see [`binary_value`] / [`as_binary`]): decoding
//! turns placeholders into such objects, encoding turns such objects back into placeholders.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde_json::{Map, Value};

/// The key of the single-key object that stands for binary data.
pub const BINARY_KEY: &str = "_binary";

/// The value standing for `bytes`.
pub fn binary_value(bytes: &[u8]) -> Value {
    let mut map = Map::with_capacity(1);
    map.insert(BINARY_KEY.to_owned(), Value::String(BASE64.encode(bytes)));
    Value::Object(map)
}

/// The bytes `value` stands for, if it is a binary value.
pub fn as_binary(value: &Value) -> Option<Vec<u8>> {
    let map = value.as_object()?;
    if map.len() != 1 {
        return None;
    }
    BASE64.decode(map.get(BINARY_KEY)?.as_str()?).ok()
}

/// Replaces binary values by placeholders, depth first; returns the attachments in order.
pub fn deconstruct(value: &mut Value, attachments: &mut Vec<Bytes>) {
    if let Some(bytes) = as_binary(value) {
        let mut placeholder = Map::with_capacity(2);
        placeholder.insert("_placeholder".to_owned(), Value::Bool(true));
        placeholder.insert("num".to_owned(), Value::from(attachments.len()));
        attachments.push(Bytes::from(bytes));
        *value = Value::Object(placeholder);
        return;
    }
    match value {
        Value::Array(items) => items.iter_mut().for_each(|v| deconstruct(v, attachments)),
        Value::Object(map) => map.values_mut().for_each(|v| deconstruct(v, attachments)),
        _ => {}
    }
}

/// A placeholder refers to an attachment that does not exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("placeholder refers to a missing attachment")]
pub struct PlaceholderError;

/// Replaces placeholders by binary values.
pub fn reconstruct(value: &mut Value, attachments: &[Bytes]) -> Result<(), PlaceholderError> {
    if let Value::Object(map) = value
        && map.get("_placeholder") == Some(&Value::Bool(true))
    {
        let index = map
            .get("num")
            .and_then(Value::as_u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or(PlaceholderError)?;
        let bytes = attachments.get(index).ok_or(PlaceholderError)?;
        *value = binary_value(bytes);
        return Ok(());
    }
    match value {
        Value::Array(items) => items
            .iter_mut()
            .try_for_each(|v| reconstruct(v, attachments)),
        Value::Object(map) => map
            .values_mut()
            .try_for_each(|v| reconstruct(v, attachments)),
        _ => Ok(()),
    }
}

/// True when `value` holds a binary value anywhere.
pub fn contains_binary(value: &Value) -> bool {
    if as_binary(value).is_some() {
        return true;
    }
    match value {
        Value::Array(items) => items.iter().any(contains_binary),
        Value::Object(map) => map.values().any(contains_binary),
        _ => false,
    }
}
