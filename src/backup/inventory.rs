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
}

impl Inventories {
    pub(super) fn new(state_dir: &std::path::Path) -> Inventories {
        Inventories {
            now: tokio::sync::Notify::new(),
            path: state_dir.join("offsite-inventory.json"),
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

    /// Makes this host the writer of `repo`'s inventory (kept if it was), carrying
    /// `carried` (a recovered inventory's tenants; those that exist here are not carried).
    pub(super) fn adopt(&self, repo: &str, carried: &[Entry]) {
        let mut all = self.written();
        let new = !all.contains_key(repo);
        let w = all.entry(repo.into()).or_default();
        let before = w.clone();
        for e in carried {
            w.carried.retain(|c| c.tenant != e.tenant);
            w.carried.push(e.clone());
        }
        if new || *w != before {
            let w = w.clone();
            self.save(repo, w);
        }
    }

    /// Drops `tenant` from every repository's carried tenants; whether it was carried.
    pub(super) fn forget(&self, tenant: &str) -> bool {
        let mut found = false;
        for (repo, mut w) in self.written() {
            let n = w.carried.len();
            w.carried.retain(|c| c.tenant != tenant);
            if w.carried.len() != n {
                found = true;
                self.save(&repo, w);
            }
        }
        found
    }

    fn save(&self, repo: &str, w: Written) {
        let mut all = self.written();
        all.insert(repo.into(), w);
        let json = serde_json::to_vec_pretty(&all).expect("records serialize");
        if let Err(e) = atomic::write(&self.path, &json, 0o600) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot record an inventory");
        }
    }
}

impl Backups {
    /// Something a recovery reads changed (a tenant purged): the inventory is compared now.
    pub fn inventory_changed(&self) {
        self.inventories.kick();
    }

    /// A purge of a name that is only carried (not recovered): the repositories forget it.
    pub fn forget_carried(&self, tenant: &str) -> bool {
        let found = self.inventories.forget(tenant);
        self.inventories.kick();
        found
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
            tenants.push(Entry {
                tenant: t.into(),
                tenant_id,
                domains,
            });
        }
        for c in carried {
            if !self.is_here(&c.tenant) && !tenants.iter().any(|e| e.tenant == c.tenant) {
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

    /// Writes each repository's inventory when it changed, every `EVERY` and after each copy,
    /// until shutdown. A repository that fails is tried again the next time.
    pub async fn inventory_loop(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        if self.repos.is_empty() {
            return;
        }
        loop {
            for (repo, client) in &self.repos {
                // Not this host's repository yet: nothing is written.
                let Some(mut last) = self.inventories.written().remove(&repo.name) else {
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
                        // Carried tenants back (or made anew) here are carried no more.
                        last.carried.retain(|c| !self.is_here(&c.tenant));
                        let (at, carried) = (inv.created, last.carried);
                        let w = Written {
                            digest,
                            snapshot,
                            at,
                            carried,
                        };
                        self.inventories.save(&repo.name, w);
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
