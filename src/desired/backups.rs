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
}

/// The smallest budget a plan may set.
pub const MIN_BUDGET: u64 = 1 << 20;

impl Default for BackupPolicy {
    fn default() -> Self {
        BackupPolicy {
            keep: DEFAULT_KEEP,
            schedule: None,
            budget: None,
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
            },
        )
        .unwrap();
        let mine = BackupPolicy::overlay(
            plan,
            &BackupsFile {
                keep: Some(30),
                schedule: None,
                budget: None,
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
            budget: None,
        });
        assert_eq!(e.field, "backups.schedule");
        let e = bad(BackupsFile {
            keep: Some(0),
            schedule: None,
            budget: None,
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
