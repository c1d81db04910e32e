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
pub struct BackupSchedule {
    times: Mutex<schedule::Timetable<String>>,
    last: Mutex<BTreeMap<String, LastScheduled>>,
}

impl BackupSchedule {
    pub fn last(&self, tenant: &str) -> Option<LastScheduled> {
        self.last.lock().expect("last lock").get(tenant).cloned()
    }

    /// Tenants due now (their slot moves on to the next time), and how long until the soonest.
    fn due(&self, b: &Backups, now: SystemTime) -> (Vec<String>, Duration) {
        let desired = b.cx.passes.desired();
        let wanted = desired
            .instances
            .iter()
            .filter_map(|(t, i)| Some((t.clone(), i.backups.schedule.as_deref()?)));
        let mut times = self.times.lock().expect("times lock");
        let fired = times.due(wanted, now);
        let wait = times.wait(now);
        drop(times);
        let board = b.cx.passes.board();
        let due = fired
            .into_iter()
            .filter(|t| {
                desired
                    .instances
                    .get(t)
                    .is_some_and(|inst| takes_its_turn(b, &board, t, inst.state))
            })
            .collect();
        (due, wait)
    }

    /// Takes scheduled backups until shutdown.
    pub async fn run_loop(
        self: Arc<Self>,
        backups: Arc<Backups>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        // A pass that read changed files may bring a new schedule (a plan or `limits` edit):
        // looked at then, not only when the last computed wait (up to a minute) runs out.
        let mut passes = backups.cx.passes.subscribe();
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
                // The passes gone (shutting down): the shutdown ends the loop, never a spin.
                r = passes.changed() => if r.is_err() {
                    tokio::time::sleep(wait).await;
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Whether a tenant whose scheduled backup is due is backed up now. Asleep, nothing can
/// change: a backup taken since it fell asleep still holds everything; without one, the
/// backup wakes it. (The board may still say running while the pass that stops a dozing
/// tenant is under way.) Stopped, upgrading or restoring: it skips its turn.
fn takes_its_turn(b: &Backups, board: &crate::services::Board, t: &str, state: RunState) -> bool {
    let asleep_since = b.cx.svc.sleep().since(t);
    let held = b.cx.passes.is_held(t);
    let serving = state == RunState::Running
        && asleep_since.is_none()
        && !held
        && board
            .instances
            .get(t)
            .is_some_and(|s| s.phase == Phase::Running);
    let covered = asleep_since.is_some_and(|since| b.list(t).iter().any(|x| x.created >= since));
    if serving || (asleep_since.is_some() && !covered && !held) {
        return true;
    }
    match covered {
        true => tracing::info!(
            tenant = t,
            "scheduled backup skipped: asleep, and backed up since it fell asleep"
        ),
        false => tracing::info!(tenant = t, "scheduled backup skipped: not running"),
    }
    false
}
