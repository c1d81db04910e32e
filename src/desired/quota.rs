//! A plan's quotas beyond container limits: the tenant's own disk, what the proxy admits for it
//! (request rate, requests in flight, body size) and how many custom domains it may claim.

use super::limits::LimitError;
use crate::spec::{instance::LimitsFile, units};
use serde::Serialize;

/// The smallest tenant filesystem: ext4 needs room for its journal and the app its files.
const MIN_DISK: u64 = 64 << 20;

/// What the proxy enforces for one tenant; None is "no limit beyond the proxy's own".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct EdgeQuota {
    /// Requests per second (token bucket refill).
    pub rate: Option<u32>,
    /// Bucket size: requests admitted at once above the rate.
    pub burst: Option<u32>,
    /// Requests in flight to the tenant's app at once.
    pub connections: Option<u32>,
    pub max_body: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Bytes of the tenant's own filesystem; None: its volumes live on the engine's disk.
    pub disk: Option<u64>,
    pub inodes: Option<u64>,
    pub edge: EdgeQuota,
    /// Custom domains plus aliases.
    pub domains: Option<u32>,
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &'static str,
    v: T,
    lo: T,
    hi: T,
) -> Result<T, LimitError> {
    if v < lo || v > hi {
        return Err(LimitError {
            field,
            message: format!("{v} is out of range ({lo}..={hi})"),
        });
    }
    Ok(v)
}

fn bytes(field: &'static str, s: &str, min: u64, min_text: &str) -> Result<u64, LimitError> {
    let b = units::parse_bytes(s)
        .map_err(String::from)
        .map_err(|message| LimitError { field, message })?;
    if b < min {
        return Err(LimitError {
            field,
            message: format!("{s} is below the minimum of {min_text}"),
        });
    }
    Ok(b)
}

impl Quota {
    /// `base` with the values `file` sets replaced, validated.
    pub fn overlay(base: Quota, file: &LimitsFile) -> Result<Quota, LimitError> {
        let mut q = base;
        if let Some(d) = &file.disk {
            q.disk = Some(bytes("disk", d, MIN_DISK, "64m")?);
        }
        if let Some(i) = file.inodes {
            q.inodes = Some(range("inodes", i, 1024, 1 << 32)?);
        }
        if let Some(r) = file.rate {
            q.edge.rate = Some(range("rate", r, 1, 1_000_000)?);
        }
        if let Some(b) = file.burst {
            q.edge.burst = Some(range("burst", b, 1, 1_000_000)?);
        }
        if let Some(c) = file.connections {
            q.edge.connections = Some(range("connections", c, 1, 1_000_000)?);
        }
        if let Some(m) = &file.max_body {
            q.edge.max_body = Some(bytes("max_body", m, 1024, "1k")?);
        }
        if let Some(d) = file.domains {
            q.domains = Some(range("domains", d, 0, 10_000)?);
        }
        if q.inodes.is_some() && q.disk.is_none() {
            return Err(LimitError {
                field: "inodes",
                message: "an inode limit needs a disk quota (set disk too)".into(),
            });
        }
        if q.edge.burst.is_some() && q.edge.rate.is_none() {
            return Err(LimitError {
                field: "burst",
                message: "a burst needs a rate (set rate too)".into(),
            });
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(y: &str) -> LimitsFile {
        serde_yaml::from_str(y).unwrap()
    }

    #[test]
    fn a_plan_sets_quotas_and_an_instance_overrides_one() {
        let plan = Quota::overlay(
            Quota::default(),
            &file("{disk: 1g, rate: 50, burst: 100, connections: 20, max_body: 10m, domains: 3}"),
        )
        .unwrap();
        assert_eq!(plan.disk, Some(1 << 30));
        assert_eq!(plan.edge.rate, Some(50));
        assert_eq!(plan.edge.max_body, Some(10 << 20));
        let inst = Quota::overlay(plan, &file("{rate: 5}")).unwrap();
        assert_eq!(inst.edge.rate, Some(5));
        assert_eq!(inst.edge.burst, Some(100));
        assert_eq!(inst.domains, Some(3));
    }

    #[test]
    fn bad_values_name_the_field_and_the_range() {
        let e = Quota::overlay(Quota::default(), &file("{disk: 1m}")).unwrap_err();
        assert_eq!(e.field, "disk");
        assert!(e.message.contains("minimum of 64m"), "{}", e.message);
        let e = Quota::overlay(Quota::default(), &file("{rate: 0}")).unwrap_err();
        assert_eq!(e.field, "rate");
        assert!(e.message.contains("1..=1000000"), "{}", e.message);
        let e = Quota::overlay(Quota::default(), &file("{disk: lots}")).unwrap_err();
        assert_eq!(e.field, "disk");
    }

    #[test]
    fn limits_that_need_another_say_which() {
        let e = Quota::overlay(Quota::default(), &file("{burst: 10}")).unwrap_err();
        assert_eq!((e.field, e.message.contains("rate")), ("burst", true));
        let e = Quota::overlay(Quota::default(), &file("{inodes: 5000}")).unwrap_err();
        assert_eq!((e.field, e.message.contains("disk")), ("inodes", true));
    }
}
