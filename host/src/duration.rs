//! Durations as people write them in flags and files: `250ms`, `30s`, `1.5m`, `2h`, `7d`.
//!
//! One parser for the sidecar's config, the lab's scenarios and `serve --retain`, so the same
//! text means the same time everywhere.

use std::time::Duration;

/// Parses a number (decimals allowed) and an optional unit: `ms`, `s`, `m` or `min`, `h`, `d`.
/// A number without a unit is seconds. The error says what was wrong, for the caller to place.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (write e.g. 500ms, 30s, 5m, 2h, 7d)"))?;
    let seconds = match unit.trim() {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" | "min" => 60.0,
        "h" => 3_600.0,
        "d" => 86_400.0,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?} (use ms, s, m, h or d)"
            ))
        }
    };
    Duration::try_from_secs_f64(number * seconds).map_err(|_| format!("{text:?} is out of range"))
}

/// Whether `text` names its unit (a bare number is seconds, which a caller may find too
/// surprising to accept where the usual unit is larger).
pub fn has_unit(text: &str) -> bool {
    text.trim()
        .chars()
        .last()
        .is_some_and(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_bare_numbers() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2 h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        assert!(parse("").unwrap_err().contains("not a duration"));
        assert!(parse("-1s").unwrap_err().contains("not a duration"));
        assert!(parse("3 weeks").unwrap_err().contains("unknown unit"));
        assert!(parse("1e400").is_err());
        assert!(parse("99999999999999999999999d")
            .unwrap_err()
            .contains("out of range"));
    }

    #[test]
    fn a_unit_is_seen() {
        assert!(has_unit("7d") && has_unit("250ms"));
        assert!(!has_unit("7") && !has_unit(" 0 "));
    }
}
