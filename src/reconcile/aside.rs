//! What a pass does beside planning and applying tenants' steps: the kernel's egress rules,
//! the shared database server's retirement, and each tenant's last valid state (kept on disk
//! and carried from pass to pass for the edge).

use super::{Controller, desired, shared_db};
use crate::runtime::Inventory;
use std::{borrow::Cow, collections::BTreeMap};

impl Controller {
    /// Brings the kernel's egress rules to the allocations and the allows of the desired
    /// tenants and, for frozen ones, of their last valid state.
    pub(super) async fn sync_egress(&self, d: &desired::Desired) {
        let Some(e) = self.svc.egress().cloned() else {
            return;
        };
        let pool = self.host().subnet_pool;
        let mut subnets: BTreeMap<String, ipnet::Ipv4Net> = self
            .svc
            .allocations()
            .snapshot()
            .into_iter()
            .filter_map(|(t, a)| Some((t, pool.subnet(a.subnet).0.parse().ok()?)))
            .collect();
        let mut allows: BTreeMap<String, Vec<_>> = d
            .instances
            .iter()
            .chain(&d.last_valid)
            .map(|(t, i)| (t.clone(), i.egress.clone()))
            .collect();
        // The mail relay (on the host's network, the pool's last subnet) reaches its smarthost
        // when that is an address tenants are denied (a provider's internal relay).
        let relay = self
            .host()
            .mail
            .as_ref()
            .and_then(|m| m.smarthost.as_ref()?.allow());
        if let Some(allow) = relay {
            let host_net = crate::runtime::labels::HOST_TENANT.to_string();
            let (net, _) = pool.subnet(pool.capacity() - 1);
            if let Ok(net) = net.parse() {
                subnets.insert(host_net.clone(), net);
                allows.insert(host_net, vec![allow]);
            }
        }
        let _ = tokio::task::spawn_blocking(move || e.sync(&subnets, &allows)).await;
    }

    /// The shared database server stops once no tenant uses it (after this pass's purges).
    /// `purging`: a purge tombstone was there when the pass began (the pass's records).
    pub(super) async fn retire_shared_db(
        &self,
        d: &desired::Desired,
        inv: &crate::runtime::Inventory,
        purging: bool,
    ) {
        use crate::spec::template::DatabaseEngine;
        for engine in [DatabaseEngine::Postgres, DatabaseEngine::Mariadb] {
            if self.host().shared_for(engine).is_none() {
                continue;
            }
            if let Err(e) = shared_db::retire_if_unused(
                self.svc.runtime().as_ref(),
                self.host(),
                d,
                inv,
                purging,
                engine,
            )
            .await
            {
                tracing::warn!(error = %e, ?engine, "shared database server not stopped");
            }
        }
    }

    /// Writes each tenant's valid file to its state dir when it changed (tenants whose state
    /// dir exists: set up by a pass), for `desired::last_valid` after a restart.
    pub(super) fn keep_last_valid(
        &self,
        sources: &BTreeMap<String, String>,
        frozen: &BTreeMap<String, String>,
    ) {
        use sha2::Digest;
        let mut kept = self.kept_valid.lock().expect("kept lock");
        kept.retain(|t, _| sources.contains_key(t));
        // A removed tenant (file gone, state kept) has no last valid state to serve later.
        for t in self.svc.allocations().snapshot().keys() {
            if !sources.contains_key(t) && !frozen.contains_key(t) {
                let _ = std::fs::remove_file(desired::last_valid::path(self.host(), t));
            }
        }
        for (t, text) in sources {
            let d: [u8; 32] = sha2::Sha256::digest(text.as_bytes()).into();
            if kept.get(t) == Some(&d) || !self.svc.layout().tenant(t).is_dir() {
                continue;
            }
            let path = desired::last_valid::path(self.host(), t);
            match crate::store::atomic::write(&path, text.as_bytes(), 0o600) {
                Ok(()) => {
                    kept.insert(t.clone(), d);
                }
                Err(e) => tracing::warn!(tenant = %t, error = %e, "last valid file not kept"),
            }
        }
    }

    /// Hand edits through admission (`desired::admit_edits`), against what the previous pass
    /// admitted; a tenant it did not see (after a restart) against its kept last valid file.
    pub(super) fn admit_edits(&self, loaded: &mut desired::Loaded, observed: &Inventory) {
        let prev = self.last_desired.read().expect("desired lock");
        let host = self.host();
        let templates = &loaded.templates;
        let admitted = |t: &str, now: Option<&desired::Instance>| {
            if let Some(i) = prev.instances.get(t).or_else(|| prev.last_valid.get(t)) {
                return Some(Cow::Borrowed(i));
            }
            if let Some(i) = desired::last_valid::read(host, templates, t) {
                return Some(Cow::Owned(i));
            }
            // Running with no record of it (its kept file lost or unbuildable): as it is.
            let running = |c: &crate::runtime::ObservedContainer| {
                c.tenant == t && c.status == crate::runtime::RunStatus::Running
            };
            let i = now
                .filter(|_| observed.containers.iter().any(running))?
                .clone();
            tracing::warn!(
                tenant = t,
                "no record of what was admitted for this running tenant: its file is taken as admitted"
            );
            Some(Cow::Owned(i))
        };
        let rest = (&mut loaded.sources, &mut loaded.errors);
        desired::admit_edits::admit_edits(host, &mut loaded.desired, rest, &admitted);
    }

    /// A tenant frozen now keeps the last valid state of the previous pass, for the edge.
    pub(super) fn carry_last_valid(&self, mut d: desired::Desired) -> desired::Desired {
        let prev = self.last_desired.read().expect("desired lock").clone();
        for t in d.frozen.keys() {
            if let Some(i) = prev.instances.get(t).or_else(|| prev.last_valid.get(t)) {
                // The state this agent saw last wins over a kept file read from disk.
                d.last_valid.insert(t.clone(), i.clone());
            }
        }
        d
    }
}
