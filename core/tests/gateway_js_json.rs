//! JSON.parse error texts (Node 22) and JSON.stringify output.

use courier_core::gateway::js_json::{JsValue, JsonError, MAX_DEPTH, parse, strict_violation};

fn syntax(text: &str) -> String {
    match parse(text) {
        Err(JsonError::Syntax(message)) => message,
        other => panic!("expected a SyntaxError for {text:?}, got {other:?}"),
    }
}

#[test]
fn the_originals_observed_messages() {
    // captured from the original service, auth failures.
    assert_eq!(
        syntax("<html>no</html>"),
        "Unexpected token '<', \"<html>no</html>\" is not valid JSON"
    );
    assert_eq!(syntax(""), "Unexpected end of JSON input");
}

#[test]
fn token_messages_with_and_without_context() {
    assert_eq!(syntax("undefined"), "\"undefined\" is not valid JSON");
    assert_eq!(syntax("NaN"), "\"NaN\" is not valid JSON");
    assert_eq!(
        syntax("[object Object]"),
        "\"[object Object]\" is not valid JSON"
    );
    assert_eq!(
        syntax("[1,]"),
        "Unexpected token ']', \"[1,]\" is not valid JSON"
    );
    assert_eq!(
        syntax("<!DOCTYPE html><html>x</html>"),
        "Unexpected token '<', \"<!DOCTYPE \"... is not valid JSON"
    );
    assert_eq!(
        syntax("[1, 2, 3, 4, 5, 6, x, 8, 9, 10, 11]"),
        "Unexpected token 'x', ...\" 4, 5, 6, x, 8, 9, 1\"... is not valid JSON"
    );
    assert_eq!(
        syntax("[1, 2, 3, 4, 5, 6, 7, x]"),
        "Unexpected token 'x', ...\" 5, 6, 7, x]\" is not valid JSON"
    );
    assert_eq!(
        syntax("trux"),
        "Unexpected token 'x', \"trux\" is not valid JSON"
    );
    assert_eq!(syntax("tru"), "Unexpected end of JSON input");
    assert_eq!(
        syntax("t1"),
        "Unexpected number in JSON at position 1 (line 1 column 2)"
    );
    assert_eq!(
        syntax("n\"a\""),
        "Unexpected string in JSON at position 1 (line 1 column 2)"
    );
}

/// Checked against Node 20's `JSON.parse` on this machine; Node 22 (the original's runtime)
/// gives the same texts and adds ` (line L column C)` after every position.
#[test]
fn structural_messages_carry_position_line_and_column() {
    assert_eq!(
        syntax("[1"),
        "Expected ',' or ']' after array element in JSON at position 2 (line 1 column 3)"
    );
    assert_eq!(
        syntax("{"),
        "Expected property name or '}' in JSON at position 1 (line 1 column 2)"
    );
    assert_eq!(
        syntax("{'a':1}"),
        "Expected property name or '}' in JSON at position 1 (line 1 column 2)"
    );
    assert_eq!(
        syntax("{\"a\" 1}"),
        "Expected ':' after property name in JSON at position 5 (line 1 column 6)"
    );
    assert_eq!(
        syntax("{\"a\":1,}"),
        "Expected double-quoted property name in JSON at position 7 (line 1 column 8)"
    );
    assert_eq!(
        syntax("{\"a\":1\n \"b\":2}"),
        "Expected ',' or '}' after property value in JSON at position 8 (line 2 column 2)"
    );
    assert_eq!(
        syntax("{} x"),
        "Unexpected non-whitespace character after JSON at position 3 (line 1 column 4)"
    );
    assert_eq!(
        syntax("\"abc"),
        "Unterminated string in JSON at position 4 (line 1 column 5)"
    );
    assert_eq!(
        syntax("\"a\u{1}\""),
        "Bad control character in string literal in JSON at position 2 (line 1 column 3)"
    );
    assert_eq!(
        syntax("\"\\x\""),
        "Bad escaped character in JSON at position 2 (line 1 column 3)"
    );
    assert_eq!(
        syntax("\"\\u12g4\""),
        "Bad Unicode escape in JSON at position 5 (line 1 column 6)"
    );
    assert_eq!(
        syntax("-x"),
        "No number after minus sign in JSON at position 1 (line 1 column 2)"
    );
    assert_eq!(
        syntax("1."),
        "Unterminated fractional number in JSON at position 2 (line 1 column 3)"
    );
    assert_eq!(
        syntax("1e+"),
        "Exponent part is missing a number in JSON at position 3 (line 1 column 4)"
    );
    assert_eq!(
        syntax("01"),
        "Unexpected number in JSON at position 1 (line 1 column 2)"
    );
    assert_eq!(
        syntax("[01]"),
        "Unexpected number in JSON at position 2 (line 1 column 3)"
    );
    assert_eq!(syntax("\"\\"), "Unexpected end of JSON input");
    assert_eq!(
        syntax("\"\\u12"),
        "Bad Unicode escape in JSON at position 5 (line 1 column 6)"
    );
    assert_eq!(syntax("[1,"), "Unexpected end of JSON input");
    assert_eq!(
        syntax("{\"a\""),
        "Expected ':' after property name in JSON at position 4 (line 1 column 5)"
    );
    assert_eq!(
        syntax("{\"a\":1,"),
        "Expected double-quoted property name in JSON at position 7 (line 1 column 8)"
    );
    assert_eq!(
        syntax("[1 2]"),
        "Expected ',' or ']' after array element in JSON at position 3 (line 1 column 4)"
    );
    assert_eq!(
        syntax("{1:2}"),
        "Expected property name or '}' in JSON at position 1 (line 1 column 2)"
    );
    assert_eq!(
        syntax("\"a\" x"),
        "Unexpected non-whitespace character after JSON at position 4 (line 1 column 5)"
    );
    assert_eq!(
        syntax("[tru]"),
        "Unexpected token ']', \"[tru]\" is not valid JSON"
    );
    // Positions count UTF-16 code units.
    assert_eq!(
        syntax("[\"😀\" x"),
        "Expected ',' or ']' after array element in JSON at position 6 (line 1 column 7)"
    );
}

/// Checked against body-parser 1.20.5 on Node 20.
#[test]
fn body_parser_strict_mode_messages() {
    assert_eq!(
        strict_violation(" \"x").as_deref(),
        Some("Unexpected token '\"', \" \"x\" is not valid JSON")
    );
    assert_eq!(strict_violation("{\"a\":1}"), None);
    assert_eq!(strict_violation(" [1]"), None);
    assert_eq!(
        strict_violation("\"abc\"").as_deref(),
        Some("Unexpected token '\"', \"\"abc\"\" is not valid JSON")
    );
    assert_eq!(
        strict_violation("5").as_deref(),
        Some("Unexpected token '5', \"5\" is not valid JSON")
    );
    assert_eq!(
        strict_violation("   ").as_deref(),
        Some("Unexpected end of JSON input")
    );
    assert_eq!(
        strict_violation("nullnullnullnullnullnull").as_deref(),
        Some("Unexpected token 'n', \"nullnullnu\"... is not valid JSON")
    );
}

#[test]
fn stringify_matches_javascript() {
    let value = parse(r#"{"b":1,"2":[1.0,1e21,1.5e-7,-0,0.000001,123456789012345678901,1e400],"a":"\u0001\n\"","1":null,"01":true}"#)
        .expect("valid");
    assert_eq!(
        value.to_json(),
        r#"{"1":null,"2":[1,1e+21,1.5e-7,0,0.000001,123456789012345680000,null],"b":1,"a":"\u0001\n\"","01":true}"#
    );
    let dup = parse(r#"{"a":1,"b":2,"a":3}"#).expect("valid");
    assert_eq!(dup.to_json(), r#"{"a":3,"b":2}"#);
    assert_eq!(
        parse("\"\\ud83d\\ude00 \\u00e9\"").expect("valid"),
        JsValue::String("😀 é".into())
    );
    assert_eq!(parse(" [ ] ").expect("valid").to_json(), "[]");
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let deep = "[".repeat(MAX_DEPTH + 2) + &"]".repeat(MAX_DEPTH + 2);
    assert_eq!(parse(&deep), Err(JsonError::TooDeep));
    let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
    assert!(parse(&ok).is_ok());
}

mod properties {
    use courier_core::gateway::js_json::{JsValue, parse, write_number};
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = JsValue> {
        let leaf = prop_oneof![
            Just(JsValue::Null),
            any::<bool>().prop_map(JsValue::Bool),
            any::<f64>()
                .prop_filter("finite", |n| n.is_finite())
                .prop_map(JsValue::Number),
            any::<String>().prop_map(JsValue::String),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(JsValue::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| JsValue::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn printed_json_parses_back_to_the_same_text(v in value()) {
            let text = v.to_json();
            let reparsed = parse(&text).map_err(|e| TestCaseError::fail(format!("{e} for {text}")))?;
            prop_assert_eq!(reparsed.to_json(), text);
        }

        #[test]
        fn numbers_print_in_a_form_that_round_trips(n in any::<f64>().prop_filter("finite", |n| n.is_finite())) {
            let mut text = String::new();
            write_number(n, &mut text);
            let back: f64 = text.parse().map_err(|e| TestCaseError::fail(format!("{e}: {text}")))?;
            prop_assert!(back == n, "{} printed as {}", n, text);
        }

        #[test]
        fn parse_never_panics(text in "\\PC{0,64}") {
            let _ = parse(&text);
        }
    }
}
