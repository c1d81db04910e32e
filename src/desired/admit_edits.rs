//! Hand edits through admission. The API and CLI admit a tenant before writing its file; a file
//! written by hand (or copied in) is admitted here, by the pass that reads it: a tenant that is
//! new, or asks for more memory, disk or CPU than its last admitted state, must fit beside every
//! other tenant's admitted reservation. One that does not is frozen like an invalid file: nothing
//! of it changes, it keeps running and serving as it was admitted, and the refusal names its file
//! and field (in `berth status`, `berth diff` and the dashboard) until the file is fixed or the
//! host has room. A tenant that runs but has no record of what was admitted (its kept file
//! lost) is taken as admitted as it is: what runs is never stopped by admission.

use super::{
    Desired, HostConfig, Instance,
    admission::{self, Resource},
};
use crate::spec::{self, SpecError, SpecErrors, instance::InstanceFile};
use std::{
    borrow::Cow,
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

/// Whether `now` asks for more of any resource than `then`, or for a shared database server
/// `then` did not use (its first tenant brings the server's reservation).
pub fn grows(then: &Instance, now: &Instance) -> bool {
    Resource::ALL.iter().any(|r| r.of(now) > r.of(then))
        || (admission::uses_shared(now).is_some()
            && admission::uses_shared(now) != admission::uses_shared(then))
}

/// What a tenant was last admitted as: borrowed from the last pass, or made afresh.
pub type Admitted<'a> = Option<Cow<'a, Instance>>;

/// Admits each tenant of `d` that is new or grows past `admitted(t)` (its last admitted
/// state); tenants that do not grow are admitted first, so a tenant made smaller makes room
/// in the same pass. Growing ones are taken in name order. A pass where nothing grows costs a
/// lookup per tenant and copies nothing.
pub fn admit_edits<'a>(
    host: &HostConfig,
    d: &mut Desired,
    (sources, errors): (&mut BTreeMap<String, String>, &mut SpecErrors),
    admitted: &dyn Fn(&str, Option<&Instance>) -> Admitted<'a>,
) {
    // Each tenant's last admitted state, looked up once.
    let then: BTreeMap<String, Admitted<'a>> = (d.instances.iter())
        .map(|(t, i)| (t.clone(), admitted(t, Some(i))))
        .collect();
    let grew: BTreeSet<String> = (then.iter())
        .filter(|(t, a)| a.as_ref().is_none_or(|a| grows(a, &d.instances[*t])))
        .map(|(t, _)| t.clone())
        .collect();
    if grew.is_empty() {
        return;
    }
    let base = base(d, &then, &grew, admitted);
    let growing = then.into_iter().filter(|(t, _)| grew.contains(t)).collect();
    refuse_past_the_host(host, d, (sources, errors), base, growing);
}

/// Every tenant as admission counts it now: frozen ones as they run, growing ones as they were
/// admitted, the rest as their files say (a disk made smaller keeps its image's size: it frees
/// nothing).
fn base<'a>(
    d: &Desired,
    then: &BTreeMap<String, Admitted<'a>>,
    grew: &BTreeSet<String>,
    admitted: &dyn Fn(&str, Option<&Instance>) -> Admitted<'a>,
) -> Desired {
    let mut base = Desired {
        last_valid: d.last_valid.clone(),
        ..Desired::default()
    };
    for t in d.frozen.keys() {
        if !base.last_valid.contains_key(t)
            && let Some(a) = admitted(t, None)
        {
            base.last_valid.insert(t.clone(), a.into_owned());
        }
    }
    for (t, i) in &d.instances {
        let a = then[t].as_deref();
        let counted = match (grew.contains(t), a) {
            (true, Some(a)) => a.clone(),
            (true, None) => continue,
            (false, a) => {
                let mut kept = i.clone();
                kept.quota.disk = kept.quota.disk.max(a.and_then(|a| a.quota.disk));
                kept
            }
        };
        base.instances.insert(t.clone(), counted);
    }
    base
}

/// The growing tenants in name order, each admitted into `base` or frozen with why.
fn refuse_past_the_host(
    host: &HostConfig,
    d: &mut Desired,
    (sources, errors): (&mut BTreeMap<String, String>, &mut SpecErrors),
    mut base: Desired,
    growing: BTreeMap<String, Admitted>,
) {
    for (t, before) in growing {
        let refusals = admission::admit(host, &base, &d.instances[&t]);
        if refusals.is_empty() {
            base.instances.insert(t.clone(), d.instances[&t].clone());
            continue;
        }
        tracing::warn!(tenant = %t, refusals = ?refusals, "instance file not admitted");
        d.instances.remove(&t);
        let src = sources.remove(&t).unwrap_or_default();
        errors.0.extend(errors_at(&t, &src, &refusals));
        d.frozen.insert(t.clone(), refusals.join("; "));
        if let Some(a) = before {
            d.last_valid.insert(t, a.into_owned());
        }
    }
}

/// The refusals located at the file's `limits` (or its `plan` when it sets no limits).
fn errors_at(t: &str, src: &str, refusals: &[String]) -> Vec<SpecError> {
    let shown = PathBuf::from(format!("instances/{t}.yaml"));
    let Ok(f) = spec::parse_yaml::<InstanceFile>(&shown, src) else {
        return vec![];
    };
    let field = if f.value.limits.is_some() {
        "limits"
    } else {
        "plan"
    };
    refusals
        .iter()
        .map(|m| f.error_at(field, m.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{desired::host::Admission, fixtures};

    const GIB: u64 = 1 << 30;

    fn host() -> HostConfig {
        let mut h = fixtures::host();
        h.admission = Admission {
            memory_total: Some(GIB),
            cpu_total: Some(2000),
            cpu_overcommit: 1.0,
            ..Admission::default()
        };
        h
    }

    fn tenant(t: &str, memory: u64, cpus: f64) -> Instance {
        let mut i = fixtures::demo_instance(t);
        i.limits.memory = memory;
        i.limits.cpus = cpus;
        i
    }

    /// Runs admission over `now` with `then` as each tenant's admitted state.
    fn run(now: &[Instance], then: &[Instance]) -> (Desired, BTreeMap<String, String>, SpecErrors) {
        let mut d = Desired::default();
        let mut sources = BTreeMap::new();
        for i in now {
            d.instances.insert(i.tenant.clone(), i.clone());
            let src = format!("tenant: {0}\ntemplate: demo\nplan: small\n", i.tenant);
            sources.insert(i.tenant.clone(), src);
        }
        let then: BTreeMap<String, Instance> =
            then.iter().map(|i| (i.tenant.clone(), i.clone())).collect();
        let mut errors = SpecErrors::default();
        let admitted = |t: &str, _: Option<&Instance>| then.get(t).map(Cow::Borrowed);
        admit_edits(&host(), &mut d, (&mut sources, &mut errors), &admitted);
        (d, sources, errors)
    }

    #[test]
    fn a_hand_written_tenant_that_does_not_fit_is_frozen_with_the_reason_at_its_plan() {
        let a = tenant("a", 512 << 20, 0.5);
        let b = tenant("b", 768 << 20, 0.5);
        let (d, sources, errors) = run(&[a.clone(), b], &[a]);
        assert!(d.instances.contains_key("a") && !d.instances.contains_key("b"));
        assert!(
            d.frozen["b"].contains("not admitted: b needs 768m of memory"),
            "{:?}",
            d.frozen
        );
        assert!(
            !d.last_valid.contains_key("b"),
            "nothing of b was ever admitted"
        );
        assert!(
            !sources.contains_key("b"),
            "b's file is not kept as its last valid state"
        );
        let e = &errors.0[0];
        assert_eq!(
            (e.file.display().to_string(), e.line, e.field.as_str()),
            ("instances/b.yaml".into(), 3, "plan")
        );
    }

    #[test]
    fn an_edit_past_the_host_keeps_the_tenant_as_it_was_admitted() {
        let a = tenant("a", 512 << 20, 0.5);
        let b = tenant("b", 256 << 20, 0.5);
        let grown = tenant("b", 768 << 20, 0.5);
        let (d, _, errors) = run(&[a.clone(), grown], &[a, b.clone()]);
        assert_eq!(d.last_valid["b"], b, "b keeps serving as admitted");
        assert!(d.frozen.contains_key("b") && errors.0.len() == 1);
    }

    #[test]
    fn a_tenant_made_smaller_makes_room_for_another_in_the_same_pass() {
        let (a, b) = (tenant("a", 768 << 20, 0.5), tenant("b", 256 << 20, 0.5));
        // a (first by name) grows into the room b gives back.
        let (a2, b2) = (tenant("a", 896 << 20, 0.5), tenant("b", 128 << 20, 0.5));
        let (d, _, errors) = run(&[a2, b2], &[a, b]);
        assert!(errors.0.is_empty() && d.frozen.is_empty(), "{:?}", d.frozen);
        assert_eq!(d.instances.len(), 2);
    }

    #[test]
    fn a_frozen_tenant_counts_as_admitted_and_a_smaller_disk_frees_nothing() {
        // "f" is frozen (its template broke) and runs at 768m: "n" does not fit beside it.
        let f = tenant("f", 768 << 20, 0.5);
        let n = tenant("n", 512 << 20, 0.5);
        let mut d = Desired::default();
        d.instances.insert("n".into(), n.clone());
        d.frozen
            .insert("f".into(), "template \"demo\" has errors".into());
        let mut sources = BTreeMap::new();
        let mut errors = SpecErrors::default();
        let admitted = |t: &str, _: Option<&Instance>| (t == "f").then_some(Cow::Borrowed(&f));
        admit_edits(&host(), &mut d, (&mut sources, &mut errors), &admitted);
        assert!(d.frozen.contains_key("n"), "{:?}", d.frozen);

        // A disk quota lowered by hand leaves its image as big: no room for another.
        let mut h = host();
        h.admission.disk_total = Some(2 * GIB);
        let mut a = tenant("a", 64 << 20, 0.1);
        a.quota.disk = Some(2 * GIB);
        let mut a_small = a.clone();
        a_small.quota.disk = Some(GIB);
        let mut b = tenant("b", 64 << 20, 0.1);
        b.quota.disk = Some(GIB);
        let mut d = Desired::default();
        d.instances.insert("a".into(), a_small);
        d.instances.insert("b".into(), b);
        let admitted = |t: &str, _: Option<&Instance>| (t == "a").then_some(Cow::Borrowed(&a));
        admit_edits(&h, &mut d, (&mut BTreeMap::new(), &mut errors), &admitted);
        assert!(d.frozen["b"].contains("of disk"), "{:?}", d.frozen);
    }

    #[test]
    fn cpu_is_admitted_like_memory_and_an_unchanged_tenant_is_never_refused() {
        let a = tenant("a", 128 << 20, 1.5);
        let b = tenant("b", 128 << 20, 1.0);
        let (d, _, _) = run(&[a.clone(), b], &[a]);
        assert!(
            d.frozen["b"].contains("b needs 1 CPU; 1.5 CPUs is reserved already, so 2.5 CPUs in all, but this host allows 2 CPUs"),
            "{:?}",
            d.frozen
        );
        // A host that has shrunk since: what was admitted stays, unchanged.
        let big = [tenant("big", 4 * GIB, 4.0)];
        let (d, _, errors) = run(&big, &big);
        assert!(d.instances.contains_key("big") && errors.0.is_empty());
    }
}
