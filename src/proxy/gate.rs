//! A tenant's gate: which target serves it now, maintenance mode, and pause/resume. Switching
//! targets follows kamal-proxy's order: requests register on the target they load, the swap is
//! atomic, and the old target is drained after the swap.

use super::meter::TenantMeter;
use super::{
    limit::Limiter,
    target::{DrainReport, Target, Ticket},
};
use arc_swap::ArcSwapOption;
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst},
    },
    time::Duration,
};
use tokio::sync::watch;

pub struct Gate {
    pub tenant: String,
    target: ArcSwapOption<Target>,
    /// Stopped or suspended: answered with the maintenance page.
    maintenance: AtomicBool,
    paused: watch::Sender<bool>,
    /// The plan's rate and in-flight limits.
    pub limiter: Limiter,
    pub meter: TenantMeter,
    /// Asleep: requests are held (as when paused) and the first one asks for a wake.
    asleep: AtomicBool,
    wake_asked: AtomicBool,
    /// Where wake requests go (the sleeper), set by the proxy.
    waker: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<String>>,
    /// When the last request arrived, in ms since the process's clock origin.
    last_request_ms: AtomicU64,
    /// Bumped when a wake is refused: the requests held then are turned away at once.
    turned_away: AtomicU64,
}

/// The clock origin of `last_request_ms`.
fn clock() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    ORIGIN
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis() as u64
}

/// Why a request was not admitted to the tenant's app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Stopped, suspended, or not yet provisioned.
    Maintenance,
    /// Paused for longer than the maximum pause.
    PauseExpired,
}

impl Gate {
    pub fn new(tenant: &str) -> Arc<Gate> {
        Gate::with_meter(tenant, TenantMeter::detached())
    }

    pub fn with_meter(tenant: &str, meter: TenantMeter) -> Arc<Gate> {
        Arc::new(Gate {
            tenant: tenant.to_string(),
            target: ArcSwapOption::empty(),
            maintenance: AtomicBool::new(false),
            paused: watch::channel(false).0,
            limiter: Limiter::default(),
            meter,
            asleep: AtomicBool::new(false),
            wake_asked: AtomicBool::new(false),
            waker: std::sync::OnceLock::new(),
            last_request_ms: AtomicU64::new(clock()),
            turned_away: AtomicU64::new(0),
        })
    }

    /// Sends this gate's wake requests to `tx` (once; later calls are ignored).
    pub fn set_waker(&self, tx: tokio::sync::mpsc::UnboundedSender<String>) {
        let _ = self.waker.set(tx);
    }

    /// How long since a request last arrived (or since the gate was made).
    pub fn idle(&self) -> Duration {
        Duration::from_millis(clock().saturating_sub(self.last_request_ms.load(Relaxed)))
    }

    /// Requests in flight to the current target.
    pub fn in_flight(&self) -> usize {
        self.current().map_or(0, |t| t.in_flight())
    }

    /// The tenant fell asleep: hold requests; the first one asks for a wake.
    pub fn sleep(&self) {
        self.wake_asked.store(false, SeqCst);
        self.asleep.store(true, SeqCst);
        self.pause();
    }

    pub fn is_asleep(&self) -> bool {
        self.asleep.load(SeqCst)
    }

    /// The tenant is up again: held requests go on.
    pub fn woke(&self) {
        self.asleep.store(false, SeqCst);
        self.last_request_ms.store(clock(), Relaxed);
        self.resume();
    }

    /// A wake was refused (the host has no room for it now): the requests held now get the
    /// maintenance page at once, and the next request asks again.
    pub fn turn_away(&self) {
        self.wake_asked.store(false, SeqCst);
        self.turned_away.fetch_add(1, SeqCst);
        self.paused.send_modify(|_| {});
    }

    fn ask_wake(&self) {
        if self.asleep.load(SeqCst)
            && !self.wake_asked.swap(true, SeqCst)
            && let Some(tx) = self.waker.get()
        {
            let _ = tx.send(self.tenant.clone());
        }
    }

    pub fn current(&self) -> Option<Arc<Target>> {
        self.target.load_full()
    }

    pub fn set_maintenance(&self, on: bool) {
        self.maintenance.store(on, SeqCst);
    }

    pub fn in_maintenance(&self) -> bool {
        self.maintenance.load(SeqCst)
    }

    /// Admits a request: waits while paused (up to `max_pause`), then registers it on the
    /// current target.
    pub async fn admit(&self, max_pause: Duration) -> Result<Ticket, Refusal> {
        self.last_request_ms.store(clock(), Relaxed);
        if *self.paused.borrow() {
            let turn = self.turned_away.load(SeqCst);
            self.ask_wake();
            let mut rx = self.paused.subscribe();
            let away = || self.turned_away.load(SeqCst) != turn;
            match tokio::time::timeout(max_pause, rx.wait_for(|p| !*p || away())).await {
                Ok(Ok(p)) if *p => return Err(Refusal::Maintenance),
                Ok(Ok(_)) => {}
                _ => return Err(Refusal::PauseExpired),
            }
        }
        if self.in_maintenance() {
            return Err(Refusal::Maintenance);
        }
        loop {
            let target = self.target.load_full().ok_or(Refusal::Maintenance)?;
            if let Some(t) = target.start() {
                return Ok(t);
            }
            // Lost a race with a switch: the new target is already installed.
            tokio::task::yield_now().await;
        }
    }

    /// Installs `new` at once and drains the previous target (if any) in the background.
    /// Used when the reconciler moves a tenant to another port.
    pub fn replace(&self, new: Option<Arc<Target>>, drain: Duration) {
        if let Some(old) = self.target.swap(new) {
            tokio::spawn(async move { old.drain(drain).await });
        }
    }

    /// Installs `new` and returns once the old target is drained: when this returns the old
    /// containers may be removed without cutting off a request.
    pub async fn switch(&self, new: Arc<Target>, drain: Duration) -> DrainReport {
        match self.target.swap(Some(new)) {
            Some(old) => old.drain(drain).await,
            None => DrainReport {
                finished: 0,
                cancelled: 0,
            },
        }
    }

    /// Holds new requests until `resume` (or until each has waited `max_pause`).
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    pub fn resume(&self) {
        self.paused.send_replace(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(port: u16) -> Arc<Target> {
        Target::new(([127, 0, 0, 1], port).into(), Duration::from_secs(1))
    }

    #[tokio::test]
    async fn requests_after_a_switch_go_to_the_new_target_while_old_ones_finish() {
        let g = Gate::new("acme");
        g.replace(Some(target(1)), Duration::from_secs(1));
        let old = g.admit(Duration::ZERO).await.unwrap();
        let g2 = g.clone();
        let switch =
            tokio::spawn(async move { g2.switch(target(2), Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let new = g.admit(Duration::ZERO).await.unwrap();
        assert_eq!(new.target().addr.port(), 2);
        assert!(!switch.is_finished(), "switch waits for the old request");
        drop(old);
        assert_eq!(switch.await.unwrap().finished, 1);
    }

    #[tokio::test]
    async fn a_paused_tenant_holds_requests_until_resumed() {
        let g = Gate::new("acme");
        g.replace(Some(target(1)), Duration::from_secs(1));
        g.pause();
        let g2 = g.clone();
        let held = tokio::spawn(async move { g2.admit(Duration::from_secs(5)).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!held.is_finished());
        g.resume();
        assert!(held.await.unwrap());
    }

    #[tokio::test]
    async fn a_sleeping_gate_holds_requests_and_asks_for_one_wake_however_many_arrive() {
        let g = Gate::new("acme");
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        g.set_waker(tx);
        g.replace(Some(target(1)), Duration::from_secs(1));
        g.sleep();
        let held: Vec<_> = (0..20)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.admit(Duration::from_secs(5)).await.is_ok() })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rx.recv().await.as_deref(), Some("acme"));
        assert!(rx.try_recv().is_err(), "one wake request");
        assert!(held.iter().all(|h| !h.is_finished()));
        g.woke();
        for h in held {
            assert!(h.await.unwrap());
        }
        assert!(g.idle() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_pause_longer_than_the_maximum_is_refused() {
        let g = Gate::new("acme");
        g.replace(Some(target(1)), Duration::from_secs(1));
        g.pause();
        let r = g.admit(Duration::from_millis(30)).await;
        assert_eq!(r.err(), Some(Refusal::PauseExpired));
    }

    #[tokio::test]
    async fn maintenance_and_missing_targets_are_refused() {
        let g = Gate::new("acme");
        assert_eq!(
            g.admit(Duration::ZERO).await.err(),
            Some(Refusal::Maintenance)
        );
        g.replace(Some(target(1)), Duration::from_secs(1));
        g.set_maintenance(true);
        assert_eq!(
            g.admit(Duration::ZERO).await.err(),
            Some(Refusal::Maintenance)
        );
    }

    #[tokio::test]
    async fn a_refused_wake_turns_the_held_requests_away_at_once() {
        let g = Gate::new("s1");
        g.replace(Some(target(1)), Duration::from_secs(1));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        g.set_waker(tx);
        g.sleep();
        let held: Vec<_> = (0..3)
            .map(|_| {
                let g = g.clone();
                tokio::spawn(async move { g.admit(Duration::from_secs(30)).await.err() })
            })
            .collect();
        assert_eq!(rx.recv().await.as_deref(), Some("s1"), "one wake asked");
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        g.turn_away();
        for h in held {
            assert_eq!(h.await.unwrap(), Some(Refusal::Maintenance));
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "not held for max_pause"
        );
        let g2 = g.clone();
        let next = tokio::spawn(async move { g2.admit(Duration::from_millis(200)).await.err() });
        assert_eq!(
            rx.recv().await.as_deref(),
            Some("s1"),
            "the next request asks again"
        );
        assert_eq!(next.await.unwrap(), Some(Refusal::PauseExpired));
    }
}
