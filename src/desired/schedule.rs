//! Job and backup schedules and job time limits. Cron schedules: five fields (minute first) or six (seconds first), read by croner; times in
//! UTC so a schedule means the same on every host.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::time::{Duration, SystemTime};

pub fn parse(expr: &str) -> Result<Cron, String> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "{expr:?} is not a cron expression: five fields (minute hour day month weekday), or six with seconds first"
        ));
    }
    Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| format!("{expr:?} is not a valid cron expression: {e}"))
}

/// The first time strictly after `t` the schedule fires.
pub fn next_after(cron: &Cron, t: SystemTime) -> Option<SystemTime> {
    let at: DateTime<Utc> = t.into();
    cron.find_next_occurrence(&at, false)
        .ok()
        .map(SystemTime::from)
}

/// How long a run may take when its template says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A job's `timeout:`: from one second to a day, default 10 minutes.
pub fn timeout_of(t: Option<&str>) -> Result<Duration, String> {
    let Some(t) = t else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let d = crate::spec::units::parse_duration(t)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(format!("{t:?} is out of range (1s..=24h)"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn schedules_fire_at_their_next_matching_time() {
        // 2026-01-01T00:00:30Z
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_630);
        let table = [
            ("* * * * *", 30),
            ("*/5 * * * *", 270),
            ("*/10 * * * * *", 10),
            ("0 3 * * *", 3 * 3600 - 30),
        ];
        for (expr, after) in table {
            let next = next_after(&parse(expr).unwrap(), t).unwrap();
            assert_eq!(next.duration_since(t).unwrap().as_secs(), after, "{expr}");
        }
    }

    #[test]
    fn bad_schedules_say_what_is_expected() {
        for bad in ["* * * *", "61 * * * *", "a b c d e", ""] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_job_timeout_is_a_duration_from_a_second_to_a_day() {
        assert_eq!(timeout_of(None), Ok(DEFAULT_TIMEOUT));
        assert_eq!(timeout_of(Some("90s")), Ok(Duration::from_secs(90)));
        for bad in [
            "0s",
            "500ms",
            "25h",
            "forever",
            "-1",
            "99999999999999999999h",
            "",
        ] {
            assert!(timeout_of(Some(bad)).is_err(), "{bad:?} accepted");
        }
    }
}
