//! This host's inventory kept current in every repository (`offsite::inventory`): the tenants
//! each repository serves, by name and identity, with their proven custom domains. A new one
//! is written when it differs from the last one written there (checked every minute and after
//! every copy), so a tenant made or purged a minute before the disk died is known to a
//! recovery. What was last written, by repository, is in `<state>/offsite-inventory.json`.
//!
//! A host writes a repository's inventory only once it is that repository's host: after its
//! first copy there, or a recovery from it. A fresh host (or one whose state was lost) must
//! never replace the inventory a recovery needs with an empty one. Tenants a recovery has not
//! brought back (failed, or not asked for) are carried into every later inventory until they
//! exist here again or the operator purges the name (`berth rm T --purge`).

use super::Backups;
use crate::{
    desired::repository::Repository,
    offsite::inventory::{Entry, FORMAT, Inventory},
    store::{atomic, domain_book},
};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

/// How often the inventory is compared with the last one written.
const EVERY: Duration = Duration::from_secs(60);

/// The last inventory written to one repository.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Written {
    pub digest: String,
    pub snapshot: String,
    /// Unix seconds.
    pub at: u64,
    /// Tenants of a recovered inventory not (yet) back on this host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub carried: Vec<Entry>,
}

/// Asks for an inventory now (after a copy) and remembers what was written where.
pub(super) struct Inventories {
    now: tokio::sync::Notify,
    path: PathBuf,
    /// Every read-modify-write of the file (the loop, a copy, a recovery, a purge at once).
    lock: std::sync::Mutex<()>,
}

impl Inventories {
    pub(super) fn new(state_dir: &std::path::Path) -> Inventories {
        Inventories {
            now: tokio::sync::Notify::new(),
            path: state_dir.join("offsite-inventory.json"),
            lock: std::sync::Mutex::new(()),
        }
    }

    pub(super) fn kick(&self) {
        self.now.notify_one();
    }

    pub(super) fn written(&self) -> BTreeMap<String, Written> {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Changes what is recorded of each repository by `f` (false: nothing changed), read and
    /// written under the lock.
    fn update(&self, f: impl FnOnce(&mut BTreeMap<String, Written>) -> bool) {
        let _one = self.lock.lock().expect("inventory lock");
        let mut all = self.written();
        if !f(&mut all) {
            return;
        }
        let json = serde_json::to_vec_pretty(&all).expect("records serialize");
        if let Err(e) = atomic::write(&self.path, &json, 0o600) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record an inventory");
        }
    }

    /// Makes this host the writer of `repo`'s inventory (kept if it was), carrying `carried`.
    pub(super) fn adopt(&self, repo: &str, carried: Vec<Entry>) {
        self.update(|all| {
            let new = !all.contains_key(repo);
            let w = all.entry(repo.into()).or_default();
            let before = w.carried.clone();
            for e in carried {
                w.carried.retain(|c| c.tenant != e.tenant);
                w.carried.push(e);
            }
            new || w.carried != before
        });
    }

    pub(super) fn owns(&self, repo: &str) -> bool {
        self.written().contains_key(repo)
    }

    /// Drops the carried tenants `gone` says are gone (back here, or purged), everywhere.
    fn drop_carried(&self, gone: impl Fn(&Entry) -> bool) {
        self.update(|all| {
            let mut changed = false;
            for w in all.values_mut() {
                let n = w.carried.len();
                w.carried.retain(|c| !gone(c));
                changed |= w.carried.len() != n;
            }
            changed
        });
    }
}

impl Backups {
    /// Whether `tenant` is carried into some repository's inventory (not recovered yet).
    pub fn is_carried(&self, tenant: &str) -> bool {
        let all = self.inventories.written();
        all.values()
            .any(|w| w.carried.iter().any(|c| c.tenant == tenant))
    }

    /// A tenant purged: a recovery must not bring it back, carried or not.
    pub fn forget_carried(&self, tenant: &str) {
        self.inventories.drop_carried(|c| c.tenant == tenant);
        self.inventories.kick();
    }

    /// Makes this host `repo`'s inventory writer after its first copy there, carrying the
    /// tenants of the repository's newest inventory of this host that are not here: a host
    /// that backs up before it recovers must not write an inventory that forgets them.
    pub(super) async fn adopt_after_copy(&self, repo: &dyn crate::offsite::Repo) {
        if self.inventories.owns(repo.name()) {
            return;
        }
        match repo.inventory(None).await {
            Ok(found) => {
                let tenants = found.map(|(_, inv)| inv.tenants).unwrap_or_default();
                self.adopt(repo.name(), tenants);
            }
            Err(e) => {
                tracing::warn!(repository = repo.name(), error = %e, "cannot read the repository's inventory; this host writes none there yet");
            }
        }
    }

    /// `inventories.adopt` of the entries whose tenant is not here (or is being recovered).
    pub(super) fn adopt(&self, repo: &str, tenants: Vec<Entry>) {
        let carried = tenants
            .into_iter()
            .filter(|e| !self.is_settled(&e.tenant))
            .collect();
        self.inventories.adopt(repo, carried);
    }

    /// The inventory of the tenants `repo` serves: every tenant with an instance file (a
    /// broken one too: it is still the tenant's) and an identity, none being purged and no
    /// verify's scratch tenant.
    pub(super) fn inventory_for(&self, repo: &Repository, carried: &[Entry]) -> Inventory {
        let layout = self.cx.svc.layout();
        let host = self.cx.svc.host();
        let desired = self.cx.passes.desired();
        let book = std::fs::read(layout.domains())
            .ok()
            .and_then(|b| serde_json::from_slice::<domain_book::Book>(&b).ok())
            .unwrap_or_default();
        let mut tenants = Vec::new();
        for e in std::fs::read_dir(&host.instances_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(t) = name.strip_suffix(".yaml") else {
                continue;
            };
            let plan = desired.instances.get(t).and_then(|i| i.plan.clone());
            let plan = plan.or_else(|| host.default_plan.clone());
            if !crate::desired::instance::is_tenant_name(t)
                || !repo.serves(t, plan.as_deref())
                || layout.purge_marker(t).exists()
                || layout.scratch_dir().join(t).exists()
            {
                continue;
            }
            let Some(tenant_id) = crate::store::identity::current(layout, t) else {
                continue;
            };
            let domains = book
                .bindings
                .iter()
                .filter(|(_, b)| b.tenant == t)
                .map(|(d, b)| (d.clone(), b.clone()))
                .collect();
            let tokens = self.carried_tokens(t, &tenant_id);
            tenants.push(Entry {
                tenant: t.into(),
                tenant_id,
                domains,
                tokens,
            });
        }
        for c in carried {
            if !self.is_settled(&c.tenant) && !tenants.iter().any(|e| e.tenant == c.tenant) {
                tenants.push(c.clone());
            }
        }
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Inventory {
            format: FORMAT,
            host: host.namespace.clone(),
            created: super::now(),
            tenants,
        }
    }

    /// Whether tenant `t` has an instance file here.
    fn is_here(&self, t: &str) -> bool {
        let dir = &self.cx.svc.host().instances_dir;
        dir.join(format!("{t}.yaml")).exists()
    }

    /// Whether tenant `t` is here and not half made by a recovery (nor a verify's scratch).
    fn is_settled(&self, t: &str) -> bool {
        self.is_here(t) && !self.cx.svc.layout().scratch_dir().join(t).exists()
    }

    /// Writes each repository's inventory when it changed, every `EVERY` and after each copy,
    /// until shutdown. A repository that fails is tried again the next time.
    pub async fn inventory_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.repos.is_empty() {
            return;
        }
        loop {
            for (repo, client) in &self.repos {
                // Not this host's repository yet: nothing is written.
                if !self.inventories.owns(&repo.name) {
                    continue;
                }
                // Carried tenants back here are carried no more (their own entry stands).
                self.inventories
                    .drop_carried(|c| self.is_settled(&c.tenant));
                let Some(last) = self.inventories.written().remove(&repo.name) else {
                    continue;
                };
                let inv = self.inventory_for(repo, &last.carried);
                let digest = inv.digest();
                if last.digest == digest {
                    continue;
                }
                let r = tokio::select! {
                    r = client.put_inventory(&inv) => r,
                    _ = shutdown.changed() => return,
                };
                match r {
                    Ok(snapshot) => {
                        tracing::info!(
                            repository = repo.name,
                            snapshot,
                            tenants = inv.tenants.len(),
                            "inventory written"
                        );
                        let at = inv.created;
                        self.inventories.update(|all| {
                            let w = all.entry(repo.name.clone()).or_default();
                            (w.digest, w.snapshot, w.at) = (digest, snapshot, at);
                            true
                        });
                    }
                    Err(e) => {
                        tracing::error!(repository = repo.name, error = %e, "inventory NOT written");
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(EVERY) => {}
                _ = self.inventories.now.notified() => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
