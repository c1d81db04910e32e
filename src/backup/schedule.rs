//! Scheduled backups: each running tenant whose plan sets `backups.schedule` is backed up on
//! that cron schedule (UTC), one tenant at a time so backups never crowd the host's disk I/O;
//! tenants stopped or in an upgrade skip their turn. Retention is applied after every backup.

use super::Backups;
use crate::{desired::schedule, services::Phase, spec::instance::RunState};
use serde::Serialize;
use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

/// The last scheduled backup of a tenant, for `berth backup T --list` and metrics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LastScheduled {
    /// Unix seconds.
    pub at: u64,
    pub id: Option<String>,
    pub error: Option<String>,
}

#[derive(Default)]
struct Slot {
    schedule: String,
    next: Option<SystemTime>,
}

#[derive(Default)]
pub struct BackupSchedule {
    slots: Mutex<BTreeMap<String, Slot>>,
    last: Mutex<BTreeMap<String, LastScheduled>>,
}

impl BackupSchedule {
    pub fn last(&self, tenant: &str) -> Option<LastScheduled> {
        self.last.lock().expect("last lock").get(tenant).cloned()
    }

    /// Tenants due now (their slot moves on to the next time), and how long until the soonest.
    fn due(&self, b: &Backups, now: SystemTime) -> (Vec<String>, Duration) {
        let desired = b.cx.passes.desired();
        let board = b.cx.passes.board();
        let mut soonest = now + Duration::from_secs(60);
        let mut slots = self.slots.lock().expect("slots lock");
        slots.retain(|t, _| {
            desired
                .instances
                .get(t)
                .is_some_and(|i| i.backups.schedule.is_some())
        });
        let mut due = vec![];
        for (t, inst) in &desired.instances {
            let Some(expr) = &inst.backups.schedule else {
                continue;
            };
            let Ok(cron) = schedule::parse(expr) else {
                continue;
            };
            let slot = slots.entry(t.clone()).or_default();
            if slot.schedule != *expr {
                *slot = Slot {
                    schedule: expr.clone(),
                    next: None,
                };
            }
            let at = *slot
                .next
                .get_or_insert_with(|| schedule::next_after(&cron, now).unwrap_or(now));
            if at <= now {
                slot.next = schedule::next_after(&cron, now);
                // Asleep, nothing can change: a backup taken since it fell asleep still holds
                // everything; without one, the backup wakes it. (The board may still say
                // running while the pass that stops a dozing tenant is under way.)
                let asleep_since = b.cx.svc.sleep().since(t);
                let serving = inst.state == RunState::Running
                    && asleep_since.is_none()
                    && !b.cx.passes.is_held(t)
                    && board
                        .instances
                        .get(t)
                        .is_some_and(|s| s.phase == Phase::Running);
                let covered =
                    asleep_since.is_some_and(|since| b.list(t).iter().any(|x| x.created >= since));
                if serving || (asleep_since.is_some() && !covered && !b.cx.passes.is_held(t)) {
                    due.push(t.clone());
                } else if covered {
                    tracing::info!(
                        tenant = t,
                        "scheduled backup skipped: asleep, and backed up since it fell asleep"
                    );
                } else {
                    tracing::info!(tenant = t, "scheduled backup skipped: not running");
                }
            }
            if let Some(n) = slot.next {
                soonest = soonest.min(n);
            }
        }
        let wait = soonest.duration_since(now).unwrap_or_default();
        (due, wait.max(Duration::from_millis(50)))
    }

    /// Takes scheduled backups until shutdown.
    pub async fn run_loop(
        self: Arc<Self>,
        backups: Arc<Backups>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            let (due, wait) = self.due(&backups, SystemTime::now());
            for t in due {
                let r = backups.create(&t).await;
                let e = crate::audit::Event::system(
                    "scheduler",
                    Some(&t),
                    "backup.scheduled",
                    r.as_ref().map(|_| ()).map_err(ToString::to_string),
                );
                let e = match &r {
                    Ok(info) => e.target(info.id.clone()),
                    Err(_) => e,
                };
                backups.cx.svc.audit().record(&e);
                let at = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                let last = match r {
                    Ok(info) => LastScheduled {
                        at,
                        id: Some(info.id),
                        error: None,
                    },
                    Err(e) => {
                        tracing::warn!(tenant = t, error = %e, "scheduled backup failed");
                        LastScheduled {
                            at,
                            id: None,
                            error: Some(e.to_string()),
                        }
                    }
                };
                self.last.lock().expect("last lock").insert(t, last);
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
