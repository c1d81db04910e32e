//! A tenant's backup policy: how many archives it keeps and when it is backed up unasked.

use super::limits::LimitError;
use crate::spec::instance::BackupsFile;
use serde::Serialize;

/// Archives kept per tenant when its plan says nothing.
pub const DEFAULT_KEEP: u32 = 7;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackupPolicy {
    pub keep: u32,
    /// Cron expression (UTC); None: only on demand and before upgrades.
    pub schedule: Option<String>,
    /// Bytes the archives kept may use together; None: no budget.
    pub budget: Option<u64>,
    /// What `berth backup prune` keeps of this plan's tenants off the host.
    pub offsite_keep: Keep,
}

/// Off-host retention (restic's `--keep-last/daily/weekly/monthly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Keep {
    pub last: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Default for Keep {
    /// The newest, a week of dailies, a month of weeklies, a year of monthlies.
    fn default() -> Self {
        Keep {
            last: 1,
            daily: 7,
            weekly: 4,
            monthly: 12,
        }
    }
}

impl Keep {
    fn overlay(self, f: &crate::spec::instance::KeepFile) -> Result<Keep, LimitError> {
        let mut out = self;
        let fields = [
            ("last", f.last, &mut out.last),
            ("daily", f.daily, &mut out.daily),
            ("weekly", f.weekly, &mut out.weekly),
            ("monthly", f.monthly, &mut out.monthly),
        ];
        for (name, given, into) in fields {
            match given {
                Some(n) if n <= 1000 => *into = n,
                Some(n) => {
                    return Err(LimitError {
                        field: "backups.offsite_keep",
                        message: format!("{name}: {n} is out of range (0..=1000)"),
                    });
                }
                None => {}
            }
        }
        if out.last == 0 {
            return Err(LimitError {
                field: "backups.offsite_keep",
                message: "last must be at least 1: a prune never leaves a tenant without its newest snapshot".into(),
            });
        }
        Ok(out)
    }
}

/// The smallest budget a plan may set.
pub const MIN_BUDGET: u64 = 1 << 20;

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            keep: DEFAULT_KEEP,
            schedule: None,
            budget: None,
            offsite_keep: Keep::default(),
        }
    }
}

impl BackupPolicy {
    /// `base` with the values `file` sets replaced, validated.
    pub fn overlay(base: BackupPolicy, file: &BackupsFile) -> Result<BackupPolicy, LimitError> {
        let mut out = base;
        if let Some(k) = file.keep {
            if !(1..=1000).contains(&k) {
                return Err(LimitError {
                    field: "backups.keep",
                    message: format!("{k} is out of range (1..=1000)"),
                });
            }
            out.keep = k;
        }
        if let Some(s) = &file.schedule {
            super::schedule::parse(s).map_err(|m| LimitError {
                field: "backups.schedule",
                message: m.to_string(),
            })?;
            out.schedule = Some(s.clone());
        }
        if let Some(b) = &file.budget {
            let field = "backups.budget";
            let bytes = crate::spec::units::parse_bytes(b)
                .map_err(String::from)
                .map_err(|message| LimitError { field, message })?;
            if bytes < MIN_BUDGET {
                return Err(LimitError {
                    field,
                    message: format!("{b} is below the minimum of 1m"),
                });
            }
            out.budget = Some(bytes);
        }
        if let Some(k) = &file.offsite_keep {
            out.offsite_keep = out.offsite_keep.overlay(k)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_sets_keep_and_schedule_and_an_instance_overrides_one() {
        let plan = BackupPolicy::overlay(
            BackupPolicy::default(),
            &BackupsFile {
                keep: Some(14),
                schedule: Some("0 3 * * *".into()),
                budget: Some("2g".into()),
                offsite_keep: None,
            },
        )
        .unwrap();
        let mine = BackupPolicy::overlay(
            plan,
            &BackupsFile {
                keep: Some(30),
                schedule: None,
                budget: None,
                offsite_keep: None,
            },
        )
        .unwrap();
        assert_eq!(
            (mine.keep, mine.schedule.as_deref(), mine.budget),
            (30, Some("0 3 * * *"), Some(2 << 30))
        );
    }

    #[test]
    fn a_bad_schedule_or_keep_names_the_field() {
        let bad = |f: BackupsFile| BackupPolicy::overlay(BackupPolicy::default(), &f).unwrap_err();
        let e = bad(BackupsFile {
            keep: None,
            schedule: Some("every day".into()),
            ..Default::default()
        });
        assert_eq!(e.field, "backups.schedule");
        let e = bad(BackupsFile {
            keep: Some(0),
            ..Default::default()
        });
        assert_eq!(e.field, "backups.keep");
        for b in ["lots", "10k", "-1g"] {
            let e = bad(BackupsFile {
                budget: Some(b.into()),
                ..Default::default()
            });
            assert_eq!(e.field, "backups.budget", "{b}");
        }
    }
}
