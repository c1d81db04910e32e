//! The persisted fleet upgrade: its waves and every tenant's phase, rewritten atomically after
//! each step so a restarted agent knows exactly where each tenant stands.

use super::waves::Batch;
use crate::spec::template::UpgradeStrategy;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FleetStatus {
    Running,
    /// The current wave finishes; no new wave starts until resumed.
    Paused,
    /// Failures passed the limit; the remaining tenants were not touched.
    Halted,
    Aborted,
    Done,
}

impl FleetStatus {
    pub fn is_active(self) -> bool {
        matches!(self, FleetStatus::Running | FleetStatus::Paused)
    }
}

/// Where one tenant is. The order of the variants is the order of the steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = UpgradePhase)]
pub enum Phase {
    Pending,
    BackingUp,
    /// The new web container is being created, migrated and health-checked (old one serving,
    /// or, for recreate, stopped with requests held).
    Starting,
    /// Blue-green: the allocation's port is being moved to the new container.
    Switching,
    /// The new version serves; what is left is bookkeeping (file, old container, name).
    Switched,
    Done,
    /// Failed and returned to the old version, serving.
    RolledBack,
    /// Not started: no backup could be taken, or the version does not fit this tenant.
    Failed,
}

impl Phase {
    pub fn in_flight(self) -> bool {
        matches!(
            self,
            Phase::BackingUp | Phase::Starting | Phase::Switching | Phase::Switched
        )
    }
    pub fn failed(self) -> bool {
        matches!(self, Phase::RolledBack | Phase::Failed)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct TenantProgress {
    pub from: String,
    pub phase: Phase,
    pub strategy: UpgradeStrategy,
    #[serde(default)]
    pub backup: Option<String>,
    /// The blue-green candidate's port, once reserved.
    #[serde(default)]
    pub next_port: Option<u16>,
    /// A migration ran against the database: a rollback must restore the backup.
    #[serde(default)]
    pub migrated: bool,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub seconds: Option<f64>,
    /// From starting the new container to passing the health gate (the part no tool can skip).
    #[serde(default)]
    pub gate_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct HealthGate {
    /// Consecutive 2xx answers needed.
    pub passes: u32,
    pub timeout_s: u64,
    /// After passing, the app is watched this long; any failure in it fails the gate.
    pub watch_s: u64,
}

impl Default for HealthGate {
    fn default() -> HealthGate {
        HealthGate {
            passes: 3,
            timeout_s: 60,
            watch_s: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct UpgradeState {
    pub id: String,
    pub app: String,
    pub to: String,
    pub status: FleetStatus,
    pub canary: usize,
    pub batch: Batch,
    pub max_failures: usize,
    /// With it, the fleet halts only once more than `max_failures` failed and the failed share
    /// of the tenants tried so far is above it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_failure_ratio: Option<f64>,
    pub health: HealthGate,
    pub waves: Vec<Vec<String>>,
    /// Index of the wave running (or next to run).
    pub wave: usize,
    /// Tenants of the app that were not selected for a reason worth listing (pinned, …).
    pub skipped: BTreeMap<String, String>,
    pub tenants: BTreeMap<String, TenantProgress>,
    #[serde(default)]
    pub reason: Option<String>,
    pub started: u64,
    #[serde(default)]
    pub finished: Option<u64>,
}

impl UpgradeState {
    pub fn failures(&self) -> usize {
        self.tenants.values().filter(|t| t.phase.failed()).count()
    }
    /// Tenants whose move ended, either way.
    pub fn tried(&self) -> usize {
        self.tenants
            .values()
            .filter(|t| t.phase == Phase::Done || t.phase.failed())
            .count()
    }

    /// Why the fleet halts after a wave, if it does: more than `max_failures` failed tenants
    /// and, with `max_failure_ratio`, a failed share of those tried above it.
    pub fn halt_reason(&self) -> Option<String> {
        let failures = self.failures();
        if failures <= self.max_failures {
            return None;
        }
        let limit = self.max_failures;
        let Some(ratio) = self.max_failure_ratio else {
            return Some(format!("{failures} tenant(s) failed; the limit is {limit}"));
        };
        let tried = self.tried().max(1);
        let share = failures as f64 / tried as f64;
        (share > ratio).then(|| {
            format!(
                "{failures} of {tried} tenant(s) tried failed ({:.0} %); the limits are {limit} and {:.0} %",
                share * 100.0,
                ratio * 100.0
            )
        })
    }

    pub fn done(&self) -> usize {
        self.tenants
            .values()
            .filter(|t| t.phase == Phase::Done)
            .count()
    }
}

pub fn load(path: &Path) -> Option<UpgradeState> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "unreadable upgrade state ignored");
            None
        }
    }
}

pub fn save(path: &Path, s: &UpgradeState) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(s).expect("state serializes");
    crate::store::atomic::write(path, &json, 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fleet state with `failed` failed tenants, `done` moved ones and `pending` to go.
    fn fleet(failed: usize, done: usize, pending: usize, ratio: Option<f64>) -> UpgradeState {
        let mut s = UpgradeState {
            id: "demo-1".into(),
            app: "demo".into(),
            to: "2".into(),
            status: FleetStatus::Running,
            canary: 1,
            batch: super::super::waves::Batch::Count(1),
            max_failures: 1,
            max_failure_ratio: None,
            health: HealthGate::default(),
            waves: vec![],
            wave: 0,
            skipped: BTreeMap::new(),
            tenants: BTreeMap::new(),
            reason: None,
            started: 0,
            finished: None,
        };
        s.max_failure_ratio = ratio;
        let phases = [
            (failed, Phase::Failed),
            (done, Phase::Done),
            (pending, Phase::Pending),
        ];
        for (n, phase) in phases {
            for _ in 0..n {
                let t = format!("t{}", s.tenants.len());
                let p = TenantProgress {
                    from: "1".into(),
                    phase,
                    strategy: crate::spec::template::UpgradeStrategy::Recreate,
                    backup: None,
                    next_port: None,
                    migrated: false,
                    error: None,
                    seconds: None,
                    gate_seconds: None,
                };
                s.tenants.insert(t, p);
            }
        }
        s
    }

    #[test]
    fn the_fleet_halts_past_the_count_and_with_a_ratio_only_past_both() {
        assert_eq!(
            fleet(1, 5, 10, None).halt_reason(),
            None,
            "one failure is tolerated"
        );
        assert!(
            fleet(2, 5, 10, None)
                .halt_reason()
                .unwrap()
                .contains("limit is 1")
        );
        // 2 of 20 tried (10 %) under a 20 % ratio: on.
        assert_eq!(fleet(2, 18, 5, Some(0.2)).halt_reason(), None);
        // 5 of 20 (25 %): halted, the share said.
        let r = fleet(5, 15, 5, Some(0.2)).halt_reason().unwrap();
        assert!(r.contains("5 of 20") && r.contains("25 %"), "{r}");
        // Above the ratio but not past the count: on.
        assert_eq!(fleet(1, 1, 5, Some(0.2)).halt_reason(), None);
    }
}
