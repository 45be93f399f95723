//! `application/x-www-form-urlencoded` decoding, shared by every layer that reads a query string
//! or a form body (Engine.IO handshake parameters, `/send`'s qs-style parser).
//!
//! Decoding follows what browsers and Node produce and accept: `+` is a space, `%XX` is a byte,
//! a malformed `%` escape is kept literally (as Node's `querystring` and `qs` do), and bytes that
//! are not valid UTF-8 become U+FFFD rather than an error.

use std::borrow::Cow;

/// Decodes one component (`+` → space, `%XX` → byte), replacing invalid UTF-8 with U+FFFD.
pub fn decode_component(input: &str) -> Cow<'_, str> {
    if !input.bytes().any(|b| b == b'%' || b == b'+') {
        return Cow::Borrowed(input);
    }
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => match (bytes.get(i + 1), bytes.get(i + 2)) {
                (Some(&hi), Some(&lo)) if hi.is_ascii_hexdigit() && lo.is_ascii_hexdigit() => {
                    out.push(hex_value(hi) << 4 | hex_value(lo));
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            other => {
                out.push(other);
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// Splits a query string or form body into decoded `(key, value)` pairs, in order.
///
/// Empty segments (`a=1&&b=2`) are skipped; a segment without `=` has an empty value.
pub fn pairs(input: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    input.split('&').filter(|s| !s.is_empty()).map(|segment| {
        let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
        (decode_component(key), decode_component(value))
    })
}

/// The decoded value of the first pair named `name`.
pub fn first<'a>(input: &'a str, name: &str) -> Option<Cow<'a, str>> {
    pairs(input).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Encodes one component the way `encodeURIComponent` does (unreserved characters kept,
/// everything else `%XX` in UTF-8).
pub fn encode_component(input: &str) -> Cow<'_, str> {
    fn keep(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
    }
    if input.bytes().all(keep) {
        return Cow::Borrowed(input);
    }
    let mut out = String::with_capacity(input.len() * 3);
    for b in input.bytes() {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 0xf)]));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_plus_percent_and_keeps_malformed_escapes() {
        assert_eq!(decode_component("a+b%20c"), "a b c");
        assert_eq!(decode_component("100%"), "100%");
        assert_eq!(decode_component("%zz%4"), "%zz%4");
        assert_eq!(decode_component("%E2%82%AC"), "€");
        assert_eq!(decode_component("%FF"), "\u{FFFD}");
    }

    #[test]
    fn splits_pairs_in_order_and_skips_empty_segments() {
        let got: Vec<_> = pairs("EIO=4&&transport=polling&flag&t=N8h")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(
            got,
            [
                ("EIO".to_owned(), "4".to_owned()),
                ("transport".to_owned(), "polling".to_owned()),
                ("flag".to_owned(), String::new()),
                ("t".to_owned(), "N8h".to_owned()),
            ]
        );
        assert_eq!(first("a=1&b=2&a=3", "a").as_deref(), Some("1"));
        assert_eq!(first("a=1", "z"), None);
    }

    #[test]
    fn encodes_like_encode_uri_component() {
        assert_eq!(encode_component("abc-_.!~*'()"), "abc-_.!~*'()");
        assert_eq!(encode_component("a b&c=€"), "a%20b%26c%3D%E2%82%AC");
        assert_eq!(decode_component(&encode_component("x y/€")), "x y/€");
    }
}
