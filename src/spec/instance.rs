//! Raw tenant instance files (`instances/<tenant>.yaml`), as written.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(
    Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Default, Hash, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    #[default]
    Running,
    Stopped,
    /// Stopped, and (with the proxy) answered by a maintenance page.
    Suspended,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Stopped => "stopped",
            RunState::Suspended => "suspended",
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
    /// Size of the tenant's own filesystem (all its volumes, the database's data included).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Files and directories on that filesystem.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inodes: Option<u64>,
    /// Requests per second admitted at the proxy (token bucket refill rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u32>,
    /// Requests admitted at once above the rate (bucket size; default: the rate).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Requests (WebSocket tunnels included) in flight to the tenant's app at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<u32>,
    /// Largest request body the proxy passes on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_body: Option<String>,
    /// Custom domains and aliases the tenant may claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domains: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backups: Option<BackupsFile>,
    /// Destinations beyond the default egress policy: `CIDR`, `CIDR:PORT`, `CIDR:PORT/udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<String>>,
    /// With no request for this long the tenant's containers stop (`asleep`) until the next
    /// request wakes it; `never` turns it off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_after: Option<String>,
    /// Share of its memory a tenant that may sleep reserves at admission (0 < r <= 1; default
    /// 1): sleepers are mostly asleep, so a provider may count them at less.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sleep_memory: Option<f64>,
    /// What the tenant may send through the shared mail relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<MailLimitsFile>,
}

/// Per-tenant limits of the shared mail relay; each refusal is an SMTP 4xx/5xx with the reason.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MailLimitsFile {
    /// Messages accepted per rolling hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_hour: Option<u32>,
    /// Messages accepted per rolling day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_day: Option<u32>,
    /// Recipients of one message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipients: Option<u32>,
    /// Largest message (headers and body), e.g. `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<String>,
}

/// How often a tenant is backed up on its own and how many archives it keeps.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupsFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep: Option<u32>,
    /// Cron expression (UTC), five fields or six with seconds first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Bytes the archives kept may use together (`5g`); a backup that would pass it stops.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<String>,
    /// How many off-host snapshots `berth backup prune` keeps of each tenant on this plan (a
    /// plan's setting only: the prune runs where instance files are not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offsite_keep: Option<KeepFile>,
}

/// restic-style retention: the newest `last`, and the newest of each of the last `daily` days,
/// `weekly` ISO weeks and `monthly` months that have one.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeepFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monthly: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstanceFile {
    pub tenant: String,
    pub template: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
    /// Extra names that redirect (308) to the primary domain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Mounts under a provider's shared domain, as `example.com/acme`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsFile>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub parameters: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    pub state: RunState,
    /// Fleet upgrades leave this tenant on its version (it is listed as skipped).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pinned: bool,
    /// The operator's own labels (`tier: gold`), for selectors (`berth ls -l tier=gold`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
