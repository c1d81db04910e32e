//! The prober: one entry per probed container with its health, streaks and next due time; a
//! loop that starts due probes under a shared bound; the overlay of results onto an inventory.

use super::{Checker, ProbeConfig, Target};
use crate::runtime::{Health, Inventory, RunStatus};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{Notify, Semaphore},
    time::Instant,
};

struct Entry {
    target: Target,
    health: Health,
    seen: Instant,
    ok: u32,
    fail: u32,
    due: Instant,
    busy: bool,
    last_error: Option<String>,
    last_seconds: f64,
    probes: u64,
    failures: u64,
}

impl Entry {
    fn new(target: Target, now: Instant) -> Entry {
        Entry {
            target,
            health: Health::Starting,
            seen: now,
            ok: 0,
            fail: 0,
            due: now,
            busy: false,
            last_error: None,
            last_seconds: 0.0,
            probes: 0,
            failures: 0,
        }
    }
}

/// One target's latest result (for `berth status` and `/metrics`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProbeStatus {
    pub container: String,
    pub tenant: String,
    pub service: String,
    pub check: &'static str,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_seconds: f64,
    pub probes: u64,
    pub failures: u64,
}

pub struct Prober {
    cfg: ProbeConfig,
    checker: Arc<dyn Checker>,
    table: Mutex<BTreeMap<String, Entry>>,
    permits: Semaphore,
    /// Told when a target's health changes (the reconciler's kick).
    changed: Arc<Notify>,
    /// Wakes the loop when targets are added or reset.
    wake: Notify,
    /// Tenants whose verdicts someone waits on by reading the table (a wake's fast path):
    /// their changes kick no pass.
    watched: Mutex<BTreeSet<String>>,
}

fn jittered(d: Duration) -> Duration {
    let r = f64::from(getrandom::u32().unwrap_or(u32::MAX / 2)) / f64::from(u32::MAX);
    d.mul_f64(0.9 + 0.2 * r)
}

fn rank(h: Health) -> u8 {
    match h {
        Health::Healthy => 0,
        Health::Starting => 1,
        Health::Unhealthy => 2,
    }
}

impl Prober {
    pub fn new(cfg: ProbeConfig, checker: Arc<dyn Checker>, changed: Arc<Notify>) -> Arc<Prober> {
        Arc::new(Prober {
            permits: Semaphore::new(cfg.concurrency),
            cfg,
            checker,
            table: Mutex::default(),
            changed,
            wake: Notify::new(),
            watched: Mutex::default(),
        })
    }

    /// While `on`, a change of `tenant`'s health kicks no pass: its watcher reads the table.
    pub fn watch(&self, tenant: &str, on: bool) {
        let mut w = self.watched.lock().expect("watched lock");
        match on {
            true => w.insert(tenant.to_string()),
            false => w.remove(tenant),
        };
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.table.lock().expect("probe table lock")
    }

    /// Makes `targets` the probed set: new (or changed) targets start over as starting and
    /// are due at once; targets no longer given are dropped. Tenants in `skip` (a wake is
    /// starting them, outside the pass that observed `targets`) keep their entries.
    pub fn sync(&self, targets: Vec<Target>, skip: &BTreeSet<String>) {
        let targets = targets
            .into_iter()
            .filter(|t| !skip.contains(&t.tenant))
            .collect();
        self.replace(targets, |e| !skip.contains(&e.target.tenant));
    }

    /// Makes `targets` the probed set of `tenant` alone.
    pub fn sync_tenant(&self, tenant: &str, targets: Vec<Target>) {
        self.replace(targets, |e| e.target.tenant == tenant);
    }

    /// Whether every target of `tenant` is healthy (None when it has none).
    pub fn tenant_healthy(&self, tenant: &str) -> Option<bool> {
        let tab = self.lock();
        let mut of = tab
            .values()
            .filter(|e| e.target.tenant == tenant)
            .peekable();
        of.peek()?;
        Some(of.all(|e| e.health == Health::Healthy))
    }

    /// The first failing probe of `tenant`, as `berth status` words it.
    pub fn tenant_error(&self, tenant: &str) -> Option<String> {
        let tab = self.lock();
        tab.values()
            .filter(|e| e.target.tenant == tenant && e.health != Health::Healthy)
            .find_map(|e| {
                let why = e.last_error.as_deref()?;
                Some(format!(
                    "{} {} probe failing: {why}",
                    e.target.service,
                    e.target.check.kind()
                ))
            })
    }

    /// Replaces the entries `within` covers by `targets`, keeping unchanged ones as they are.
    fn replace(&self, targets: Vec<Target>, within: impl Fn(&Entry) -> bool) {
        let now = Instant::now();
        let mut tab = self.lock();
        let keep: BTreeSet<String> = targets.iter().map(|t| t.container.clone()).collect();
        tab.retain(|k, e| keep.contains(k) || !within(e));
        let mut added = false;
        for t in targets {
            match tab.get_mut(&t.container) {
                Some(e) if e.target.check == t.check => {
                    if t.fast && !e.target.fast {
                        e.due = e.due.min(now + self.cfg.fast_interval);
                    }
                    e.target = t;
                }
                _ => {
                    tab.insert(t.container.clone(), Entry::new(t, now));
                    added = true;
                }
            }
        }
        drop(tab);
        if added {
            self.wake.notify_one();
        }
    }

    /// The container started or died: what was known about it no longer holds.
    pub fn reset(&self, container: &str) {
        let now = Instant::now();
        if let Some(e) = self.lock().get_mut(container) {
            *e = Entry::new(e.target.clone(), now);
            self.wake.notify_one();
        }
    }

    /// Writes the probed health into each running container of `inv` (the worse of it and
    /// an opt-in Docker healthcheck's).
    pub fn overlay(&self, inv: &mut Inventory) {
        let tab = self.lock();
        for c in inv.containers.iter_mut() {
            if c.status != RunStatus::Running {
                continue;
            }
            if let Some(e) = tab.get(&c.name) {
                c.health = Some(match c.health {
                    Some(d) if rank(d) > rank(e.health) => d,
                    _ => e.health,
                });
            }
        }
    }

    pub fn snapshot(&self) -> Vec<ProbeStatus> {
        self.lock()
            .values()
            .map(|e| ProbeStatus {
                container: e.target.container.clone(),
                tenant: e.target.tenant.clone(),
                service: e.target.service.clone(),
                check: e.target.check.kind(),
                health: e.health,
                last_error: e.last_error.clone(),
                last_seconds: e.last_seconds,
                probes: e.probes,
                failures: e.failures,
            })
            .collect()
    }

    fn take_due(&self) -> (Vec<Target>, Option<Instant>) {
        let now = Instant::now();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for e in self.lock().values_mut().filter(|e| !e.busy) {
            if e.due <= now {
                e.busy = true;
                due.push(e.target.clone());
            } else {
                next = Some(next.map_or(e.due, |n| n.min(e.due)));
            }
        }
        (due, next)
    }

    async fn probe_one(self: Arc<Self>, t: Target) {
        let Ok(_permit) = self.permits.acquire().await else {
            return;
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.cfg.timeout, self.checker.check(&t))
            .await
            .unwrap_or(Err(super::ProbeError::Timeout(self.cfg.timeout)))
            .map_err(|e| e.to_string());
        self.record(&t, result, started.elapsed());
    }

    fn record(&self, t: &Target, result: Result<(), String>, took: Duration) {
        let now = Instant::now();
        let mut tab = self.lock();
        let Some(e) = tab
            .get_mut(&t.container)
            .filter(|e| e.target.check == t.check)
        else {
            return;
        };
        let before = e.health;
        e.busy = false;
        e.probes += 1;
        e.last_seconds = took.as_secs_f64();
        match result {
            Ok(()) => {
                (e.ok, e.fail, e.last_error) = (e.ok + 1, 0, None);
                if e.ok >= self.cfg.successes {
                    e.health = Health::Healthy;
                }
            }
            Err(why) => {
                (e.ok, e.fail, e.failures) = (0, e.fail + 1, e.failures + 1);
                e.last_error = Some(why);
                let started_long_ago = now - e.seen >= self.cfg.start_period;
                if e.fail >= self.cfg.failures && (e.health == Health::Healthy || started_long_ago)
                {
                    e.health = Health::Unhealthy;
                }
            }
        }
        e.due = now + jittered(self.next_in(e));
        if e.health != before {
            tracing::info!(container = %t.container, from = ?before, to = ?e.health, error = e.last_error.as_deref(), "probe health changed");
            if !self
                .watched
                .lock()
                .expect("watched lock")
                .contains(&t.tenant)
            {
                self.changed.notify_one();
            }
        }
    }

    fn next_in(&self, e: &Entry) -> Duration {
        let c = &self.cfg;
        match e.health {
            Health::Healthy if e.fail == 0 && !e.target.fast => c.interval,
            Health::Unhealthy if !e.target.fast => (c.fast_interval * 5).min(c.interval),
            // A starting target (new, restarted, waking) is looked at sooner: a wake's held
            // requests wait for this probe.
            Health::Starting => (c.fast_interval / 4).max(Duration::from_millis(100)),
            _ => c.fast_interval,
        }
    }

    /// Runs every due probe now and waits for them (tests drive the prober with this).
    pub async fn tick(self: &Arc<Self>) {
        let (due, _) = self.take_due();
        futures_util::future::join_all(due.into_iter().map(|t| self.clone().probe_one(t))).await;
    }

    /// Starts due probes as they come due, until `stop` flips.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let (due, next) = self.take_due();
            for t in due {
                tokio::spawn(self.clone().probe_one(t));
            }
            let wait = next.map_or(Duration::from_secs(1), |n| {
                n.saturating_duration_since(Instant::now())
                    .clamp(Duration::from_millis(20), Duration::from_secs(1))
            });
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
