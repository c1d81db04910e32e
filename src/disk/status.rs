//! What `berth status` says about one tenant's disk quota: never a quota that is not enforced.

use super::{Disks, Usage};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DiskStatus {
    /// The plan's `disk`, None when the tenant has none.
    pub quota: Option<u64>,
    /// `enforced`, `none` (no disk in the plan: volumes on the engine's disk), `not mounted yet`
    /// or `not enforced: <why this host cannot>`.
    pub state: String,
    pub usage: Option<Usage>,
}

/// `volumes`: the tenant's volume names; one without its directory on the filesystem still
/// lives on the engine's disk (its move is pending or was refused), so the quota does not
/// cover it yet.
pub fn status(
    disks: Result<&Disks, impl std::fmt::Display>,
    tenant: &str,
    quota: Option<u64>,
    volumes: &[String],
) -> DiskStatus {
    let (state, usage) = match (quota, disks) {
        (None, _) => ("none".to_string(), None),
        (Some(_), Err(why)) => (format!("not enforced: {why}"), None),
        (Some(_), Ok(d)) => match d.usage_of(tenant) {
            None => ("not mounted yet".to_string(), None),
            Some(u) => {
                let outside: Vec<&str> = volumes
                    .iter()
                    .filter(|v| !d.volume_dir(tenant, v).is_dir())
                    .map(String::as_str)
                    .collect();
                let state = match outside.as_slice() {
                    [] => "enforced".to_string(),
                    v => format!(
                        "not enforced yet: volumes {} are on the engine's disk",
                        v.join(", ")
                    ),
                };
                (state, Some(u))
            }
        },
    };
    DiskStatus {
        quota,
        state,
        usage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_without_loop_devices_says_the_quota_is_not_enforced_and_why() {
        let s = status(Err("no /dev/loop-control"), "a", Some(1 << 30), &[]);
        assert_eq!(s.state, "not enforced: no /dev/loop-control");
        assert_eq!(s.usage, None);
        assert_eq!(s.quota, Some(1 << 30));
    }

    #[test]
    fn a_tenant_without_a_disk_in_its_plan_has_none() {
        assert_eq!(status(Err("x"), "a", None, &[]).state, "none");
    }
}
