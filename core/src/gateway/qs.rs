//! The `qs` library's "extended" parsing as the original ran it: qs 6.15 under body-parser
//! 1.20.5's `urlencoded({extended: true})` for form bodies, and under Express's query parser
//! for query strings. `rooms[]=a&rooms[]=b`, `args[1][id]=5`, repeated keys collected into
//! arrays, every leaf a string.
//!
//! Ported from qs 6.15.4 (`lib/parse.js`, `lib/utils.js`) with the options those callers
//! passed (`allowPrototypes`, `depth`, `arrayLimit`, `parameterLimit`, `strictDepth` for
//! forms), corners included: an index at or past the array limit makes an object (an
//! "overflow" object that later `[]` values extend), sparse indices are compacted (`a[1]=x`
//! gives `["x"]`), bracket groups nest (`a[b[c]]`), a group past the depth is one literal key
//! (or, for forms, the 400 `The input exceeded the depth`), `__proto__` is dropped, and a plain
//! value merged into an object makes an array of both (`a[b]=1&a=c` gives
//! `[{"b":"1"},"c"]`). Values are decoded as qs does: `+` is a space, and a component that is
//! not valid percent-encoded UTF-8 is kept as written. The result was verified against qs
//! 6.15.4 on a corpus of inputs (`core/tests/fixtures/qs_forms.json`).

use super::js_json::{JsValue, array_index};

/// Limits for one parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QsOptions {
    /// Bracket groups turned into nesting.
    pub depth: usize,
    /// Indices below this make arrays; arrays longer than this become objects.
    pub array_limit: usize,
    /// Pairs read at most (the rest is ignored).
    pub parameter_limit: usize,
    /// A key nested deeper than `depth` is an error rather than one literal key.
    pub strict_depth: bool,
}

/// Express's query parser: qs defaults (depth 5, array limit 20, 1000 parameters).
pub const QUERY_OPTIONS: QsOptions = QsOptions {
    depth: 5,
    array_limit: 20,
    parameter_limit: 1000,
    strict_depth: false,
};

/// body-parser's `urlencoded({extended: true})` limit on parameters; more is a 413.
pub const FORM_PARAMETER_LIMIT: usize = 1000;

/// The options body-parser 1.20.5 passes to qs for a form body with `parameter_count` pairs:
/// depth 32 (strict), array limit `max(100, parameter_count)`.
pub fn form_options(parameter_count: usize) -> QsOptions {
    QsOptions {
        depth: 32,
        array_limit: parameter_count.max(100),
        parameter_limit: FORM_PARAMETER_LIMIT,
        strict_depth: true,
    }
}

/// body-parser's parameter count: the number of `&`-separated parts (`None` past `limit`).
pub fn parameter_count(body: &str, limit: usize) -> Option<usize> {
    let count = body.matches('&').count() + 1;
    (count <= limit).then_some(count)
}

/// A key nested deeper than the depth with `strict_depth` (body-parser answers 400
/// `The input exceeded the depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("The input exceeded the depth")]
pub struct DepthExceeded;

/// A JavaScript object as qs builds it: keys in JavaScript's own-key order (array indices
/// ascending first, then insertion order), plus qs's hidden "overflow" mark with the highest
/// index used.
#[derive(Debug, Clone, PartialEq, Default)]
struct Object {
    entries: Vec<(String, Node)>,
    overflow: Option<u64>,
}

impl Object {
    fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// `obj[key] = value`, keeping JavaScript's key order.
    fn set(&mut self, key: String, value: Node) {
        if let Some(slot) = self.get_mut(&key) {
            *slot = value;
            return;
        }
        match array_index(&key) {
            Some(index) => {
                let at = self
                    .entries
                    .iter()
                    .position(|(k, _)| array_index(k).is_none_or(|other| other > index))
                    .unwrap_or(self.entries.len());
                self.entries.insert(at, (key, value));
            }
            None => self.entries.push((key, value)),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    Str(String),
    /// A JavaScript array, holes as `None`.
    Array(Vec<Option<Node>>),
    Object(Object),
}

impl Node {
    fn is_object_like(&self) -> bool {
        !matches!(self, Node::Str(_))
    }

    fn overflow(&self) -> Option<u64> {
        match self {
            Node::Object(object) => object.overflow,
            _ => None,
        }
    }

    /// After qs's `compact`: holes dropped from every array.
    fn into_value(self) -> JsValue {
        match self {
            Node::Str(s) => JsValue::String(s),
            Node::Array(items) => {
                JsValue::Array(items.into_iter().flatten().map(Node::into_value).collect())
            }
            Node::Object(object) => JsValue::Object(
                object
                    .entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_value()))
                    .collect(),
            ),
        }
    }
}

/// qs's decoder: `+` → space, then `decodeURIComponent`; on a malformed escape or invalid
/// UTF-8 the `+`-replaced text is kept as is.
pub fn decode(component: &str) -> String {
    let spaced = component.replace('+', " ");
    if !spaced.contains('%') {
        return spaced;
    }
    let bytes = spaced.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
            match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push((hi * 16 + lo) as u8);
                    i += 3;
                }
                _ => return spaced,
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or(spaced)
}

/// Replaces `%5B` / `%5D` (any case) with `[` / `]`, as qs does before splitting.
fn restore_brackets(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        match rest.get(at + 1..at + 3) {
            Some(code) if code.eq_ignore_ascii_case("5B") => out.push('['),
            Some(code) if code.eq_ignore_ascii_case("5D") => out.push(']'),
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    out
}

/// Parses a query string or form body into an object.
pub fn parse(input: &str, options: &QsOptions) -> Result<JsValue, DepthExceeded> {
    if input.is_empty() {
        return Ok(JsValue::Object(Vec::new()));
    }
    let input = restore_brackets(input);
    // parseValues: flat keys, repeated keys combined.
    let mut flat = Object::default();
    for part in input.split('&').take(options.parameter_limit) {
        let split_at = match part.find("]=") {
            Some(bracket) => Some(bracket + 1),
            None => part.find('='),
        };
        let (key, value) = match split_at {
            Some(at) => (decode(&part[..at]), decode(&part[at + 1..])),
            None => (decode(part), String::new()),
        };
        let value = Node::Str(value);
        if let Some(existing) = flat.get_mut(&key) {
            let current = std::mem::replace(existing, Node::Str(String::new()));
            *existing = combine(current, value, options.array_limit);
        } else {
            flat.set(key, value);
        }
    }
    // Expand each key and merge into one object.
    let mut root = Node::Object(Object::default());
    for (key, value) in flat.entries {
        if key.is_empty() {
            continue;
        }
        let chain = split_key(&key, options)?;
        let nested = build_chain(&chain, value, options);
        root = merge(root, nested, options);
    }
    Ok(root.into_value())
}

/// `utils.combine(a, b, arrayLimit)`: `[].concat(a, b)`, or an overflow object past the limit.
fn combine(a: Node, b: Node, array_limit: usize) -> Node {
    if let Node::Object(mut object) = a {
        if let Some(max) = object.overflow {
            object.set((max + 1).to_string(), b);
            object.overflow = Some(max + 1);
            return Node::Object(object);
        }
        return finish_concat(vec![Some(Node::Object(object))], b, array_limit);
    }
    let start = match a {
        Node::Array(items) => items,
        other => vec![Some(other)],
    };
    finish_concat(start, b, array_limit)
}

fn finish_concat(mut items: Vec<Option<Node>>, b: Node, array_limit: usize) -> Node {
    match b {
        Node::Array(more) => items.extend(more),
        other => items.push(Some(other)),
    }
    limit_array(items, array_limit)
}

/// An array longer than the limit becomes an overflow object.
fn limit_array(items: Vec<Option<Node>>, array_limit: usize) -> Node {
    if items.len() > array_limit {
        let max = items.len() as u64 - 1;
        overflow_object(array_to_object(items), max)
    } else {
        Node::Array(items)
    }
}

fn array_to_object(items: Vec<Option<Node>>) -> Object {
    let mut object = Object::default();
    for (i, item) in items.into_iter().enumerate() {
        if let Some(item) = item {
            object.entries.push((i.to_string(), item));
        }
    }
    object
}

fn overflow_object(mut object: Object, max: u64) -> Node {
    object.overflow = Some(max);
    Node::Object(object)
}

/// qs's `splitKeyIntoSegments`: the parent, then balanced bracket groups up to the depth,
/// then the rest as one literal group (or an error with `strict_depth`).
fn split_key(key: &str, options: &QsOptions) -> Result<Vec<String>, DepthExceeded> {
    if options.depth == 0 {
        return Ok(vec![key.to_owned()]);
    }
    let bytes = key.as_bytes();
    let mut segments = Vec::new();
    let first = key.find('[');
    let parent = &key[..first.unwrap_or(key.len())];
    if !parent.is_empty() {
        segments.push(parent.to_owned());
    }
    let mut open = first;
    let mut collected = 0;
    while let Some(start) = open {
        if collected >= options.depth {
            break;
        }
        let mut level = 1;
        let mut close = None;
        for (i, &b) in bytes.iter().enumerate().skip(start + 1) {
            match b {
                b'[' => level += 1,
                b']' => {
                    level -= 1;
                    if level == 0 {
                        close = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let Some(close) = close else {
            segments.push(format!("[{}]", &key[start..]));
            return Ok(segments);
        };
        segments.push(key[start..=close].to_owned());
        collected += 1;
        open = key[close + 1..].find('[').map(|i| i + close + 1);
    }
    if let Some(start) = open {
        if options.strict_depth {
            return Err(DepthExceeded);
        }
        segments.push(format!("[{}]", &key[start..]));
    }
    Ok(segments)
}

/// The array index a bracketed segment names, as qs's `parseInt` round trip accepts it.
fn segment_index(clean: &str) -> Option<u64> {
    if clean.is_empty()
        || !clean.bytes().all(|b| b.is_ascii_digit())
        || (clean.len() > 1 && clean.starts_with('0'))
    {
        return None;
    }
    // Beyond 2^53 JavaScript's number no longer prints back the same digits.
    clean.parse::<u64>().ok().filter(|n| *n < (1 << 53))
}

/// qs's `parseObject`: builds the value from the innermost segment outwards.
fn build_chain(chain: &[String], value: Node, options: &QsOptions) -> Node {
    let mut leaf = value;
    for root in chain.iter().rev() {
        leaf = if root == "[]" {
            if leaf.overflow().is_some() {
                leaf
            } else {
                combine(Node::Array(Vec::new()), leaf, options.array_limit)
            }
        } else {
            let bracketed = root.len() >= 2 && root.starts_with('[') && root.ends_with(']');
            let clean = if bracketed {
                &root[1..root.len() - 1]
            } else {
                root.as_str()
            };
            match segment_index(clean).filter(|_| bracketed) {
                Some(index) if index < options.array_limit as u64 => {
                    let mut items: Vec<Option<Node>> = vec![None; index as usize];
                    items.push(Some(leaf));
                    Node::Array(items)
                }
                Some(index) => {
                    let mut object = Object::default();
                    object.set(index.to_string(), leaf);
                    overflow_object(object, index)
                }
                None if clean == "__proto__" => Node::Object(Object::default()),
                None => {
                    let mut object = Object::default();
                    object.set(clean.to_owned(), leaf);
                    Node::Object(object)
                }
            }
        };
    }
    leaf
}

/// JavaScript's `parseInt(text, 10)` as qs uses it on keys: `None` is `NaN`.
fn parse_int(text: &str) -> Option<i64> {
    let trimmed = text.trim_start();
    let (negative, digits) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let value: i64 = digits[..end.min(15)].parse().ok()?;
    Some(if negative { -value } else { value })
}

/// `utils.merge(target, source)` with qs 6.15's defaults (`strictMerge`) and the array limit.
fn merge(target: Node, source: Node, options: &QsOptions) -> Node {
    let limit = options.array_limit;
    let source_items_or_object = match source {
        Node::Str(value) => {
            if value.is_empty() {
                return target;
            }
            return match target {
                Node::Array(mut items) => {
                    if items.len() >= limit {
                        let max = items.len() as u64;
                        items.push(Some(Node::Str(value)));
                        overflow_object(array_to_object(items), max)
                    } else {
                        items.push(Some(Node::Str(value)));
                        Node::Array(items)
                    }
                }
                Node::Object(mut object) => match object.overflow {
                    Some(max) => {
                        object.set((max + 1).to_string(), Node::Str(value));
                        object.overflow = Some(max + 1);
                        Node::Object(object)
                    }
                    None => Node::Array(vec![Some(Node::Object(object)), Some(Node::Str(value))]),
                },
                scalar => Node::Array(vec![Some(scalar), Some(Node::Str(value))]),
            };
        }
        other => other,
    };
    let target = match target {
        Node::Str(scalar) => return merge_into_scalar(scalar, source_items_or_object, limit),
        other => other,
    };
    match (target, source_items_or_object) {
        (Node::Array(mut items), Node::Array(source_items)) => {
            for (i, item) in source_items.into_iter().enumerate() {
                let Some(item) = item else { continue };
                match items.get_mut(i) {
                    Some(slot @ Some(_)) => {
                        let existing = slot.take();
                        match existing {
                            Some(existing)
                                if existing.is_object_like() && item.is_object_like() =>
                            {
                                *slot = Some(merge(existing, item, options));
                            }
                            existing => {
                                *slot = existing;
                                items.push(Some(item));
                            }
                        }
                    }
                    Some(slot) => *slot = Some(item),
                    None => {
                        items.resize(i, None);
                        items.push(Some(item));
                    }
                }
            }
            limit_array(items, limit)
        }
        (target, source) => {
            let mut acc = match target {
                Node::Array(items) => array_to_object(items),
                Node::Object(object) => object,
                Node::Str(_) => Object::default(),
            };
            let (source_entries, source_overflow) = match source {
                Node::Array(items) => (array_to_object(items).entries, None),
                Node::Object(object) => (object.entries, object.overflow),
                Node::Str(_) => (Vec::new(), None),
            };
            for (key, value) in source_entries {
                let merged = match acc.get_mut(&key) {
                    Some(existing) => {
                        let current = std::mem::replace(existing, Node::Str(String::new()));
                        merge(current, value, options)
                    }
                    None => value,
                };
                acc.set(key.clone(), merged);
                if let (Some(max), None) = (source_overflow, acc.overflow) {
                    acc.overflow = Some(max);
                }
                if let Some(max) = acc.overflow
                    && let Some(index) = segment_index(&key)
                    && index > max
                {
                    acc.overflow = Some(index);
                }
            }
            Node::Object(acc)
        }
    }
}

/// `merge(primitive, object)`: `[target].concat(source)`, or for an overflow source a new
/// overflow object with the target at 0 and the source's keys shifted by one.
fn merge_into_scalar(scalar: String, source: Node, limit: usize) -> Node {
    if let Node::Object(object) = &source
        && let Some(max) = object.overflow
    {
        let mut result = Object::default();
        result.set("0".to_owned(), Node::Str(scalar));
        if let Node::Object(object) = source {
            for (key, value) in object.entries {
                let shifted =
                    parse_int(&key).map_or_else(|| "NaN".to_owned(), |n| (n + 1).to_string());
                result.set(shifted, value);
            }
        }
        return overflow_object(result, max + 1);
    }
    let mut items = vec![Some(Node::Str(scalar))];
    match source {
        Node::Array(more) => items.extend(more),
        other => items.push(Some(other)),
    }
    limit_array(items, limit)
}
