//! The checks around a new version: its migration (run in the new container) and the health
//! gate (N consecutive 2xx within the timeout, then still healthy for the watch period).

use super::{
    Upgrader,
    transition::{Fail, failed},
};
use crate::{
    desired::{self, Instance},
    proxy::health,
    proxy::target::Target,
    spec::template::StringOrList,
};
use std::{sync::Arc, time::Duration};

/// Unanswered probes in a row that fail the watch (each waits up to 5 s for its answer).
const UNANSWERED_LIMIT: u32 = 3;

impl Upgrader {
    /// Runs the version's migration in the new container; marks the tenant migrated first, so
    /// even a migration that dies half way is undone by restoring the backup.
    pub(super) async fn migrate(&self, t: &str, container: &str) -> Result<(), Fail> {
        let to = self.progress(t).map(|p| p.1).unwrap_or_default();
        let Some(cmd) = self.migration(&to) else {
            return Ok(());
        };
        self.update(t, |p| p.migrated = true);
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let out = self
            .cx
            .svc
            .runtime()
            .exec(container, &args, None)
            .await
            .map_err(failed)?;
        if out.exit_code != 0 {
            return Err(failed(format!(
                "migration exited {}: {}",
                out.exit_code,
                out.output.trim().chars().take(500).collect::<String>()
            )));
        }
        Ok(())
    }

    fn migration(&self, to: &str) -> Option<Vec<String>> {
        let app = self.status()?.app;
        let loaded = desired::load(self.cx.svc.host());
        let v = loaded
            .templates
            .get(&app)?
            .file()
            .versions
            .get(to)?
            .migration
            .clone()?;
        Some(match v {
            StringOrList::List(l) => l,
            StringOrList::String(s) => vec!["/bin/sh".into(), "-c".into(), s],
        })
    }

    /// N consecutive 2xx answers within the timeout, then still healthy for the watch period.
    pub(super) async fn health_gate(
        &self,
        t: &str,
        target: &Arc<Target>,
        inst: &Instance,
    ) -> Result<(), Fail> {
        let gate = self.progress(t).map(|p| p.2).unwrap_or_default();
        let host = health::probe_host(inst, self.cx.svc.host().base_domain.as_deref());
        let path = &inst.web.health_path;
        health::wait_healthy(
            target,
            path,
            &host,
            gate.passes,
            Duration::from_secs(gate.timeout_s),
        )
        .await
        .map_err(failed)?;
        let until = tokio::time::Instant::now() + Duration::from_secs(gate.watch_s);
        // An answer that is not 2xx fails at once; probes that get no answer (timeout, reset)
        // fail only when UNANSWERED_LIMIT come in a row: a few slow replies on a loaded host
        // are not a broken release, and rolling back for them would be. A dead container is
        // refused at once, so it still fails within a second.
        let mut unanswered = 0;
        while tokio::time::Instant::now() < until || unanswered > 0 {
            match health::probe(target, path, &host).await {
                Ok(s) if (200..300).contains(&s) => unanswered = 0,
                Ok(s) => return Err(failed(format!("healthy at first, then status {s}"))),
                Err(e) if unanswered + 1 >= UNANSWERED_LIMIT => {
                    return Err(failed(format!(
                        "healthy at first, then {UNANSWERED_LIMIT} probes in a row {e}"
                    )));
                }
                Err(e) => {
                    tracing::info!(
                        tenant = t,
                        error = %e,
                        "health probe unanswered; probing again"
                    );
                    unanswered += 1;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Ok(())
    }
}
