//! Which off-host snapshots a prune keeps: per tenant identity, restic's rules (the newest
//! `last`; the newest of each of the newest `daily` days, `weekly` ISO weeks and `monthly`
//! months that have one). Pure: the prune lists, this decides, restic forgets.

use crate::desired::backups::Keep;
use std::collections::{BTreeMap, BTreeSet};

/// One snapshot as the prune sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Held {
    pub snapshot: String,
    pub tenant_id: String,
    pub tenant: String,
    pub plan: String,
    /// Unix seconds the backup was taken.
    pub created: u64,
}

/// The snapshots to forget, given each plan's rule (`keep_for`, by the plan the tenant's
/// newest snapshot names).
pub fn to_forget(held: &[Held], keep_for: &dyn Fn(&str) -> Keep) -> Vec<Held> {
    let mut by_tenant: BTreeMap<&str, Vec<&Held>> = BTreeMap::new();
    for h in held {
        by_tenant.entry(&h.tenant_id).or_default().push(h);
    }
    let mut out = Vec::new();
    for snaps in by_tenant.values_mut() {
        snaps.sort_by(|a, b| b.created.cmp(&a.created).then(b.snapshot.cmp(&a.snapshot)));
        let keep = keep_for(&snaps[0].plan);
        let kept = kept(snaps, keep);
        out.extend(
            snaps
                .iter()
                .filter(|s| !kept.contains(s.snapshot.as_str()))
                .map(|s| (*s).clone()),
        );
    }
    out
}

/// The ids kept of one tenant's snapshots, newest first.
fn kept<'a>(newest_first: &[&'a Held], keep: Keep) -> BTreeSet<&'a str> {
    let mut kept = BTreeSet::new();
    for s in newest_first.iter().take(keep.last as usize) {
        kept.insert(s.snapshot.as_str());
    }
    let buckets: [(u32, Bucket); 3] = [
        (keep.daily, day),
        (keep.weekly, week),
        (keep.monthly, month),
    ];
    for (n, bucket) in buckets {
        let mut seen = BTreeSet::new();
        for s in newest_first {
            if seen.len() >= n as usize {
                break;
            }
            if seen.insert(bucket(s.created)) {
                kept.insert(s.snapshot.as_str());
            }
        }
    }
    kept
}

/// Which day, week or month a time falls in.
type Bucket = fn(u64) -> i64;

fn day(t: u64) -> i64 {
    (t / 86_400) as i64
}

fn date(t: u64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(t.min(253_402_300_799) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// The ISO week, as year × 100 + week.
fn week(t: u64) -> i64 {
    let (y, w, _) = date(t).to_iso_week_date();
    y as i64 * 100 + w as i64
}

fn month(t: u64) -> i64 {
    let d = date(t);
    d.year() as i64 * 100 + u8::from(d.month()) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;
    /// Monday 2026-11-02 00:00 UTC.
    const MONDAY: u64 = 1_793_577_600;

    fn held(id: &str, tenant_id: &str, created: u64) -> Held {
        Held {
            snapshot: id.into(),
            tenant_id: tenant_id.into(),
            tenant: "acme".into(),
            plan: "small".into(),
            created,
        }
    }

    fn forgotten(held: &[Held], keep: Keep) -> Vec<String> {
        let mut v: Vec<String> = to_forget(held, &|_| keep)
            .into_iter()
            .map(|h| h.snapshot)
            .collect();
        v.sort();
        v
    }

    fn keep(last: u32, daily: u32, weekly: u32, monthly: u32) -> Keep {
        Keep {
            last,
            daily,
            weekly,
            monthly,
        }
    }

    #[test]
    fn the_rules_keep_what_restic_would_and_forget_the_rest() {
        // Two snapshots a day for ten days from a Monday: a20 is the newest.
        let snaps: Vec<Held> = (0..20)
            .map(|i| {
                held(
                    &format!("a{:02}", i + 1),
                    "t1",
                    MONDAY + (i / 2) * DAY + (i % 2) * 3600,
                )
            })
            .collect();
        let cases = [
            // (rule, how many kept, some that must be kept, some that must go)
            (keep(1, 0, 0, 0), 1, vec!["a20"], vec!["a19", "a01"]),
            (keep(3, 0, 0, 0), 3, vec!["a20", "a19", "a18"], vec!["a17"]),
            // daily: the newest of each of the newest 3 days.
            (
                keep(1, 3, 0, 0),
                3,
                vec!["a20", "a18", "a16"],
                vec!["a19", "a17", "a15"],
            ),
            // weekly: days 0-6 are one ISO week, 7-9 the next.
            (keep(1, 0, 2, 0), 2, vec!["a20", "a14"], vec!["a13", "a01"]),
            (keep(1, 0, 0, 12), 1, vec!["a20"], vec!["a01"]),
            (keep(2, 2, 0, 0), 3, vec!["a20", "a19", "a18"], vec!["a17"]),
        ];
        for (rule, n, kept, gone) in cases {
            let f = forgotten(&snaps, rule);
            assert_eq!(20 - f.len(), n, "{rule:?}: forgot {f:?}");
            for k in kept {
                assert!(!f.contains(&k.to_string()), "{rule:?} keeps {k}: {f:?}");
            }
            for g in gone {
                assert!(f.contains(&g.to_string()), "{rule:?} forgets {g}: {f:?}");
            }
        }
    }

    #[test]
    fn each_tenant_identity_is_pruned_on_its_own_by_its_plans_rule() {
        let mut snaps = vec![
            held("old1", "old-acme", MONDAY),
            held("old2", "old-acme", MONDAY + 60),
            held("new1", "new-acme", MONDAY + DAY),
            held("new2", "new-acme", MONDAY + DAY + 60),
        ];
        snaps[3].plan = "gold".into();
        let rule = |plan: &str| match plan {
            "gold" => keep(5, 0, 0, 0),
            _ => keep(1, 0, 0, 0),
        };
        let f: Vec<String> = to_forget(&snaps, &rule)
            .into_iter()
            .map(|h| h.snapshot)
            .collect();
        // The new acme (on gold) keeps both; the old one (same name) keeps its newest.
        assert_eq!(f, ["old1"]);
    }

    #[test]
    fn an_empty_repository_forgets_nothing() {
        assert!(to_forget(&[], &|_| Keep::default()).is_empty());
    }
}
