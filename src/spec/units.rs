//! Parsing of sizes ("512m"), CPU counts ("0.5") and durations ("30s") as written in specs.

use std::time::Duration;

/// A size or duration as written that is not one; the text is quoted back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnitError {
    #[error("{0:?} is not a size (examples: 512m, 1g, 65536)")]
    NotSize(String),
    #[error("{0:?} is not a size")]
    NotFinite(String),
    #[error("{0:?} is too large (at most 8 EiB)")]
    TooLarge(String),
    #[error("{0:?} is not a duration (examples: 500ms, 30s, 5m, 1h, 30d)")]
    NotDuration(String),
    #[error("{0:?} is too long a duration")]
    TooLong(String),
}

impl From<UnitError> for String {
    fn from(e: UnitError) -> String {
        e.to_string()
    }
}

/// Bytes from a Docker-style size: a number with an optional binary suffix
/// (`k`, `m`, `g`, `t`, optionally followed by `i`/`b`/`ib`): `512m` = 512 MiB.
pub fn parse_bytes(s: &str) -> Result<u64, UnitError> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix("ib")
        .or_else(|| t.strip_suffix('b'))
        .unwrap_or(&t)
        .to_string();
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t.as_str(), 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| UnitError::NotSize(s.into()))?;
    let b = n * mult as f64;
    if !(b.is_finite() && b >= 0.0) {
        return Err(UnitError::NotFinite(s.into()));
    }
    // Past 8 EiB a size is a typo or an attack, never a quota; `as` would saturate silently.
    if b >= (1u64 << 63) as f64 {
        return Err(UnitError::TooLarge(s.into()));
    }
    Ok(b as u64)
}

/// A duration like `500ms`, `30s`, `5m`, `2h`, `30d`; a bare number means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, UnitError> {
    let t = s.trim();
    let bad = || UnitError::NotDuration(s.into());
    let (num, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86400.0,
        _ => return Err(bad()),
    };
    // A huge number of hours does not fit a Duration: an error, never a panic.
    Duration::try_from_secs_f64(secs).map_err(|_| UnitError::TooLong(s.into()))
}

/// Formats bytes the way specs write them, for messages and tables.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("t", 1 << 40),
        ("g", 1 << 30),
        ("m", 1 << 20),
        ("k", 1 << 10),
    ];
    for (u, m) in UNITS {
        if b >= m && b.is_multiple_of(m) {
            return format!("{}{u}", b / m);
        }
    }
    b.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_accept_docker_suffixes_and_reject_words() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2GiB"), Ok(2 << 30));
        assert_eq!(parse_bytes("1.5g"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(
            parse_bytes("lots")
                .unwrap_err()
                .to_string()
                .contains("not a size")
        );
    }

    #[test]
    fn durations_take_common_units_and_bare_seconds() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("5 weeks").is_err());
    }

    #[test]
    fn values_too_large_for_their_type_are_errors_not_panics() {
        let e = parse_duration("99999999999999999999999h")
            .unwrap_err()
            .to_string();
        assert!(e.contains("too long"), "{e}");
        assert!(parse_duration("1e400").is_err());
        let e = parse_bytes("99999999999t").unwrap_err().to_string();
        assert!(e.contains("too large"), "{e}");
        assert!(parse_bytes("1e400").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn bytes_format_back_to_the_shortest_suffix() {
        assert_eq!(format_bytes(512 << 20), "512m");
        assert_eq!(format_bytes(1000), "1000");
    }
}
