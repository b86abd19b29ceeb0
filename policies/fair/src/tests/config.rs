//! The policy's name, and what it accepts and refuses as configuration.

use super::*;
use crate::config::{MAX_WEIGHT_TEXT, MIN_WEIGHT_TEXT};

#[test]
fn reports_its_name_and_version() {
    assert_eq!(Fair::NAME, "fair");
    assert_eq!(Fair::VERSION, env!("CARGO_PKG_VERSION"));
}

#[test]
fn config_defaults_and_fields() {
    assert_eq!(fair_with(Value::Null).config(), &FairConfig::default());
    assert_eq!(fair_with(json!({})).config(), &FairConfig::default());
    let p = fair_with(json!({"weights": {"team-a": 3, "b": 0.5}, "aging_ms": 1000}));
    assert_eq!(p.config().aging_ms, 1000);
    assert_eq!(p.config().weights.get("team-a"), Some(&3.0));
    assert_eq!(p.config().weights.get("b"), Some(&0.5));
    assert!(
        fair_with(json!({"weights": null, "aging_ms": MAX_AGING_MS}))
            .config()
            .weights
            .is_empty()
    );
}

#[test]
fn config_refusals_name_the_field() {
    let refused = |config: Value, needle: &str| {
        let err = Fair::new(&config).unwrap_err();
        assert!(err.starts_with("fair: "), "{err}");
        assert!(err.contains(needle), "{config}: {err}");
    };
    refused(json!({"bogus": 1}), "unknown config field `bogus`");
    refused(json!({"weight": {"a": 1}}), "unknown config field `weight`");
    refused(json!(7), "got a number");
    refused(json!([]), "got an array");
    refused(json!("x"), "got a string");
    refused(json!({"weights": [1]}), "`weights` must be an object");
    refused(json!({"weights": {"a": 0}}), "`weights.a` must be a number");
    refused(json!({"weights": {"a": -2}}), "`weights.a`");
    refused(json!({"weights": {"a": "3"}}), "`weights.a`");
    refused(json!({"weights": {"a": 1e9}}), "`weights.a`");
    refused(json!({"weights": {"": 1}}), "empty fairness key");
    refused(json!({"aging_ms": 0}), "`aging_ms` must be a whole number");
    refused(json!({"aging_ms": -5}), "`aging_ms`");
    refused(json!({"aging_ms": 1.5}), "`aging_ms`");
    refused(json!({"aging_ms": "30s"}), "`aging_ms`");
    refused(json!({"aging_ms": MAX_AGING_MS + 1}), "`aging_ms`");
}

#[test]
fn refusals_quote_what_was_given() {
    let err = Fair::new(&json!({"weights": {"a": 0}})).unwrap_err();
    assert_eq!(
        err,
        "fair: `weights.a` must be a number from 0.001 to 1000, got 0"
    );
    let err = Fair::new(&json!({"aging_ms": "30s"})).unwrap_err();
    assert!(err.ends_with("got the string \"30s\""), "{err}");
    let err = Fair::new(&json!({"aging_ms": -5})).unwrap_err();
    assert!(err.ends_with("got -5"), "{err}");
    let err = Fair::new(&json!({"weights": {"a": 0.0001}})).unwrap_err();
    assert!(err.ends_with("got a fractional number"), "{err}");
    let err = Fair::new(&json!({"weights": {"a": [1]}})).unwrap_err();
    assert!(err.ends_with("got an array"), "{err}");
    // The bounds as written in messages are the bounds enforced.
    assert_eq!(MIN_WEIGHT_TEXT.parse::<f64>(), Ok(MIN_WEIGHT));
    assert_eq!(MAX_WEIGHT_TEXT.parse::<f64>(), Ok(MAX_WEIGHT));
    assert!(Fair::new(&json!({"weights": {"a": 0.001, "b": 1000}})).is_ok());
}
