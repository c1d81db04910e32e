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
        let p = path(host, t);
        let Ok(src) = std::fs::read_to_string(&p) else {
            continue;
        };
        let shown = PathBuf::from(format!("tenants/{t}/last-valid.yaml"));
        let Ok(loaded) = spec::parse_yaml::<InstanceFile>(&shown, &src) else {
            continue;
        };
        if let Ok(i) = instance::build(&loaded, t, templates, host) {
            desired.last_valid.insert(t.clone(), i);
        }
    }
}
