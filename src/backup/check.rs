//! Scheduled `restic check` of each off-host repository whose entry has `check:`: the
//! repository's structure, and the share of its data `read_data` names read back and
//! verified. Outcomes in `<state>/offsite-checks.json`, for the metrics and their alert.

use super::Backups;
use crate::{desired::schedule::Timetable, store::atomic};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

/// A repository's last check.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct CheckRecord {
    /// Unix seconds the check ended.
    pub at: u64,
    pub ok: bool,
    pub error: Option<String>,
    pub seconds: f64,
    pub read_data: String,
}

pub struct Checks {
    times: Mutex<Timetable<String>>,
    path: PathBuf,
}

impl Checks {
    pub fn new(state_dir: &std::path::Path) -> Checks {
        Checks {
            times: Mutex::default(),
            path: state_dir.join("offsite-checks.json"),
        }
    }

    /// Every repository's last check, by name.
    pub fn records(&self) -> BTreeMap<String, CheckRecord> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn save(&self, repo: &str, r: CheckRecord) {
        let mut all = self.records();
        all.insert(repo.into(), r);
        let json = serde_json::to_vec_pretty(&all).expect("records serialize");
        if let Err(e) = atomic::write(&self.path, &json, 0o600) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record a repository check");
        }
    }

    /// Checks each repository when its schedule says, one at a time, until shutdown.
    pub async fn run_loop(
        self: Arc<Self>,
        backups: Arc<Backups>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let wanted: Vec<(String, String, String)> = backups
            .repos
            .iter()
            .filter_map(|(r, _)| {
                let (cron, read) = r.check.clone()?;
                Some((r.name.clone(), cron, read))
            })
            .collect();
        if wanted.is_empty() {
            return;
        }
        loop {
            let now = SystemTime::now();
            let (due, wait) = {
                let mut times = self.times.lock().expect("times lock");
                let due = times.due(wanted.iter().map(|(n, c, _)| (n.clone(), c.as_str())), now);
                (due, times.wait(now))
            };
            for name in due {
                let (_, _, read) = wanted.iter().find(|(n, ..)| *n == name).expect("wanted");
                let repo = backups.repos.iter().find(|(r, _)| r.name == name);
                let Some((_, client)) = repo else { continue };
                let started = Instant::now();
                // Shutting down does not wait for a check (dropped, restic is killed; --no-lock
                // leaves nothing behind in the repository).
                let r = tokio::select! {
                    r = client.check(read) => r,
                    _ = shutdown.changed() => return,
                };
                if let Err(e) = &r {
                    tracing::error!(repository = name, error = %e, "repository check FAILED");
                } else {
                    tracing::info!(repository = name, read_data = read, "repository checked");
                }
                self.save(
                    &name,
                    CheckRecord {
                        at: super::now(),
                        ok: r.is_ok(),
                        error: r.err().map(|e| e.to_string()),
                        seconds: started.elapsed().as_secs_f64(),
                        read_data: read.clone(),
                    },
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
