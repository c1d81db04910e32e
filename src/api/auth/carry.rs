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
            .collect()
    }

    fn adopt(&self, tenant: &str, tenant_id: &str, tokens: &[CarriedToken]) -> usize {
        let now = unix_now();
        let mut all = self.lock();
        let before = all.len();
        for c in tokens {
            if let Err(why) = c.check() {
                tracing::warn!(tenant, why, "a carried token is refused");
                continue;
            }
            if c.expires.is_some_and(|e| e <= now) || all.iter().any(|r| r.id == c.id) {
                continue;
            }
            // Names are one per live token here: a taken one gets the token's id after it.
            let named = |n: &str| all.iter().any(|r| r.name == n && r.revoked.is_none());
            let name = match (named(&c.name), format!("{}-{}", c.name, c.id)) {
                (false, _) => c.name.clone(),
                (true, other) if !named(&other) => other,
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
        if taken > 0
            && let Err(e) = self.save(&all)
        {
            tracing::error!(tenant, error = %e, "carried tokens not written: they are refused");
            all.truncate(before);
            return 0;
        }
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_own_tokens_travel_and_are_taken_once_where_it_lands() {
        let dir = tempfile::tempdir().unwrap();
        let here = TokenStore::open(dir.path().join("a.json"));
        let ids = |t: &str| (t == "acme").then(|| ("a".repeat(32), 1));
        let mk = |role, tenants: &[&str]| super::super::tokens::NewToken {
            role,
            tenants: tenants.iter().map(|t| t.to_string()).collect(),
            name: Some(format!("{role:?}")),
            expires_in: Some(3600),
            no_expiry: false,
        };
        let (_, admin) = here
            .create(&mk(Role::TenantAdmin, &["acme"]), &ids)
            .unwrap();
        let _ = here.create(&mk(Role::Operator, &[]), &ids).unwrap();
        let carried = here.carried("acme", &"a".repeat(32));
        assert_eq!(
            carried.len(),
            1,
            "only acme's own tenant token: {carried:?}"
        );
        assert!(
            here.carried("acme", &"b".repeat(32)).is_empty(),
            "another identity"
        );

        let there = TokenStore::open(dir.path().join("b.json"));
        let mk_there = |name: &str| super::super::tokens::NewToken {
            name: Some(name.into()),
            ..mk(Role::TenantViewer, &["acme"])
        };
        there.create(&mk_there("TenantAdmin"), &ids).unwrap();
        assert_eq!(there.adopt("acme", &"a".repeat(32), &carried), 1);
        let names: Vec<String> = there.list(&ids).iter().map(|r| r.name.clone()).collect();
        assert!(
            names.contains(&format!("TenantAdmin-{}", carried[0].id)),
            "{names:?}"
        );
        assert_eq!(
            there.adopt("acme", &"a".repeat(32), &carried),
            0,
            "taken once"
        );
        let who = there
            .authenticate(&admin, &ids)
            .expect("the same bearer works there");
        assert!(who.visible().is_some_and(|v| v.contains("acme")), "{who:?}");
        // What the other host hands over is checked: an operator token never lands.
        let mut op = carried[0].clone();
        (op.id, op.role) = ("ffffffff".into(), "operator".into());
        assert_eq!(there.adopt("acme", &"a".repeat(32), &[op]), 0);
    }
}
