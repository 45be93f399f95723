//! qs "extended" parsing compared with qs 6.15.4 itself: `fixtures/qs_forms.json` holds inputs
//! (hand-picked corners plus a seeded random corpus of bracket soup) and what qs 6.15.4 gave
//! for each with body-parser 1.20.5's form options, produced by running them through Node.

use courier_core::gateway::qs::{self, DepthExceeded, form_options, parameter_count};

#[derive(serde::Deserialize)]
struct Case {
    input: String,
    output: Option<String>,
    error: Option<String>,
}

#[test]
fn forms_parse_exactly_as_qs_6_15_did() {
    let text = include_str!("fixtures/qs_forms.json");
    let cases: Vec<Case> = serde_json::from_str(text).expect("fixture is JSON");
    assert!(cases.len() > 600);
    let mut failures = Vec::new();
    for case in &cases {
        let count = parameter_count(&case.input, 1000).expect("small inputs");
        let got = qs::parse(&case.input, &form_options(count));
        match (&case.output, &case.error, got) {
            (Some(expected), _, Ok(value)) if value.to_json() == *expected => {}
            (_, Some(kind), Err(DepthExceeded)) if kind == "RangeError" => {}
            (expected, error, got) => failures.push(format!(
                "{:?}: qs gave {expected:?}{error:?}, we gave {:?}",
                case.input,
                got.map(|v| v.to_json())
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn query_strings_use_express_defaults() {
    let query = |s: &str| qs::parse(s, &qs::QUERY_OPTIONS).map(|v| v.to_json());
    assert_eq!(
        query("site=a&apiKey=b").as_deref(),
        Ok(r#"{"site":"a","apiKey":"b"}"#)
    );
    assert_eq!(
        query("site=a&site=b").as_deref(),
        Ok(r#"{"site":["a","b"]}"#)
    );
    assert_eq!(
        query("a[20]=x").as_deref(),
        Ok(r#"{"a":{"20":"x"}}"#),
        "array limit 20"
    );
    assert_eq!(query("a[19]=x").as_deref(), Ok(r#"{"a":["x"]}"#));
    assert_eq!(
        query("a[b][c][d][e][f][g]=1").as_deref(),
        Ok(r#"{"a":{"b":{"c":{"d":{"e":{"f":{"[g]":"1"}}}}}}}"#),
        "past depth 5: one literal key"
    );
    assert_eq!(query("").as_deref(), Ok("{}"));
}

#[test]
fn forms_deeper_than_32_are_refused() {
    let deep = format!("a{}=1", "[x]".repeat(33));
    assert_eq!(qs::parse(&deep, &form_options(1)), Err(DepthExceeded));
    assert_eq!(DepthExceeded.to_string(), "The input exceeded the depth");
    let ok = format!("a{}=1", "[x]".repeat(32));
    assert!(qs::parse(&ok, &form_options(1)).is_ok());
}

#[test]
fn decoding_keeps_what_decode_uri_component_refuses() {
    assert_eq!(qs::decode("a+b%20c"), "a b c");
    assert_eq!(qs::decode("%FF+a"), "%FF a");
    assert_eq!(
        qs::decode("%E2%82%AC%zz"),
        "%E2%82%AC%zz",
        "one bad escape keeps the whole component"
    );
    assert_eq!(qs::decode("%E2%82%AC"), "€");
}
