//! The `qs` library's "extended" parsing, as body-parser 1.20's `urlencoded({extended: true})`
//! and Express's query parser ran it for the original: `rooms[]=a&rooms[]=b`,
//! `args[1][id]=5`, repeated keys collected into arrays, every leaf a string.
//!
//! Faithful to qs 6 with body-parser's options (`allowPrototypes`, `depth`, `arrayLimit`,
//! `parameterLimit`), including its corners: indices above the array limit make an object,
//! sparse indices are compacted (`a[1]=x` gives `["x"]`), a bracket segment past the depth is
//! kept whole as one key, `__proto__` is dropped, and merging a plain value into an object
//! sets that key to `true` (`a[b]=1&a=c` gives `{"b":"1","c":true}`). Values are decoded as
//! qs does: `+` is a space, and a component that is not valid percent-encoded UTF-8 is kept
//! as written.

use super::js_json::JsValue;

/// Limits for one parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QsOptions {
    /// Bracket segments turned into nesting (the rest stays one key).
    pub depth: usize,
    /// Highest index `a[n]` still read as an array position.
    pub array_limit: usize,
    /// Pairs read at most.
    pub parameter_limit: usize,
}

/// Express's query parser: qs defaults (depth 5, array limit 20, 1000 parameters).
pub const QUERY_OPTIONS: QsOptions = QsOptions {
    depth: 5,
    array_limit: 20,
    parameter_limit: 1000,
};

/// body-parser's `urlencoded({extended: true})` limit on parameters; more is a 413.
pub const FORM_PARAMETER_LIMIT: usize = 1000;

/// The options body-parser 1.20 passes to qs for a form body with `parameter_count` pairs:
/// depth 32, array limit `max(100, parameter_count)`.
pub fn form_options(parameter_count: usize) -> QsOptions {
    QsOptions {
        depth: 32,
        array_limit: parameter_count.max(100),
        parameter_limit: FORM_PARAMETER_LIMIT,
    }
}

/// body-parser's parameter count: the number of `&`-separated parts (`None` past `limit`).
pub fn parameter_count(body: &str, limit: usize) -> Option<usize> {
    let count = body.matches('&').count() + 1;
    (count <= limit).then_some(count)
}

/// A parsed node before sparse arrays are compacted.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Str(String),
    True,
    Array(Vec<Option<Node>>),
    Object(Vec<(String, Node)>),
}

impl Node {
    fn is_object_like(&self) -> bool {
        matches!(self, Node::Array(_) | Node::Object(_))
    }

    fn into_value(self) -> JsValue {
        match self {
            Node::Str(s) => JsValue::String(s),
            Node::True => JsValue::Bool(true),
            Node::Array(items) => {
                JsValue::Array(items.into_iter().flatten().map(Node::into_value).collect())
            }
            Node::Object(entries) => JsValue::Object(
                entries
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

/// Parses a query string or form body into an object.
pub fn parse(input: &str, options: &QsOptions) -> JsValue {
    // Step 1: flat keys, repeated keys combined into arrays, in first-seen order.
    // qs restores encoded brackets first (jQuery sends `rooms%5B%5D=a`).
    let input = restore_brackets(input);
    let mut flat: Vec<(String, Node)> = Vec::new();
    for part in input.split('&').take(options.parameter_limit) {
        let split_at = match part.find("]=") {
            Some(bracket) => Some(bracket + 1),
            None => part.find('='),
        };
        let (key, value) = match split_at {
            Some(at) => (decode(&part[..at]), decode(&part[at + 1..])),
            None => (decode(part), String::new()),
        };
        match flat.iter_mut().find(|(k, _)| *k == key) {
            Some((_, existing)) => combine(existing, Node::Str(value)),
            None => flat.push((key, Node::Str(value))),
        }
    }
    // Step 2: expand each key into nesting and merge into one object.
    let mut root = Node::Object(Vec::new());
    for (key, value) in flat {
        if let Some(nested) = parse_key(&key, value, options) {
            root = merge(root, nested);
        }
    }
    root.into_value()
}

/// Replaces `%5B` / `%5D` (any case) with `[` / `]`.
fn restore_brackets(input: &str) -> std::borrow::Cow<'_, str> {
    if !input.contains('%') {
        return std::borrow::Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at..at + 3).map(str::to_ascii_uppercase);
        match code.as_deref() {
            Some("%5B") => out.push('['),
            Some("%5D") => out.push(']'),
            _ => {
                out.push('%');
                rest = &rest[at + 1..];
                continue;
            }
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// `utils.combine(a, b)`: `[].concat(a, b)`.
fn combine(existing: &mut Node, value: Node) {
    match existing {
        Node::Array(items) => items.push(Some(value)),
        other => {
            let first = std::mem::replace(other, Node::True);
            *other = Node::Array(vec![Some(first), Some(value)]);
        }
    }
}

/// Splits `a[b][c]` into `["a", "[b]", "[c]"]` the way qs's regular expressions do, and
/// builds the nested value. `None` for an empty key.
fn parse_key(key: &str, value: Node, options: &QsOptions) -> Option<Node> {
    if key.is_empty() {
        return None;
    }
    let segments = bracket_segments(key);
    let first_bracket = if options.depth > 0 {
        segments.first().map(|(start, _)| *start)
    } else {
        None
    };
    let parent = &key[..first_bracket.unwrap_or(key.len())];
    let mut chain: Vec<String> = Vec::new();
    if !parent.is_empty() {
        chain.push(parent.to_owned());
    }
    if first_bracket.is_some() {
        let taken = segments.len().min(options.depth);
        chain.extend(
            segments[..taken]
                .iter()
                .map(|(s, e)| key[*s..*e].to_owned()),
        );
        if let Some((start, _)) = segments.get(taken) {
            chain.push(format!("[{}]", &key[*start..]));
        }
    }
    Some(build_chain(&chain, value, options))
}

/// Every `[...]` (no nested brackets inside) in `key`, as byte ranges, left to right.
fn bracket_segments(key: &str) -> Vec<(usize, usize)> {
    let bytes = key.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'[' {
            match bytes[i + 1..].iter().position(|b| *b == b'[' || *b == b']') {
                Some(offset) if bytes[i + 1 + offset] == b']' => {
                    let end = i + 1 + offset + 1;
                    out.push((i, end));
                    i = end;
                    continue;
                }
                Some(offset) => {
                    // A `[` inside: the match can only start at that inner `[`.
                    i += 1 + offset;
                    continue;
                }
                None => break,
            }
        }
        i += 1;
    }
    out
}

/// qs's `parseObject`: builds the value from the innermost segment outwards.
fn build_chain(chain: &[String], value: Node, options: &QsOptions) -> Node {
    let mut leaf = value;
    for root in chain.iter().rev() {
        leaf = if root == "[]" {
            match leaf {
                Node::Array(items) => Node::Array(items),
                other => Node::Array(vec![Some(other)]),
            }
        } else {
            let bracketed = root.len() >= 2 && root.starts_with('[') && root.ends_with(']');
            let clean = if bracketed {
                &root[1..root.len() - 1]
            } else {
                root.as_str()
            };
            match clean.parse::<usize>() {
                Ok(index)
                    if bracketed && index.to_string() == clean && index <= options.array_limit =>
                {
                    let mut items: Vec<Option<Node>> = vec![None; index];
                    items.push(Some(leaf));
                    Node::Array(items)
                }
                _ if clean == "__proto__" => Node::Object(Vec::new()),
                _ => Node::Object(vec![(clean.to_owned(), leaf)]),
            }
        };
    }
    leaf
}

/// `utils.merge(target, source)` with `allowPrototypes`.
fn merge(target: Node, source: Node) -> Node {
    match source {
        Node::Str(ref s) if s.is_empty() => target,
        Node::Str(_) | Node::True => match target {
            Node::Array(mut items) => {
                items.push(Some(source));
                Node::Array(items)
            }
            Node::Object(mut entries) => {
                let key = match source {
                    Node::Str(s) => s,
                    _ => "true".to_owned(),
                };
                set_key(&mut entries, key, Node::True);
                Node::Object(entries)
            }
            scalar => Node::Array(vec![Some(scalar), Some(source)]),
        },
        Node::Array(source_items) => match target {
            Node::Array(mut items) => {
                for (i, item) in source_items.into_iter().enumerate() {
                    let Some(item) = item else { continue };
                    match items.get_mut(i) {
                        Some(slot @ Some(_)) => {
                            let existing = slot.take();
                            match existing {
                                Some(existing)
                                    if existing.is_object_like() && item.is_object_like() =>
                                {
                                    *slot = Some(merge(existing, item));
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
                Node::Array(items)
            }
            Node::Object(entries) => merge_entries(entries, indexed_entries(source_items)),
            scalar => {
                let mut items = vec![Some(scalar)];
                items.extend(source_items);
                Node::Array(items)
            }
        },
        Node::Object(source_entries) => match target {
            Node::Array(items) => merge_entries(indexed_entries(items), source_entries),
            Node::Object(entries) => merge_entries(entries, source_entries),
            scalar => Node::Array(vec![Some(scalar), Some(Node::Object(source_entries))]),
        },
    }
}

fn indexed_entries(items: Vec<Option<Node>>) -> Vec<(String, Node)> {
    items
        .into_iter()
        .enumerate()
        .filter_map(|(i, item)| item.map(|item| (i.to_string(), item)))
        .collect()
}

fn merge_entries(mut entries: Vec<(String, Node)>, source: Vec<(String, Node)>) -> Node {
    for (key, value) in source {
        match entries.iter().position(|(k, _)| *k == key) {
            Some(at) => {
                let existing = std::mem::replace(&mut entries[at].1, Node::True);
                entries[at].1 = merge(existing, value);
            }
            None => entries.push((key, value)),
        }
    }
    Node::Object(entries)
}

fn set_key(entries: &mut Vec<(String, Node)>, key: String, value: Node) {
    match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => entries.push((key, value)),
    }
}
