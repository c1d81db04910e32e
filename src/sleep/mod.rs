//! Idle tenants sleep and wake on their first request. A tenant whose plan sets `sleep_after`
//! and that had no request at the edge for that long is recorded asleep (`sleep.json`), its
//! gate starts holding requests, and passes plan its containers stopped. The first request
//! to a sleeping tenant asks for a wake (once, however many arrive): the tenant leaves the
//! asleep set, a pass starts its containers, berth's probes find it healthy, and the gate
//! lets the held requests through. Past the edge's `max_pause` they get the maintenance page
//! and `berth status` says why the wake is late; the wake goes on until the tenant is up.

use crate::{
    proxy::Proxy,
    services::{Cx, Phase},
    spec::instance::RunState,
    store::sleep as state,
};
use prometheus_client::metrics::{
    counter::Counter,
    gauge::Gauge,
    histogram::{Histogram, exponential_buckets},
};
use std::{sync::Arc, time::Duration};
use tokio::time::Instant;

/// How long an operation (upgrade, backup, job) waits for a sleeping tenant to wake.
pub const WAKE_LIMIT: Duration = Duration::from_secs(120);

/// How often idle tenants are looked for.
const DOZE_TICK: Duration = Duration::from_secs(2);
/// How soon a tenant passed over only because a job, backup or wake was running is looked at
/// again: a job on a schedule that is a multiple of the tick would otherwise be running at
/// every tick, and its tenant would never sleep.
const BUSY_RETRY: Duration = Duration::from_millis(250);

/// The figures `/metrics` shows about sleep.
#[derive(Debug, Clone)]
pub struct SleepMeters {
    pub asleep: Gauge,
    pub wakes: Counter,
    /// Wakes that took longer than the edge's `max_pause`.
    pub late_wakes: Counter,
    pub wake_seconds: Histogram,
    /// Wakes waiting for a turn (`proxy.max_wakes` run at once).
    pub wakes_queued: Gauge,
    /// Wakes refused for the host's memory.
    pub refused_wakes: Counter,
    /// Requests to sleeping tenants refused for their client's wake limit.
    pub client_limited: Counter,
}

impl Default for SleepMeters {
    fn default() -> Self {
        SleepMeters {
            asleep: Gauge::default(),
            wakes: Counter::default(),
            late_wakes: Counter::default(),
            wake_seconds: Histogram::new(exponential_buckets(0.125, 2.0, 10)),
            wakes_queued: Gauge::default(),
            refused_wakes: Counter::default(),
            client_limited: Counter::default(),
        }
    }
}

/// Wakes `t` if it is asleep, as a request would but without the edge (for an upgrade, a
/// backup or a job), and waits until it runs healthy. While the returned guard lives the
/// tenant does not fall asleep again.
/// Why the host has no room to wake `t` now (its memory), if it has none.
fn no_room(cx: &Cx, t: &str) -> Option<String> {
    let sleep = cx.svc.sleep();
    crate::desired::admission::wake_refusal(
        cx.svc.host(),
        &cx.passes.desired(),
        &|x| sleep.is_asleep(x),
        t,
    )
}

/// Why an operation could not have its sleeping tenant awake.
#[derive(Debug, thiserror::Error)]
pub enum WakeForError {
    #[error("asleep, and held by another operation that cannot wait for a wake")]
    HeldAsleep,
    #[error("{0}")]
    NoRoom(#[from] state::NoRoom),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("asleep, and not running healthy within {0:?} of waking it")]
    NotUp(Duration),
}

pub async fn wake_for(
    cx: &Cx,
    t: &str,
    why: &str,
    limit: Duration,
) -> Result<state::Busy, WakeForError> {
    // Only a backup leaves the tenant's data as it was.
    let changes = why != "backup";
    let busy = cx.svc.sleep().busy(t);
    if cx.passes.is_held(t) && cx.svc.sleep().is_asleep(t) {
        return Err(WakeForError::HeldAsleep);
    }
    // The same memory check as a request's wake: an operation does not overfill the host.
    if !cx.svc.sleep().admit_wake(t, changes, || no_room(cx, t))?? {
        return Ok(busy);
    }
    tracing::info!(tenant = t, why, "waking");
    let deadline = Instant::now() + limit;
    if let Err(why) = cx.passes.converge_tenant(t, limit).await {
        tracing::info!(
            tenant = t,
            %why,
            "not awake on the fast path; waiting for the reconciler"
        );
    }
    let mut passes = cx.passes.subscribe();
    let up = loop {
        if cx.passes.board().instances.get(t).map(|s| s.phase) == Some(Phase::Running) {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        tokio::select! {
            _ = passes.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    cx.svc.sleep().end_wake(t);
    let result = match up {
        true => Ok(()),
        false => Err(format!("not running healthy within {limit:?}")),
    };
    cx.svc.audit().record(
        &crate::audit::Event::system("sleeper", Some(t), "tenant.wake", result).target(why),
    );
    match up {
        true => Ok(busy),
        false => Err(WakeForError::NotUp(limit)),
    }
}

pub struct Sleeper {
    cx: Cx,
    proxy: Arc<Proxy>,
    meters: SleepMeters,
    /// When the last wake started (`proxy.wake_gap` apart, under a turn).
    last_start: tokio::sync::Mutex<Option<Instant>>,
    /// Turns for wakes (`proxy.max_wakes`); waiting ones are served in arrival order.
    turns: Arc<tokio::sync::Semaphore>,
}

impl Sleeper {
    pub fn new(cx: Cx, proxy: Arc<Proxy>, meters: SleepMeters) -> Arc<Sleeper> {
        let turns = Arc::new(tokio::sync::Semaphore::new(proxy.cfg.max_wakes));
        let _ = proxy
            .wake_clients
            .limited
            .set(meters.client_limited.clone());
        Arc::new(Sleeper {
            cx,
            proxy,
            meters,
            turns,
            last_start: tokio::sync::Mutex::new(None),
        })
    }

    /// Starts the wake of `t` if the host has room for it (`SleepSet::admit_wake`).
    fn admit_wake(&self, t: &str) -> Result<std::io::Result<bool>, state::NoRoom> {
        self.cx
            .svc
            .sleep()
            .admit_wake(t, true, || no_room(&self.cx, t))
    }

    /// Turns the wake of `t` down: its held requests get the maintenance page now, status and
    /// the audit log say why, and the next request asks again.
    fn refuse(&self, t: &str, gate: &crate::proxy::gate::Gate, why: String) {
        // Recorded before the held requests are answered: whoever they tell sees why.
        self.meters.refused_wakes.inc();
        tracing::warn!(tenant = t, why, "wake refused");
        self.cx.svc.sleep().set_wake_error(t, why.clone());
        gate.turn_away();
        let mut e = crate::audit::Event::system("sleeper", Some(t), "tenant.wake", Err(why));
        e.result = "denied".into();
        self.cx.svc.audit().record(&e);
    }

    /// Gates follow the asleep set: after a restart, before the edge accepts, a sleeping
    /// tenant's gate holds requests again; a gate whose tenant may no longer sleep lets go.
    pub fn sync_gates(&self) {
        let sleep = self.cx.svc.sleep();
        let d = self.cx.passes.desired();
        // Only from a pass that read the files (not the empty view before the first), and a
        // tenant whose file is broken stays as it is, asleep included.
        if self.cx.passes.board().last_pass.is_some() {
            sleep.retain(|t| {
                d.frozen.contains_key(t)
                    || d.instances
                        .get(t)
                        .is_some_and(|i| i.sleep_after.is_some() && i.state == RunState::Running)
            });
        }
        for t in d.instances.keys() {
            let Some(g) = self.proxy.gate(t) else {
                continue;
            };
            if sleep.is_asleep(t) && !g.is_asleep() {
                g.sleep();
            } else if g.is_asleep() && !sleep.is_dozing(t) {
                g.woke();
            }
        }
        self.meters.asleep.set(sleep.asleep().len() as i64);
    }

    /// Puts to sleep every running tenant idle past its plan's window. True if one was passed
    /// over only because it was busy.
    fn doze(&self) -> bool {
        let mut busy = false;
        let d = self.cx.passes.desired();
        let board = self.cx.passes.board();
        for (t, inst) in &d.instances {
            let Some(after) = inst.sleep_after else {
                continue;
            };
            let running = board.instances.get(t).map(|s| s.phase) == Some(Phase::Running);
            let sleep = self.cx.svc.sleep();
            if !running || self.cx.passes.is_held(t) || sleep.is_dozing(t) {
                continue;
            }
            let Some(gate) = self.proxy.gate(t) else {
                continue;
            };
            if sleep.is_busy(t) {
                busy |= gate.idle() >= after;
                continue;
            }
            if gate.idle() < after || gate.in_flight() > 0 {
                continue;
            }
            gate.sleep();
            // A request that got in between is let through, and the tenant stays up.
            if gate.in_flight() > 0 {
                gate.woke();
                continue;
            }
            let last_request = state::unix_now().saturating_sub(gate.idle().as_secs());
            if let Err(e) = self.cx.svc.sleep().put(t, last_request) {
                tracing::warn!(tenant = t, error = %e, "cannot record the tenant asleep; it stays up");
                gate.woke();
                continue;
            }
            tracing::info!(tenant = t, idle_s = gate.idle().as_secs(), "tenant asleep");
            let e = crate::audit::Event::system("sleeper", Some(t), "tenant.sleep", Ok(()))
                .target(format!("idle {} s", gate.idle().as_secs()));
            self.cx.svc.audit().record(&e);
            self.cx.passes.kick();
        }
        busy
    }

    /// Waits until `proxy.wake_gap` has passed since the last wake started, and marks this one.
    async fn keep_gap(&self) {
        let gap = self.proxy.cfg.wake_gap;
        if gap.is_zero() {
            return;
        }
        let mut last = self.last_start.lock().await;
        if let Some(at) = *last {
            tokio::time::sleep_until(at + gap).await;
        }
        *last = Some(Instant::now());
    }

    /// Wakes `t` and lets its held requests through once it is healthy.
    async fn wake(self: Arc<Self>, t: String) {
        let started = Instant::now();
        let Some(gate) = self.proxy.gate(&t) else {
            return;
        };
        self.meters.wakes_queued.inc();
        let turn = self.turns.clone().acquire_owned().await;
        self.meters.wakes_queued.dec();
        let Ok(turn) = turn else { return };
        self.keep_gap().await;
        let admitted = match self.admit_wake(&t) {
            Err(why) => return self.refuse(&t, &gate, why.to_string()),
            Ok(admitted) => admitted,
        };
        match admitted {
            Ok(true) => {}
            Ok(false) => {
                if !self.cx.svc.sleep().is_dozing(&t) {
                    gate.woke();
                }
                return;
            }
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "cannot record the wake; retrying at the next request");
                gate.sleep();
                return;
            }
        }
        tracing::info!(tenant = %t, "waking");
        let max_pause = self.proxy.cfg.timeouts.max_pause;
        let fast = self.cx.passes.converge_tenant(&t, max_pause).await;
        // The turn covers the fast path only (at most max_pause): an app that never gets
        // healthy keeps its own requests waiting, never the other sleepers' wakes.
        drop(turn);
        let up = match fast {
            Ok(()) => true,
            Err(why) => {
                tracing::info!(tenant = %t, %why, "not awake on the fast path; waiting for the reconciler");
                self.until_running(&t, started, why.to_string()).await
            }
        };
        gate.woke();
        self.cx.svc.sleep().end_wake(&t);
        let result = match up {
            true => Ok(()),
            false => Err("stopped or removed while waking".to_string()),
        };
        let e = crate::audit::Event::system("sleeper", Some(&t), "tenant.wake", result)
            .target(format!("request, {} ms", started.elapsed().as_millis()));
        self.cx.svc.audit().record(&e);
        if up {
            let took = started.elapsed();
            self.meters.wakes.inc();
            self.meters.wake_seconds.observe(took.as_secs_f64());
            tracing::info!(tenant = %t, ms = took.as_millis() as u64, "tenant awake");
        }
        self.cx.passes.touch();
    }

    /// Waits for the passes to show the tenant running healthy; false when it went away or
    /// was stopped meanwhile. `why` is what the fast path last saw wrong.
    async fn until_running(&self, t: &str, started: Instant, why: String) -> bool {
        let max_pause = self.proxy.cfg.timeouts.max_pause;
        let mut passes = self.cx.passes.subscribe();
        let mut late = false;
        loop {
            let d = self.cx.passes.desired();
            if d.instances
                .get(t)
                .is_none_or(|i| i.state != RunState::Running)
            {
                return false;
            }
            let st = self.cx.passes.board().instances.get(t).cloned();
            if st.as_ref().map(|s| s.phase) == Some(Phase::Running) {
                return true;
            }
            if !late && started.elapsed() > max_pause {
                late = true;
                self.meters.late_wakes.inc();
                let why = st.and_then(|s| s.error).unwrap_or_else(|| why.clone());
                let e = format!("did not wake within {max_pause:?} (max_pause): {why}");
                tracing::warn!(tenant = t, error = %e, "late wake");
                self.cx.svc.sleep().set_wake_error(t, e);
            }
            tokio::select! {
                _ = passes.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Looks for idle tenants and answers wake requests until `stop` flips.
    pub async fn run(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(mut wakes) = self.proxy.take_wakes() else {
            return;
        };
        let mut tick = tokio::time::interval(DOZE_TICK);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                Some(t) = wakes.recv() => {
                    tokio::spawn(self.clone().wake(t));
                }
                _ = tick.tick() => {
                    if self.doze() {
                        tick.reset_after(BUSY_RETRY);
                    }
                    self.sync_gates();
                }
            }
        }
    }
}
