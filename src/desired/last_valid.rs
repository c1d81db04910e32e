//! The last valid instance file of each tenant, kept in the state dir
//! (`tenants/<t>/last-valid.yaml`), so a tenant whose file breaks keeps serving at the edge as
//! it last was, also after an agent restart (the controller carries it in memory meanwhile).

use super::{Desired, HostConfig, instance, template::Template};
use crate::spec::{self, instance::InstanceFile};
use std::{collections::BTreeMap, path::PathBuf};

pub fn path(host: &HostConfig, tenant: &str) -> PathBuf {
    crate::store::Layout::new(host.state_dir.clone()).last_valid(tenant)
}

/// For each frozen tenant with a kept file that still builds (its template is valid), that
/// state as `desired.last_valid`.
pub fn restore(host: &HostConfig, templates: &BTreeMap<String, Template>, desired: &mut Desired) {
    for t in desired.frozen.keys() {
        if let Some(i) = read(host, templates, t) {
            desired.last_valid.insert(t.clone(), i);
        }
    }
}

/// The tenant's kept file, built; None when there is none or it no longer builds.
pub fn read(
    host: &HostConfig,
    templates: &BTreeMap<String, Template>,
    t: &str,
) -> Option<super::Instance> {
    let src = std::fs::read_to_string(path(host, t)).ok()?;
    let shown = PathBuf::from(format!("tenants/{t}/last-valid.yaml"));
    let loaded = spec::parse_yaml::<InstanceFile>(&shown, &src).ok()?;
    instance::build(&loaded, t, templates, host).ok()
}
