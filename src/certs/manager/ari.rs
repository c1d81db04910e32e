//! ARI refresh: the CA's suggested renewal window is asked for again every few hours, so a
//! CA that pulls renewals forward (before a mass revocation, say) is followed in time.

use super::{CertManager, pem, policy};
use std::{sync::Arc, time::Duration};

/// How long a renewal window read from the CA is trusted before it is asked for again.
pub const ARI_REFRESH: Duration = Duration::from_secs(6 * 3600);

impl CertManager {
    /// Public certificates whose window was last read more than `ARI_REFRESH` ago and that
    /// have no order or refresh running.
    pub(super) fn ari_due(&self) -> Vec<String> {
        if self.issuer.is_none() {
            return vec![];
        }
        let now = pem::unix(self.clock.now());
        let inflight = self.inflight.lock().expect("inflight lock");
        self.served
            .lock()
            .expect("served lock")
            .values()
            .filter(|m| m.issuer == "acme" && m.ari_checked_at + ARI_REFRESH.as_secs() <= now)
            .filter(|m| !inflight.contains(&m.domain))
            .map(|m| m.domain.clone())
            .collect()
    }

    /// Starts a refresh for `domain` under its single flight (never beside an order).
    pub(super) fn spawn_ari_refresh(self: &Arc<Self>, domain: String) {
        if !self
            .inflight
            .lock()
            .expect("inflight lock")
            .insert(domain.clone())
        {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            me.refresh_ari(&domain).await;
            me.inflight.lock().expect("inflight lock").remove(&domain);
            me.kick.notify_one();
        });
    }

    async fn refresh_ari(&self, domain: &str) {
        let Some(issuer) = self.issuer.clone() else {
            return;
        };
        let scope = issuer.scope();
        let Some(stored) = self.store.load(&scope, domain) else {
            return;
        };
        let window = issuer.renewal_window(&stored.chain_pem).await;
        let now = self.clock.now();
        let mut served = self.served.lock().expect("served lock");
        let Some(m) = served.get_mut(domain) else {
            return;
        };
        if m.not_after != stored.meta.not_after {
            return; // replaced while we asked
        }
        m.ari_checked_at = pem::unix(now);
        if let Some((start, end)) = window {
            let current = pem::from_unix(m.renew_at);
            if current < start || current > end {
                m.renew_at = pem::unix(policy::renew_at(
                    pem::from_unix(m.not_before),
                    pem::from_unix(m.not_after),
                    window,
                    random_pick(),
                ));
                tracing::info!(domain, renew_at = m.renew_at, "CA moved the renewal window");
            }
        }
        if let Err(e) = self.store.save_meta(&scope, m) {
            tracing::warn!(domain, error = %e, "cannot record renewal window");
        }
    }
}

/// A uniform point in [0, 1]: where in the CA's window to renew, so certificates issued
/// together do not all renew in the same second (RFC 9773 §4.2).
pub(super) fn random_pick() -> f64 {
    let mut pick = [0u8; 4];
    let _ = getrandom::fill(&mut pick);
    f64::from(u32::from_le_bytes(pick)) / f64::from(u32::MAX)
}
