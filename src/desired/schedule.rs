//! Job and backup schedules and job time limits. Cron schedules: five fields (minute first) or six (seconds first), read by croner; times in
//! UTC so a schedule means the same on every host.

use chrono::{DateTime, Utc};
use croner::Cron;
use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime},
};

pub fn parse(expr: &str) -> Result<Cron, super::Invalid> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(super::Invalid::CronFields(expr.into()));
    }
    Cron::new(expr)
        .with_seconds_optional()
        .parse()
        .map_err(|e| super::Invalid::Cron {
            expr: expr.into(),
            why: e.to_string(),
        })
}

/// The first time strictly after `t` the schedule fires.
pub fn next_after(cron: &Cron, t: SystemTime) -> Option<SystemTime> {
    let at: DateTime<Utc> = t.into();
    cron.find_next_occurrence(&at, false)
        .ok()
        .map(SystemTime::from)
}

/// Cron slots by key (a tenant's job, a tenant's backups): which fire now and how long
/// until the next one does. The one scheduler's bookkeeping, for jobs and scheduled backups
/// alike; pure, the caller passes the time. A slot's first time is its schedule's next one
/// after the slot is first seen: nothing missed while the agent was down is caught up.
pub struct Timetable<K> {
    slots: BTreeMap<K, Slot>,
}

struct Slot {
    expr: String,
    cron: Cron,
    next: Option<SystemTime>,
}

impl<K: Ord + Clone> Default for Timetable<K> {
    fn default() -> Self {
        Timetable {
            slots: BTreeMap::new(),
        }
    }
}

/// The longest a scheduler sleeps, so slots added meanwhile are looked at.
pub const LONGEST_WAIT: Duration = Duration::from_secs(60);

impl<K: Ord + Clone> Timetable<K> {
    /// Brings the slots in line with `wanted` (each key's cron expression: a key left out is
    /// forgotten, one whose expression changed starts over, an invalid one never fires) and
    /// returns the keys due at `now`, each moved on to its next time.
    pub fn due<'a>(
        &mut self,
        wanted: impl IntoIterator<Item = (K, &'a str)>,
        now: SystemTime,
    ) -> Vec<K> {
        let mut kept = BTreeMap::new();
        let mut due = vec![];
        for (key, expr) in wanted {
            let mut slot = match self.slots.remove(&key) {
                Some(s) if s.expr == expr => s,
                _ => match parse(expr) {
                    Ok(cron) => Slot {
                        next: next_after(&cron, now),
                        expr: expr.to_string(),
                        cron,
                    },
                    Err(_) => continue,
                },
            };
            if slot.next.is_some_and(|at| at <= now) {
                slot.next = next_after(&slot.cron, now);
                due.push(key.clone());
            }
            kept.insert(key, slot);
        }
        self.slots = kept;
        due
    }

    /// When `key` fires next.
    pub fn next(&self, key: &K) -> Option<SystemTime> {
        self.slots.get(key).and_then(|s| s.next)
    }

    /// How long until the soonest slot fires: at most [`LONGEST_WAIT`], at least 50 ms.
    pub fn wait(&self, now: SystemTime) -> Duration {
        self.slots
            .values()
            .filter_map(|s| s.next)
            .map(|at| at.duration_since(now).unwrap_or_default())
            .fold(LONGEST_WAIT, Duration::min)
            .max(Duration::from_millis(50))
    }
}

/// How long a run may take when its template says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// A job's `timeout:`: from one second to a day, default 10 minutes.
pub fn timeout_of(t: Option<&str>) -> Result<Duration, super::Invalid> {
    let Some(t) = t else {
        return Ok(DEFAULT_TIMEOUT);
    };
    let d = crate::spec::units::parse_duration(t)?;
    if d < Duration::from_secs(1) || d > Duration::from_secs(86_400) {
        return Err(super::Invalid::TimeoutRange(t.into()));
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
    fn a_timetable_fires_each_slot_once_per_time_and_forgets_what_is_no_longer_wanted() {
        // 2026-01-01T00:00:30Z
        let t0 = UNIX_EPOCH + Duration::from_secs(1_767_225_630);
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut tt: Timetable<&str> = Timetable::default();
        let both = [
            ("a", "* * * * *"),
            ("b", "*/10 * * * * *"),
            ("bad", "61 * * * *"),
        ];
        // First seen: nothing is due, each waits for its next time.
        assert!(tt.due(both, t0).is_empty());
        assert_eq!(tt.wait(t0), Duration::from_secs(10));
        assert_eq!(tt.next(&"bad"), None);
        assert_eq!(tt.due(both, at(10)), vec!["b"]);
        assert!(tt.due(both, at(10)).is_empty(), "fired twice for one time");
        assert_eq!(tt.due(both, at(30)), vec!["a", "b"]);
        // A changed schedule starts over; a key left out is forgotten.
        assert!(tt.due([("a", "0 * * * *")], at(90)).is_empty());
        assert_eq!(tt.next(&"b"), None);
        assert_eq!(tt.next(&"a"), Some(at(3570)));
        assert_eq!(tt.wait(at(90)), LONGEST_WAIT);
        assert_eq!(tt.wait(at(3569)), Duration::from_secs(1));
        assert_eq!(tt.wait(at(4000)), Duration::from_millis(50));
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
