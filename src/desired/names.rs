//! The engine's names of a tenant's objects: network `<ns>-<tenant>`, containers
//! `<ns>-<tenant>-<service>` (and the web service's blue-green `…-next`), volumes
//! `<ns>-<tenant>-<volume>`. Tenant names and service and volume names may all hold `-`, so two
//! tenants can spell the same name — tenant `a` with volume `b-data` and tenant `a-b` with
//! volume `data` are both `<ns>-a-b-data` — and the engine, which makes a volume that exists
//! already by handing back the one it has, would mount one tenant's data in the other. Tenants
//! whose names meet are refused.

use super::Instance;
use std::collections::BTreeMap;

/// (kind, name after `<ns>-`) of every engine object `i` has or may have.
pub fn engine_names(i: &Instance) -> Vec<(&'static str, String)> {
    let t = &i.tenant;
    let mut v = vec![("network", t.clone())];
    for s in &i.services {
        v.push(("container", format!("{t}-{}", s.name)));
        for m in &s.volumes {
            v.push(("volume", format!("{t}-{}", m.volume)));
        }
    }
    v.push(("container", format!("{t}-{}-next", i.web.service)));
    v.sort();
    v.dedup();
    v
}

/// Why `i` may not have its names: the first of them another of `others` has.
pub fn clash<'a>(i: &Instance, others: impl IntoIterator<Item = &'a Instance>) -> Option<String> {
    let mine = engine_names(i);
    for o in others.into_iter().filter(|o| o.tenant != i.tenant) {
        let theirs = engine_names(o);
        if let Some((kind, name)) = mine.iter().find(|n| theirs.contains(n)) {
            return Some(describe(kind, name, &o.tenant));
        }
    }
    None
}

fn describe(kind: &str, name: &str, other: &str) -> String {
    format!(
        "its {kind} would be named <namespace>-{name}, as one of tenant {other}'s is: tenant, service and volume names joined by '-' must not meet (rename the tenant)"
    )
}

/// Every tenant among `instances` whose names meet another's, with why (each of a pair).
pub fn clashes(instances: &BTreeMap<String, Instance>) -> BTreeMap<String, String> {
    let mut owner: BTreeMap<(&str, String), &str> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for (t, i) in instances {
        for (kind, name) in engine_names(i) {
            match owner.get(&(kind, name.clone())) {
                Some(other) if other != t => {
                    out.insert(t.clone(), describe(kind, &name, other));
                    out.entry(other.to_string())
                        .or_insert_with(|| describe(kind, &name, t));
                }
                _ => {
                    owner.insert((kind, name), t);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::demo_instance;

    /// A demo instance of `tenant` whose app service mounts a volume named `volume`.
    fn with_volume(tenant: &str, volume: &str) -> Instance {
        let mut i = demo_instance(tenant);
        let app = i.services.iter_mut().find(|s| s.name == "app").unwrap();
        app.volumes.push(crate::desired::model::VolumeMount {
            volume: volume.into(),
            target: "/data".into(),
            read_only: false,
        });
        i
    }

    #[test]
    fn two_tenants_that_spell_one_volume_name_are_both_named_and_refused() {
        let a = with_volume("a", "b-data");
        let ab = with_volume("a-b", "data");
        let all = BTreeMap::from([
            ("a".to_string(), a.clone()),
            ("a-b".to_string(), ab.clone()),
        ]);
        let c = clashes(&all);
        assert!(c["a"].contains("a-b") && c["a"].contains("volume"), "{c:?}");
        assert!(c["a-b"].contains("tenant a's"), "{c:?}");
        assert!(clash(&ab, [&a]).unwrap().contains("<namespace>-a-b-data"));
    }

    #[test]
    fn a_container_name_spelled_by_another_tenant_is_refused_and_distinct_names_pass() {
        let mut a = demo_instance("a");
        a.services.iter_mut().find(|s| s.name == "db").unwrap().name = "b-db".into();
        let ab = demo_instance("a-b");
        assert!(clash(&ab, [&a]).unwrap().contains("container"));
        let others = [
            demo_instance("ab"),
            demo_instance("b"),
            demo_instance("a-c"),
        ];
        assert_eq!(clash(&demo_instance("a"), others.iter()), None);
    }
}
