//! Scheduled jobs: each template job runs inside each running tenant's container on its cron
//! schedule, never overlapping itself; every run's exit status, duration and output tail are
//! kept (in memory and in `tenants/<t>/jobs.json`) for `berth jobs T`.

use crate::desired::schedule;
use crate::{
    runtime::spec,
    services::{Cx, Phase},
    spec::instance::RunState,
    store::atomic,
};
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime},
};

/// Runs kept per job.
pub const KEEP_RUNS: usize = 20;
/// Output kept per run, from its end.
pub const TAIL_BYTES: usize = 2048;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct Run {
    /// Unix milliseconds.
    pub started_ms: u64,
    pub duration_ms: u64,
    /// None when the command could not be started at all.
    pub exit_code: Option<i64>,
    pub output_tail: String,
    /// Killed at the job's timeout (with everything it started).
    #[serde(default)]
    pub timed_out: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
pub struct JobRecord {
    pub schedule: String,
    pub service: String,
    #[schema(value_type = Vec<Run>)]
    pub runs: VecDeque<Run>,
    /// Unix seconds of the last run that exited 0.
    pub last_success: Option<u64>,
    /// Times the schedule fired while the previous run was still going.
    pub skipped_overlap: u64,
    /// Times the schedule fired while the tenant slept (jobs without `wake: true`).
    #[serde(default)]
    pub skipped_asleep: u64,
    #[serde(skip_deserializing)]
    pub running: bool,
    #[serde(skip_deserializing)]
    pub next_run: Option<u64>,
}

pub struct Scheduler {
    cx: Cx,
    /// (tenant, job) → what is known.
    records: Mutex<BTreeMap<(String, String), JobRecord>>,
    times: Mutex<schedule::Timetable<(String, String)>>,
    /// (tenant, job) runs under way.
    running: Mutex<BTreeSet<(String, String)>>,
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

impl Scheduler {
    pub fn new(cx: Cx) -> Arc<Scheduler> {
        Arc::new(Scheduler {
            cx,
            records: Mutex::default(),
            times: Mutex::default(),
            running: Mutex::default(),
        })
    }

    fn path(&self, tenant: &str) -> std::path::PathBuf {
        self.cx.svc.layout().tenant(tenant).join("jobs.json")
    }

    /// Whether a run of any of `tenant`'s jobs is under way.
    pub fn is_running(&self, tenant: &str) -> bool {
        let running = self.running.lock().expect("running lock");
        running.iter().any(|(t, _)| t == tenant)
    }

    /// The tenant's jobs as `berth jobs T` shows them, including ones that never ran.
    pub fn jobs(&self, tenant: &str) -> BTreeMap<String, JobRecord> {
        self.load(tenant);
        let Some(inst) = self.cx.passes.desired().instances.get(tenant).cloned() else {
            return BTreeMap::new();
        };
        let times = self.times.lock().expect("times lock");
        let running = self.running.lock().expect("running lock");
        let records = self.records.lock().expect("records lock");
        inst.jobs
            .iter()
            .map(|(name, job)| {
                let key = (tenant.to_string(), name.clone());
                let mut r = records.get(&key).cloned().unwrap_or_default();
                r.schedule = job.schedule.clone();
                r.service = job.service.clone();
                r.running = running.contains(&key);
                r.next_run = times.next(&key).map(|n| unix_ms(n) / 1000);
                (name.clone(), r)
            })
            .collect()
    }

    /// Reads a tenant's history from disk once, so runs survive an agent restart.
    fn load(&self, tenant: &str) {
        let mut records = self.records.lock().expect("records lock");
        if records.keys().any(|(t, _)| t == tenant) {
            return;
        }
        let Ok(bytes) = std::fs::read(self.path(tenant)) else {
            return;
        };
        if let Ok(saved) = serde_json::from_slice::<BTreeMap<String, JobRecord>>(&bytes) {
            for (job, r) in saved {
                records.insert((tenant.to_string(), job), r);
            }
        }
    }

    fn save(&self, tenant: &str) {
        let saved: BTreeMap<String, JobRecord> = self
            .records
            .lock()
            .expect("records lock")
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, j), r)| (j.clone(), r.clone()))
            .collect();
        let json = serde_json::to_vec_pretty(&saved).expect("records serialize");
        if let Err(e) = atomic::write(&self.path(tenant), &json, 0o600) {
            tracing::warn!(tenant, error = %e, "job history not saved");
        }
    }

    /// Fires what is due and returns how long to sleep until the next schedule.
    pub fn tick(self: &Arc<Self>) -> Duration {
        let now = SystemTime::now();
        let desired = self.cx.passes.desired();
        // A purged tenant (no allocation left) takes its history with it: a new tenant of
        // the same name starts with none.
        let kept = self.cx.svc.allocations().snapshot();
        self.records
            .lock()
            .expect("records lock")
            .retain(|(t, _), _| kept.contains_key(t));
        let wanted = desired.instances.iter().flat_map(|(t, inst)| {
            inst.jobs
                .iter()
                .map(|(name, job)| ((t.clone(), name.clone()), job.schedule.as_str()))
        });
        let mut times = self.times.lock().expect("times lock");
        let due = times.due(wanted, now);
        let wait = times.wait(now);
        drop(times);
        let board = self.cx.passes.board();
        for key in due {
            let Some(inst) = desired.instances.get(&key.0) else {
                continue;
            };
            let Some(job) = inst.jobs.get(&key.1) else {
                continue;
            };
            // A tenant held by an operation (a restore replacing its volumes, an upgrade)
            // skips its runs: a job writing into a volume being replaced would race it.
            let serving = inst.state == RunState::Running
                && !self.cx.passes.is_held(&key.0)
                && board
                    .instances
                    .get(&key.0)
                    .is_some_and(|s| s.phase == Phase::Running);
            self.fire(key, job, serving);
        }
        wait
    }

    /// A due run of `job`: started, or counted as skipped (asleep, overlapping), or dropped
    /// (the tenant stopped or upgrading: nothing to catch up).
    fn fire(
        self: &Arc<Self>,
        key: (String, String),
        job: &crate::desired::model::Job,
        serving: bool,
    ) {
        let t = key.0.as_str();
        let asleep = self.cx.svc.sleep().is_asleep(t);
        if asleep && !job.wake {
            self.load(t);
            let mut r = self.records.lock().expect("records lock");
            r.entry(key).or_default().skipped_asleep += 1;
        } else if !serving && !asleep {
            // A stopped, upgrading or restoring tenant skips its runs; nothing to catch up.
        } else if !self
            .running
            .lock()
            .expect("running lock")
            .insert(key.clone())
        {
            self.load(t);
            tracing::info!(tenant = t, job = key.1, "previous run still going; skipped");
            let mut r = self.records.lock().expect("records lock");
            r.entry(key).or_default().skipped_overlap += 1;
        } else {
            let container = spec::container_name(&self.cx.svc.host().namespace, t, &job.service);
            let me = self.clone();
            let job = job.clone();
            tokio::spawn(async move { me.run(key, job, container).await });
        }
    }

    async fn run(&self, key: (String, String), job: crate::desired::model::Job, container: String) {
        // However the run ends (even by a panic), the job may run again at its next time.
        let _running = Running(self, key.clone());
        // Wakes a sleeping tenant (`wake: true` jobs only get here asleep) and keeps it from
        // falling asleep mid-run.
        let limit = crate::sleep::WAKE_LIMIT;
        let _awake = crate::sleep::wake_for(&self.cx, &key.0, "job", limit).await;
        let started = SystemTime::now();
        let clock = Instant::now();
        let args: Vec<&str> = job.command.iter().map(String::as_str).collect();
        let rt = self.cx.svc.runtime();
        let (exit_code, output, timed_out) =
            match rt.exec_timed(&container, &args, job.timeout).await {
                Ok(o) => (Some(o.exit_code), o.output, o.timed_out),
                Err(e) => (None, e.to_string(), false),
            };
        let tail_from = output.len().saturating_sub(TAIL_BYTES);
        let tail_from = (tail_from..output.len())
            .find(|i| output.is_char_boundary(*i))
            .unwrap_or(output.len());
        let run = Run {
            started_ms: unix_ms(started),
            duration_ms: clock.elapsed().as_millis() as u64,
            exit_code,
            output_tail: output[tail_from..].to_string(),
            timed_out,
        };
        tracing::info!(
            tenant = key.0,
            job = key.1,
            exit_code,
            ms = run.duration_ms,
            timed_out,
            "job ran"
        );
        self.load(&key.0);
        {
            let mut records = self.records.lock().expect("records lock");
            let r = records.entry(key.clone()).or_default();
            r.schedule = job.schedule.clone();
            r.service = job.service.clone();
            if exit_code == Some(0) {
                r.last_success = Some(unix_ms(started) / 1000);
            }
            r.runs.push_back(run);
            while r.runs.len() > KEEP_RUNS {
                r.runs.pop_front();
            }
        }
        self.save(&key.0);
    }

    /// Fires jobs until shutdown.
    pub async fn run_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        // A pass that read changed files may bring a new schedule: looked at then, not only
        // when the last computed wait (up to a minute) runs out.
        let mut passes = self.cx.passes.subscribe();
        loop {
            let wait = self.tick();
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

/// A job's run under way; it leaves the running set when dropped.
struct Running<'a>(&'a Scheduler, (String, String));

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if let Ok(mut running) = self.0.running.lock() {
            running.remove(&self.1);
        }
    }
}
