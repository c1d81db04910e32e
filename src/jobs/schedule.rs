//! Cron schedules: five fields (minute first) or six (seconds first), read by croner; times in
//! UTC so a schedule means the same on every host.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::time::SystemTime;

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
}
