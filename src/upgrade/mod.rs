//! Fleet upgrades: a persisted plan of waves (canary first), each tenant backed up, moved
//! blue-green or recreate behind the proxy, health-gated, and rolled back on failure; the fleet
//! halts when failures pass the limit. Survives `kill -9` at any step (see `runner::recover`).

mod commit;
mod gate;
mod images;
mod runner;
pub mod state;
mod transition;
#[cfg(test)]
mod turn_tests;
pub mod waves;

use crate::{
    backup::Backups,
    desired,
    proxy::Proxy,
    services::Cx,
    spec::{instance::InstanceFile, template::UpgradeStrategy},
};
use serde::Deserialize;
use state::{FleetStatus, HealthGate, Phase, TenantProgress, UpgradeState};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex, atomic::AtomicBool},
};
use tokio::sync::Notify;

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("upgrade {id} is {status:?}; wait for it to finish, or abort it")]
    Busy { id: String, status: FleetStatus },
    #[error("no template named {0:?}")]
    UnknownApp(String),
    #[error("app {app} has no version {to:?} (it has: {known})")]
    UnknownVersion {
        app: String,
        to: String,
        known: String,
    },
    #[error("no tenant of app {app} needs version {to}{}{}", .selector.as_ref().map(|s| format!(" among {s:?}")).unwrap_or_default(), said_skipped(.skipped))]
    NothingToDo {
        app: String,
        to: String,
        selector: Option<String>,
        /// The tenants passed over, with why (pinned, moved, a broken instance file).
        skipped: BTreeMap<String, String>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("no upgrade has run on this host")]
    NoUpgrade,
    #[error("upgrade {id} is {status:?}; only a running or paused upgrade can be {verb}")]
    NotActive {
        id: String,
        status: FleetStatus,
        verb: &'static str,
    },
    #[error("tenant {0} has no earlier version on record")]
    NoPrevious(String),
    #[error("cannot write {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// `berth upgrade APP --to V …`, as the API receives it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpgradeRequest {
    pub app: String,
    pub to: String,
    #[serde(default)]
    pub tenants: Option<String>,
    /// Label requirements the tenants must meet too (`tier=gold,!legacy`), and their plan.
    #[serde(default)]
    pub selector: Option<String>,
    #[serde(default)]
    pub plan: Option<String>,
    #[serde(default = "one")]
    pub canary: usize,
    #[serde(default = "one_str")]
    pub batch: String,
    #[serde(default)]
    pub max_failures: usize,
    /// A share of the tenants tried (0 < r ≤ 1): with it, the fleet halts only once more than
    /// `max_failures` failed and the failed share of those tried is above it.
    #[serde(default)]
    pub max_failure_ratio: Option<f64>,
    #[serde(default)]
    pub health_timeout_s: Option<u64>,
}

/// "; skipped: a (why), b (why)", or nothing.
fn said_skipped(skipped: &BTreeMap<String, String>) -> String {
    if skipped.is_empty() {
        return String::new();
    }
    let each: Vec<String> = skipped
        .iter()
        .map(|(t, why)| format!("{t} ({why})"))
        .collect();
    format!("; skipped: {}", each.join(", "))
}

fn one() -> usize {
    1
}
fn one_str() -> String {
    "1".into()
}

/// Backups, upgrades and scheduled jobs, as the daemon and the API hold them.
#[derive(Clone)]
pub struct Fleet {
    pub backups: Arc<Backups>,
    /// Tenants a killed agent left mid-restore: held until `Backups::resume` finishes them.
    pub unfinished_restores: Vec<String>,
    pub upgrades: Arc<Upgrader>,
    pub jobs: Arc<crate::jobs::Scheduler>,
    pub backup_schedule: Arc<crate::backup::schedule::BackupSchedule>,
    /// Scheduled checks of the off-host repositories.
    pub repo_checks: Arc<crate::backup::check::Checks>,
    /// Tenants moving to (or moved to) another berth host.
    pub handover: Arc<crate::handover::Handover>,
}

impl Fleet {
    /// Must run before the agent's first pass (see `Upgrader::open`).
    pub fn open(cx: Cx, proxy: Option<Arc<Proxy>>) -> Fleet {
        let backups = Arc::new(Backups::new(cx.clone()));
        let unfinished_restores = backups.hold_unfinished();
        let jobs = crate::jobs::Scheduler::new(cx.clone());
        let cx_state_dir = cx.svc.host().state_dir.clone();
        let handover = crate::handover::Handover::open(
            cx.clone(),
            proxy.clone(),
            (backups.clone(), jobs.clone()),
        );
        let upgrades = Upgrader::open(cx, proxy, backups.clone(), handover.clone());
        Fleet {
            handover,
            backups,
            unfinished_restores,
            upgrades,
            jobs,
            backup_schedule: Arc::default(),
            repo_checks: Arc::new(crate::backup::check::Checks::new(&cx_state_dir)),
        }
    }
}

pub struct Upgrader {
    cx: Cx,
    proxy: Option<Arc<Proxy>>,
    backups: Arc<Backups>,
    /// Tenants moved or being moved to another host are skipped, at the plan and at their turn.
    handover: Arc<crate::handover::Handover>,
    path: PathBuf,
    state: Mutex<Option<UpgradeState>>,
    wake: Notify,
    running: AtomicBool,
}

impl Upgrader {
    /// Loads the last upgrade. Tenants it left mid-step are held from the reconciler at once,
    /// before the agent's first pass can touch their containers; `spawn` then finishes them.
    pub fn open(
        cx: Cx,
        proxy: Option<Arc<Proxy>>,
        backups: Arc<Backups>,
        handover: Arc<crate::handover::Handover>,
    ) -> Arc<Upgrader> {
        let path = cx.svc.layout().root().join("upgrade.json");
        let loaded = state::load(&path);
        if let Some(s) = &loaded {
            for (t, p) in &s.tenants {
                if p.phase.in_flight() {
                    cx.passes.hold(t);
                }
            }
        }
        Arc::new(Upgrader {
            cx,
            proxy,
            backups,
            handover,
            path,
            state: Mutex::new(loaded),
            wake: Notify::new(),
            running: AtomicBool::new(false),
        })
    }

    pub fn status(&self) -> Option<UpgradeState> {
        self.state.lock().expect("upgrade lock").clone()
    }

    /// Plans and starts a fleet upgrade.
    pub fn start(self: &Arc<Self>, req: UpgradeRequest) -> Result<UpgradeState, UpgradeError> {
        let planned = self.plan(&req)?;
        {
            let mut cur = self.state.lock().expect("upgrade lock");
            if let Some(s) = cur.as_ref().filter(|s| s.status.is_active()) {
                return Err(UpgradeError::Busy {
                    id: s.id.clone(),
                    status: s.status,
                });
            }
            self.save(&planned)?;
            *cur = Some(planned.clone());
        }
        tracing::info!(
            id = planned.id,
            app = planned.app,
            to = planned.to,
            tenants = planned.tenants.len(),
            "upgrade started"
        );
        self.spawn();
        Ok(planned)
    }

    /// What `start` would begin, and nothing begun: the tenants, their waves, those skipped
    /// and why (`berth upgrade --dry-run`). Refused as `start` is, an upgrade under way too.
    pub fn preview(&self, req: &UpgradeRequest) -> Result<UpgradeState, UpgradeError> {
        let planned = self.plan(req)?;
        if let Some(s) = self.status().filter(|s| s.status.is_active()) {
            return Err(UpgradeError::Busy {
                id: s.id,
                status: s.status,
            });
        }
        Ok(planned)
    }

    fn plan(&self, req: &UpgradeRequest) -> Result<UpgradeState, UpgradeError> {
        let batch: waves::Batch = req
            .batch
            .parse()
            .map_err(|e: waves::BadBatch| UpgradeError::BadRequest(e.to_string()))?;
        if let Some(r) = req.max_failure_ratio.filter(|r| !(*r > 0.0 && *r <= 1.0)) {
            return Err(UpgradeError::BadRequest(format!(
                "max_failure_ratio: {r} is not a share of the fleet above 0 and at most 1"
            )));
        }
        let sel = desired::selector::Selector::parse(
            req.selector.as_deref(),
            [None, req.plan.as_deref(), None, None],
        )
        .map_err(|e| UpgradeError::BadRequest(format!("selector: {e}")))?;
        let loaded = desired::load(self.cx.svc.host());
        // The last pass's frozen tenants (file invalid or not admitted) are not taken.
        let frozen = self.cx.passes.desired().frozen.clone();
        let template = loaded
            .templates
            .get(&req.app)
            .ok_or_else(|| UpgradeError::UnknownApp(req.app.clone()))?;
        let versions = &template.file().versions;
        let Some(target) = versions.get(&req.to) else {
            return Err(UpgradeError::UnknownVersion {
                app: req.app.clone(),
                to: req.to.clone(),
                known: versions.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        };
        let strategy = target.strategy.unwrap_or(UpgradeStrategy::Recreate);
        let mut skipped = BTreeMap::new();
        let mut tenants = BTreeMap::new();
        for (t, i) in &loaded.desired.instances {
            if i.template != req.app
                || !waves::selected(req.tenants.as_deref(), t)
                || !sel.matches(&i.subject())
            {
                continue;
            }
            if let Some(why) = frozen.get(t) {
                skipped.insert(t.clone(), format!("its file is not applied: {why}"));
                continue;
            }
            if i.version == req.to {
                continue;
            }
            if self.pinned(t) {
                skipped.insert(t.clone(), format!("pinned to version {}", i.version));
                continue;
            }
            if let Some(why) = self.moving(t) {
                skipped.insert(t.clone(), why);
                continue;
            }
            tenants.insert(
                t.clone(),
                TenantProgress {
                    from: i.version.clone(),
                    phase: Phase::Pending,
                    strategy,
                    backup: None,
                    next_port: None,
                    migrated: false,
                    error: None,
                    seconds: None,
                    gate_seconds: None,
                },
            );
        }
        for t in loaded.desired.frozen.keys() {
            if waves::selected(req.tenants.as_deref(), t) {
                skipped.insert(t.clone(), "instance file has errors".into());
            }
        }
        if tenants.is_empty() {
            return Err(UpgradeError::NothingToDo {
                app: req.app.clone(),
                to: req.to.clone(),
                selector: req.tenants.clone(),
                skipped,
            });
        }
        let names: Vec<String> = tenants.keys().cloned().collect();
        let started = runner::now();
        Ok(UpgradeState {
            id: format!("{}-{}", req.app, started),
            app: req.app.clone(),
            to: req.to.clone(),
            status: FleetStatus::Running,
            canary: req.canary,
            batch,
            max_failures: req.max_failures,
            max_failure_ratio: req.max_failure_ratio,
            health: HealthGate {
                timeout_s: req
                    .health_timeout_s
                    .unwrap_or(HealthGate::default().timeout_s),
                ..HealthGate::default()
            },
            waves: waves::waves(&names, req.canary, batch),
            wave: 0,
            skipped,
            tenants,
            reason: None,
            started,
            finished: None,
        })
    }

    fn pinned(&self, tenant: &str) -> bool {
        self.read_file(tenant).is_ok_and(|f| f.pinned)
    }

    fn read_file(&self, tenant: &str) -> Result<InstanceFile, crate::spec::SpecError> {
        let path = self
            .cx
            .svc
            .host()
            .instances_dir
            .join(format!("{tenant}.yaml"));
        let shown = crate::spec::shown_path(&path, 2);
        crate::spec::load_yaml::<InstanceFile>(&path, &shown).map(|l| l.value)
    }

    pub fn pause(&self) -> Result<UpgradeState, UpgradeError> {
        self.set_status("paused", |s| {
            (s == FleetStatus::Running).then_some(FleetStatus::Paused)
        })
    }

    pub fn resume(self: &Arc<Self>) -> Result<UpgradeState, UpgradeError> {
        let s = self.set_status("resumed", |s| {
            (s == FleetStatus::Paused).then_some(FleetStatus::Running)
        })?;
        self.spawn();
        Ok(s)
    }

    /// Stops after the tenants in transition finish; nothing is undone.
    pub fn abort(&self) -> Result<UpgradeState, UpgradeError> {
        self.set_status("aborted", |s| s.is_active().then_some(FleetStatus::Aborted))
    }

    fn set_status(
        &self,
        verb: &'static str,
        next: impl FnOnce(FleetStatus) -> Option<FleetStatus>,
    ) -> Result<UpgradeState, UpgradeError> {
        let mut cur = self.state.lock().expect("upgrade lock");
        let s = cur.as_mut().ok_or(UpgradeError::NoUpgrade)?;
        let to = next(s.status).ok_or_else(|| UpgradeError::NotActive {
            id: s.id.clone(),
            status: s.status,
            verb,
        })?;
        s.status = to;
        if to == FleetStatus::Aborted {
            s.finished = Some(runner::now());
        }
        self.save(s)?;
        self.wake.notify_waiters();
        Ok(s.clone())
    }

    /// `berth rollback T`: a one-tenant upgrade back to the version it had before its last one.
    pub fn rollback(self: &Arc<Self>, tenant: &str) -> Result<UpgradeState, UpgradeError> {
        let prev = transition::previous(self.cx.svc.layout(), tenant)
            .ok_or_else(|| UpgradeError::NoPrevious(tenant.into()))?;
        let inst = self
            .cx
            .passes
            .desired()
            .instances
            .get(tenant)
            .cloned()
            .ok_or_else(|| UpgradeError::NoPrevious(tenant.into()))?;
        self.start(UpgradeRequest {
            app: inst.template,
            to: prev,
            tenants: Some(tenant.into()),
            selector: None,
            plan: None,
            canary: 0,
            batch: "1".into(),
            max_failures: 0,
            max_failure_ratio: None,
            health_timeout_s: None,
        })
    }

    /// Restores a backup in place with the tenant's requests held at the proxy meanwhile, so
    /// nobody sees the database half restored. `safety`: a safety backup first (see
    /// `Backups::restore`).
    pub async fn restore(
        &self,
        tenant: &str,
        id: &str,
        safety: bool,
    ) -> Result<crate::backup::archive::Manifest, crate::backup::BackupError> {
        let gate = self.proxy.as_ref().and_then(|p| p.gate(tenant));
        // Paused once the restore holds the tenant: a refused restore (another operation
        // holds it, and may have paused the gate itself) leaves the gate as it was.
        let holder = crate::backup::restore::Holder::Restore;
        self.backups
            .restore_with(tenant, id, safety, holder, || Paused::new(gate))
            .await
    }

    fn save(&self, s: &UpgradeState) -> Result<(), UpgradeError> {
        state::save(&self.path, s).map_err(|source| UpgradeError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }

    /// Changes one tenant's progress and persists the whole state before returning.
    fn update(&self, tenant: &str, f: impl FnOnce(&mut TenantProgress)) {
        let mut cur = self.state.lock().expect("upgrade lock");
        let Some(s) = cur.as_mut() else { return };
        if let Some(p) = s.tenants.get_mut(tenant) {
            f(p);
        }
        if let Err(e) = self.save(s) {
            tracing::error!(error = %e, "upgrade state not saved");
        }
    }

    fn progress(&self, tenant: &str) -> Option<(TenantProgress, String, HealthGate)> {
        let cur = self.state.lock().expect("upgrade lock");
        let s = cur.as_ref()?;
        Some((
            s.tenants.get(tenant)?.clone(),
            s.to.clone(),
            s.health.clone(),
        ))
    }
}

/// A tenant's edge gate paused (its requests held) until this is dropped: a restore that
/// fails, panics or is dropped never leaves the gate paused.
struct Paused(Option<Arc<crate::proxy::gate::Gate>>);

impl Paused {
    fn new(gate: Option<Arc<crate::proxy::gate::Gate>>) -> Paused {
        if let Some(g) = &gate {
            g.pause();
        }
        Paused(gate)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.resume();
        }
    }
}
