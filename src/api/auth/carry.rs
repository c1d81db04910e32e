//! The token store as `offsite::tokens::TenantTokens`: a tenant's own tokens handed out to
//! travel with it, and taken in where it is made again.

use super::{
    Role,
    tokens::{TokenRecord, TokenStore, unix_now},
};
use crate::offsite::tokens::{CarriedToken, TenantTokens};
use std::collections::{BTreeMap, BTreeSet};

fn role_name(r: Role) -> Option<&'static str> {
    match r {
        Role::TenantAdmin => Some("tenant-admin"),
        Role::TenantViewer => Some("tenant-viewer"),
        Role::Operator => None,
    }
}

impl TenantTokens for TokenStore {
    fn carried(&self, tenant: &str, tenant_id: &str) -> Vec<CarriedToken> {
        let now = unix_now();
        self.lock()
            .iter()
            .filter(|r| r.revoked.is_none() && r.expires.is_none_or(|e| e > now))
            .filter(|r| r.tenants.len() == 1 && r.tenants.contains(tenant))
            .filter(|r| r.tenant_ids.get(tenant).map(String::as_str) == Some(tenant_id))
            .filter_map(|r| {
                Some(CarriedToken {
                    id: r.id.clone(),
                    name: r.name.clone(),
                    role: role_name(r.role)?.into(),
                    digest: r.digest.clone(),
                    created: r.created,
                    expires: r.expires,
                })
            })
            .take(crate::offsite::tokens::MAX_CARRIED)
            .collect()
    }

    fn adopt(&self, tenant: &str, tenant_id: &str, tokens: &[CarriedToken]) -> usize {
        let now = unix_now();
        let mut all = self.lock();
        let snapshot = all.clone();
        let alone = |r: &TokenRecord| {
            r.tenants.len() == 1
                && r.tenants.contains(tenant)
                && r.tenant_ids.get(tenant).map(String::as_str) == Some(tenant_id)
        };
        // Left from an earlier stay of this tenant here: the carried set replaces it.
        let carried: BTreeSet<&str> = tokens.iter().map(|c| c.id.as_str()).collect();
        for r in all.iter_mut().filter(|r| alone(r) && r.revoked.is_none()) {
            if !carried.contains(r.id.as_str()) {
                r.revoked = Some(now);
            }
        }
        all.retain(|r| !(alone(r) && carried.contains(r.id.as_str())));
        let before = all.len();
        for c in tokens.iter().take(crate::offsite::tokens::MAX_CARRIED) {
            if let Err(why) = c.check() {
                tracing::warn!(tenant, why, "a carried token is refused");
                continue;
            }
            if c.expires.is_some_and(|e| e <= now) || all.iter().any(|r| r.id == c.id) {
                continue;
            }
            // Names are one per live token here: a taken one gets the token's id after it.
            let named = |n: &str| all.iter().any(|r| r.name == n && r.revoked.is_none());
            let other = format!("{}-{}", &c.name[..c.name.len().min(55)], c.id);
            let name = match (named(&c.name), named(&other)) {
                (false, _) => c.name.clone(),
                (true, false) => other,
                _ => continue,
            };
            let role = match c.role.as_str() {
                "tenant-admin" => Role::TenantAdmin,
                _ => Role::TenantViewer,
            };
            all.push(TokenRecord {
                id: c.id.clone(),
                name,
                role,
                tenants: BTreeSet::from([tenant.to_string()]),
                tenant_ids: BTreeMap::from([(tenant.to_string(), tenant_id.to_string())]),
                digest: c.digest.clone(),
                created: c.created,
                expires: c.expires,
                last_used: None,
                revoked: None,
            });
        }
        let taken = all.len() - before;
        if *all != snapshot
            && let Err(e) = self.save(&all)
        {
            tracing::error!(tenant, error = %e, "carried tokens not written: they are refused");
            *all = snapshot;
            return 0;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_own_tokens_travel_and_replace_what_it_had_where_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let here = TokenStore::open(dir.path().join("a.json"));
        let ids = |t: &str| match t {
            "acme" => Some(("a".repeat(32), 1)),
            "globex" => Some(("c".repeat(32), 1)),
            _ => None,
        };
        let mk = |role, tenants: &[&str], name: &str| super::super::tokens::NewToken {
            role,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            name: Some(name.into()),
            expires_in: Some(3600),
            no_expiry: false,
        };
        let (_, admin) = here
            .create(&mk(Role::TenantAdmin, &["acme"], "ci"), &ids)
            .unwrap();
        here.create(&mk(Role::Operator, &[], "op"), &ids).unwrap();
        here.create(&mk(Role::TenantViewer, &["acme", "globex"], "both"), &ids)
            .unwrap();
        let acme = "a".repeat(32);
        let carried = here.carried("acme", &acme);
        assert_eq!(carried.len(), 1, "only acme's own token: {carried:?}");
        assert!(
            here.carried("acme", &"b".repeat(32)).is_empty(),
            "another identity"
        );

        // There: globex's token holds the name; a stale token of acme's is left from before.
        let there = TokenStore::open(dir.path().join("b.json"));
        there
            .create(&mk(Role::TenantViewer, &["globex"], "ci"), &ids)
            .unwrap();
        let (_, stale) = there
            .create(&mk(Role::TenantAdmin, &["acme"], "old"), &ids)
            .unwrap();
        assert_eq!(there.adopt("acme", &acme, &carried), 1);
        let who = there
            .authenticate(&admin, &ids)
            .expect("the same bearer works there");
        assert!(who.visible().is_some_and(|v| v.contains("acme")), "{who:?}");
        assert!(
            there.authenticate(&stale, &ids).is_err(),
            "the stale one is revoked"
        );
        let names: Vec<String> = there.list(&ids).iter().map(|r| r.name.clone()).collect();
        assert!(
            names.contains(&format!("ci-{}", carried[0].id)),
            "{names:?}"
        );
        // Again: the same set, nothing more.
        assert_eq!(there.adopt("acme", &acme, &carried), 1);
        assert_eq!(
            there
                .list(&ids)
                .iter()
                .filter(|r| r.revoked.is_none())
                .count(),
            2
        );
        // Carried without it (revoked at the source): revoked here too.
        assert_eq!(there.adopt("acme", &acme, &[]), 0);
        assert!(there.authenticate(&admin, &ids).is_err());
        // What the other host hands over is checked: an operator token never lands.
        let mut op = carried[0].clone();
        (op.id, op.role) = ("ffffffff".into(), "operator".into());
        assert_eq!(there.adopt("acme", &acme, &[op]), 0);
    }
}
