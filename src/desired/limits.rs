//! Resource limits of an instance, and how they are split among its services.

use crate::spec::{instance::LimitsFile, units};
use serde::Serialize;

/// Memory of an instance that names no plan and no limits (512 MiB).
pub const DEFAULT_MEMORY: u64 = 512 << 20;
/// CPUs of an instance that names no plan and no limits.
pub const DEFAULT_CPUS: f64 = 1.0;
/// Processes of an instance that names no plan and no limits (a fork bomb stops here).
pub const DEFAULT_PIDS: i64 = 512;
/// Docker refuses memory limits under 6 MiB.
const MIN_MEMORY: u64 = 6 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    pub memory: u64,
    pub cpus: f64,
    pub pids: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: DEFAULT_MEMORY,
            cpus: DEFAULT_CPUS,
            pids: DEFAULT_PIDS,
        }
    }
}

/// Which field of a limits block is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitError {
    pub field: &'static str,
    pub message: String,
}

impl Limits {
    /// `base` with the values `file` sets replaced, validated.
    pub fn overlay(base: Limits, file: &LimitsFile) -> Result<Limits, LimitError> {
        let mut out = base;
        if let Some(m) = &file.memory {
            out.memory = units::parse_bytes(m)
                .map_err(String::from)
                .map_err(|message| LimitError {
                    field: "memory",
                    message,
                })?;
            if out.memory < MIN_MEMORY {
                return Err(LimitError {
                    field: "memory",
                    message: format!("{m} is below the minimum of 6m"),
                });
            }
        }
        if let Some(c) = file.cpus {
            if !(c > 0.0 && c <= 1024.0) {
                return Err(LimitError {
                    field: "cpus",
                    message: format!("{c} is out of range (0 < cpus <= 1024)"),
                });
            }
            out.cpus = c;
        }
        if let Some(p) = file.pids {
            if !(16..=4_194_304).contains(&p) {
                return Err(LimitError {
                    field: "pids",
                    message: format!("{p} is out of range (16..=4194304)"),
                });
            }
            out.pids = p;
        }
        Ok(out)
    }

    /// This service's part of the instance's limits, by `share` of `total` shares.
    /// Each part keeps a floor so a small share still starts.
    pub fn part(&self, share: u32, total: u32) -> Limits {
        let f = f64::from(share) / f64::from(total.max(1));
        Limits {
            memory: ((self.memory as f64 * f) as u64).max(MIN_MEMORY),
            cpus: (self.cpus * f).max(0.01),
            pids: ((self.pids as f64 * f) as i64).max(16),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_replaces_only_the_values_given() {
        let f = LimitsFile {
            memory: Some("1g".into()),
            cpus: None,
            ..Default::default()
        };
        let l = Limits::overlay(Limits::default(), &f).unwrap();
        assert_eq!(l.memory, 1 << 30);
        assert_eq!(l.pids, DEFAULT_PIDS);
    }

    #[test]
    fn out_of_range_values_name_the_field() {
        let f = LimitsFile {
            memory: None,
            cpus: Some(0.0),
            ..Default::default()
        };
        assert_eq!(
            Limits::overlay(Limits::default(), &f).unwrap_err().field,
            "cpus"
        );
        let f = LimitsFile {
            memory: Some("1m".into()),
            cpus: None,
            ..Default::default()
        };
        assert!(
            Limits::overlay(Limits::default(), &f)
                .unwrap_err()
                .message
                .contains("minimum")
        );
    }

    #[test]
    fn parts_split_by_share() {
        let l = Limits {
            memory: 1 << 30,
            cpus: 1.0,
            pids: 400,
        };
        let p = l.part(1, 4);
        assert_eq!(p.memory, 256 << 20);
        assert_eq!(p.pids, 100);
    }
}
