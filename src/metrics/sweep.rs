//! One container-stats sweep per interval, shared by every scrape and by `berth top`: the cost
//! of collection is bounded by the interval, never multiplied by scrapers or containers.

use crate::runtime::{ContainerStats, ObservedContainer, RunStatus, Runtime, RuntimeError};
use arc_swap::ArcSwap;
use futures_util::StreamExt;
use serde::Serialize;
use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

/// Readings in flight at once. Each is one inspect plus cgroup files (milliseconds), or the
/// engine's stats call where the kernel reading is unavailable (~0.5 s on a busy engine): 8 at
/// once keeps that fallback from queueing the engine behind a burst.
const CONCURRENCY: usize = 8;

#[derive(Debug, Clone, Serialize)]
pub struct Reading {
    pub container: ObservedContainer,
    pub stats: ContainerStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Snapshot {
    /// Unix seconds of the sweep; 0 before the first.
    pub at: u64,
    pub took_seconds: f64,
    pub readings: Vec<Reading>,
}

#[derive(Default)]
pub struct Sweep {
    last: ArcSwap<Snapshot>,
}

impl std::fmt::Debug for Sweep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sweep").finish_non_exhaustive()
    }
}

impl Sweep {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.last.load_full()
    }

    /// Reads every running container of the namespace once. A container that stops between
    /// the listing and its reading is left out of this sweep, not reported as zero.
    pub async fn once(&self, rt: &dyn Runtime, ns: &str) -> Result<(), RuntimeError> {
        let started = Instant::now();
        let inv = rt.inventory(ns).await?;
        let readings: Vec<Reading> = futures_util::stream::iter(
            inv.containers
                .into_iter()
                .filter(|c| c.status == RunStatus::Running),
        )
        .map(|c| async move {
            let stats = rt.stats(&c.name).await.ok()?;
            Some(Reading {
                container: c,
                stats,
            })
        })
        .buffer_unordered(CONCURRENCY)
        .filter_map(futures_util::future::ready)
        .collect()
        .await;
        let at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        self.last.store(Arc::new(Snapshot {
            at,
            took_seconds: started.elapsed().as_secs_f64(),
            readings,
        }));
        Ok(())
    }

    /// Sweeps every `interval` until shutdown.
    pub async fn run(
        self: Arc<Self>,
        rt: Arc<dyn Runtime>,
        ns: String,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            if let Err(e) = self.once(rt.as_ref(), &ns).await {
                tracing::warn!(error = %e, "stats sweep failed; keeping the last one");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[tokio::test]
    async fn a_sweep_reads_running_containers_only() {
        let rt = FakeRuntime::new();
        let spec = crate::fixtures::container_spec("bt", "acme", "app");
        rt.create_container(&spec).await.unwrap();
        let sweep = Sweep::default();
        sweep.once(&rt, "bt").await.unwrap();
        assert!(sweep.snapshot().readings.is_empty());
        rt.start_container(&spec.name).await.unwrap();
        sweep.once(&rt, "bt").await.unwrap();
        let s = sweep.snapshot();
        assert_eq!(s.readings.len(), 1);
        assert_eq!(s.readings[0].container.tenant, "acme");
        assert_eq!(s.readings[0].stats.pids, 1);
        assert!(s.at > 0);
    }
}
