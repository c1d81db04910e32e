//! The certificate manager: every routed domain has a certificate at once (internal CA), a
//! public one is ordered when ACME is configured, and renewals run in-process: single-flight
//! per domain, budgets per account and tenant, backoff on failure, the last valid certificate
//! kept serving throughout.

use super::{
    CertError,
    ca::{InternalCa, LEAF_LIFETIME},
    issuer::{Clock, Issuer},
    limits::OrderBudget,
    pem, policy,
    store::{CertStore, Meta, Stored},
    table::CertTable,
};
use serde::Serialize;
use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};
use tokio::sync::Notify;

mod ari;
pub use ari::ARI_REFRESH;

pub const INTERNAL: &str = "internal";

pub struct CertManager {
    table: Arc<CertTable>,
    store: CertStore,
    ca: InternalCa,
    issuer: Option<Arc<dyn Issuer>>,
    clock: Arc<dyn Clock>,
    check_interval: Duration,
    /// Domain → tenant, as routed.
    wanted: Mutex<BTreeMap<String, String>>,
    served: Mutex<BTreeMap<String, Meta>>,
    inflight: Mutex<HashSet<String>>,
    budget: Mutex<OrderBudget>,
    kick: Notify,
}

/// One line of `berth cert ls`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct CertRow {
    pub domain: String,
    pub tenant: String,
    pub issuer: String,
    pub not_after: u64,
    pub renew_at: u64,
    pub last_error: Option<String>,
    pub retry_at: Option<u64>,
    pub ordering: bool,
}

pub struct Budgets {
    pub orders_per_minute: u32,
    pub orders_per_tenant_per_day: u32,
    pub check_interval: Duration,
}

impl Budgets {
    /// The ACME section's budgets; without ACME only the check interval matters (internal
    /// certificates are renewed on the same schedule), at the host config's default.
    pub fn of(acme: Option<&crate::desired::edge::AcmeConfig>) -> Budgets {
        match acme {
            Some(a) => Budgets {
                orders_per_minute: a.orders_per_minute,
                orders_per_tenant_per_day: a.orders_per_tenant_per_day,
                check_interval: a.check_interval,
            },
            None => Budgets {
                orders_per_minute: 1,
                orders_per_tenant_per_day: 1,
                check_interval: Duration::from_secs(600),
            },
        }
    }
}

impl CertManager {
    pub fn new(
        store: CertStore,
        ca: InternalCa,
        issuer: Option<Arc<dyn Issuer>>,
        clock: Arc<dyn Clock>,
        budgets: Budgets,
    ) -> Arc<CertManager> {
        let now = clock.now();
        Arc::new(CertManager {
            table: Arc::default(),
            store,
            ca,
            issuer,
            check_interval: budgets.check_interval,
            budget: Mutex::new(OrderBudget::new(
                budgets.orders_per_minute,
                budgets.orders_per_tenant_per_day,
                now,
            )),
            clock,
            wanted: Mutex::default(),
            served: Mutex::default(),
            inflight: Mutex::default(),
            kick: Notify::new(),
        })
    }

    pub fn table(&self) -> Arc<CertTable> {
        self.table.clone()
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    /// Sets the routed domains. New ones get a certificate before this returns (from disk or
    /// the internal CA); removed ones stop being served at once.
    pub fn set_domains(self: &Arc<Self>, wanted: BTreeMap<String, String>) {
        self.table.retain(&|d| wanted.contains_key(d));
        self.served
            .lock()
            .expect("served lock")
            .retain(|d, _| wanted.contains_key(d));
        for (domain, tenant) in &wanted {
            if self.table.get(domain).is_some() {
                continue;
            }
            if let Err(e) = self.load_or_issue_internal(domain, tenant) {
                tracing::error!(domain, error = %e, "no certificate for domain");
            }
        }
        let mut current = self.wanted.lock().expect("wanted lock");
        let changed = *current != wanted;
        *current = wanted;
        drop(current);
        if changed {
            self.kick.notify_one();
        }
    }

    fn load_or_issue_internal(&self, domain: &str, tenant: &str) -> Result<(), CertError> {
        let now = self.clock.now();
        let scopes = self
            .issuer
            .iter()
            .map(|i| i.scope())
            .chain([INTERNAL.to_string()]);
        for scope in scopes {
            if let Some(s) = self.store.load(&scope, domain)
                && pem::from_unix(s.meta.not_after) > now
                && let Ok(key) = pem::certified_key(&s.chain_pem, &s.key_pem)
            {
                self.install(
                    domain,
                    key,
                    Meta {
                        tenant: tenant.into(),
                        ..s.meta
                    },
                );
                return Ok(());
            }
        }
        self.issue_internal(domain, tenant)
    }

    fn issue_internal(&self, domain: &str, tenant: &str) -> Result<(), CertError> {
        let (chain_pem, key_pem) = self.ca.issue(domain, LEAF_LIFETIME)?;
        let meta = self.meta_for(domain, tenant, INTERNAL, &chain_pem, None)?;
        let key = pem::certified_key(&chain_pem, &key_pem)?;
        self.store.save(
            INTERNAL,
            &Stored {
                chain_pem,
                key_pem,
                meta: meta.clone(),
            },
        )?;
        self.install(domain, key, meta);
        Ok(())
    }

    fn meta_for(
        &self,
        domain: &str,
        tenant: &str,
        issuer: &str,
        chain: &str,
        ari: Option<(SystemTime, SystemTime)>,
    ) -> Result<Meta, CertError> {
        let (nb, na) = pem::validity(chain)?;
        let renew_at = policy::renew_at(nb, na, ari, ari::random_pick());
        Ok(Meta {
            domain: domain.into(),
            tenant: tenant.into(),
            issuer: issuer.into(),
            not_before: pem::unix(nb),
            not_after: pem::unix(na),
            renew_at: pem::unix(renew_at),
            // A public certificate's window was just read by the order that issued it.
            ari_checked_at: pem::unix(self.clock.now()),
            ..Meta::default()
        })
    }

    fn install(&self, domain: &str, key: Arc<rustls::sign::CertifiedKey>, meta: Meta) {
        self.table.set(domain, key);
        self.served
            .lock()
            .expect("served lock")
            .insert(domain.into(), meta);
    }

    /// What is due now: domains needing a first public certificate or a renewal, not in
    /// backoff. Returns the time of the next due item, for the loop's sleep.
    pub fn due(&self) -> (Vec<(String, String)>, Option<SystemTime>) {
        let now = self.clock.now();
        let served = self.served.lock().expect("served lock");
        let wanted = self.wanted.lock().expect("wanted lock");
        let mut due = Vec::new();
        let mut next: Option<SystemTime> = None;
        for (domain, tenant) in wanted.iter() {
            let Some(m) = served.get(domain) else {
                continue;
            };
            let public_missing = self.issuer.is_some() && m.issuer == INTERNAL;
            let at = if public_missing {
                pem::from_unix(m.retry_at)
            } else {
                pem::from_unix(m.renew_at.max(m.retry_at))
            };
            if at <= now {
                due.push((domain.clone(), tenant.clone()));
            } else {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        (due, next)
    }

    /// One maintenance round: starts an order (or internal reissue) for everything due.
    pub fn maintain(self: &Arc<Self>) -> Duration {
        let (due, next) = self.due();
        for (domain, tenant) in due {
            if self.issuer.is_none() {
                if let Err(e) = self.issue_internal(&domain, &tenant) {
                    tracing::error!(domain, error = %e, "internal certificate renewal failed");
                }
                continue;
            }
            if let Ok(Some(fut)) = self.start_order(&domain, &tenant) {
                tokio::spawn(fut);
            }
        }
        for domain in self.ari_due() {
            self.spawn_ari_refresh(domain);
        }
        let until_next = next
            .and_then(|n| n.duration_since(self.clock.now()).ok())
            .unwrap_or(self.check_interval);
        until_next
            .min(self.check_interval)
            .max(Duration::from_millis(200))
    }

    /// Claims the single flight for `domain` and a slot in the budgets; the returned future
    /// runs the order. `Ok(None)`: an order for this domain is already running.
    fn start_order(
        self: &Arc<Self>,
        domain: &str,
        tenant: &str,
    ) -> Result<Option<impl Future<Output = Result<(), CertError>> + use<>>, CertError> {
        if !self
            .inflight
            .lock()
            .expect("inflight lock")
            .insert(domain.to_string())
        {
            return Ok(None);
        }
        let now = self.clock.now();
        if let Err(spent) = self.budget.lock().expect("budget lock").take(tenant, now) {
            let why = spent.to_string();
            self.inflight.lock().expect("inflight lock").remove(domain);
            self.record_failure(domain, &why, false);
            return Err(CertError::RateLimited(why));
        }
        let (me, domain, tenant) = (self.clone(), domain.to_string(), tenant.to_string());
        Ok(Some(async move {
            let r = me.order(&domain, &tenant).await;
            me.inflight.lock().expect("inflight lock").remove(&domain);
            if let Err(e) = &r {
                me.record_failure(&domain, &e.to_string(), true);
            }
            r
        }))
    }

    async fn order(&self, domain: &str, tenant: &str) -> Result<(), CertError> {
        let issuer = self.issuer.clone().ok_or(CertError::NoAcme)?;
        let scope = issuer.scope();
        let replacing = self.store.load(&scope, domain).map(|s| s.chain_pem);
        tracing::info!(domain, tenant, "ordering certificate");
        let issued = issuer.issue(domain, replacing.as_deref()).await?;
        let key = pem::certified_key(&issued.chain_pem, &issued.key_pem)?;
        let ari = issuer.renewal_window(&issued.chain_pem).await;
        let meta = self.meta_for(domain, tenant, "acme", &issued.chain_pem, ari)?;
        self.store.save(
            &scope,
            &Stored {
                chain_pem: issued.chain_pem,
                key_pem: issued.key_pem,
                meta: meta.clone(),
            },
        )?;
        if self
            .wanted
            .lock()
            .expect("wanted lock")
            .contains_key(domain)
        {
            self.install(domain, key, meta);
        }
        tracing::info!(domain, tenant, "certificate installed");
        Ok(())
    }

    /// Keeps the current certificate serving; schedules the retry with backoff.
    fn record_failure(&self, domain: &str, error: &str, counts: bool) {
        let now = self.clock.now();
        let mut served = self.served.lock().expect("served lock");
        let Some(m) = served.get_mut(domain) else {
            return;
        };
        if counts {
            m.failures += 1;
        }
        m.last_error = Some(error.to_string());
        let wait = if counts {
            policy::backoff(m.failures)
        } else {
            Duration::from_secs(60)
        };
        m.retry_at = pem::unix(now + wait);
        tracing::warn!(
            domain,
            error,
            retry_in_s = wait.as_secs(),
            "certificate order failed"
        );
        let scope = if m.issuer == INTERNAL {
            INTERNAL.to_string()
        } else {
            self.issuer.as_ref().map(|i| i.scope()).unwrap_or_default()
        };
        let _ = self.store.save_meta(&scope, m);
    }

    /// `berth cert renew D`: orders now (ignoring backoff) and waits for the outcome.
    pub async fn renew(self: &Arc<Self>, domain: &str) -> Result<(), CertError> {
        let tenant = self
            .wanted
            .lock()
            .expect("wanted lock")
            .get(domain)
            .cloned()
            .ok_or_else(|| CertError::UnknownDomain(domain.into()))?;
        if self.issuer.is_none() {
            return self.issue_internal(domain, &tenant);
        }
        match self.start_order(domain, &tenant)? {
            Some(fut) => fut.await,
            None => Err(CertError::Busy(domain.into())),
        }
    }

    pub fn rows(&self) -> Vec<CertRow> {
        let inflight = self.inflight.lock().expect("inflight lock").clone();
        let now = pem::unix(self.clock.now());
        self.served
            .lock()
            .expect("served lock")
            .values()
            .map(|m| CertRow {
                domain: m.domain.clone(),
                tenant: m.tenant.clone(),
                issuer: m.issuer.clone(),
                not_after: m.not_after,
                renew_at: m.renew_at,
                last_error: m.last_error.clone(),
                retry_at: (m.retry_at > now).then_some(m.retry_at),
                ordering: inflight.contains(&m.domain),
            })
            .collect()
    }

    /// Renews what is due, every check interval or sooner when something is due or asked for.
    pub async fn run(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let wait = self.maintain();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.kick.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
