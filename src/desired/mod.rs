//! Validated desired state: the host config, templates and instances after every check,
//! including the rules that span files (unique tenants, domains claimed once).

pub mod admission;
pub mod admit_edits;
pub mod api;
pub mod backups;
pub mod domains;
pub mod edge;
pub mod egress;
pub mod engine;
pub mod host;
mod host_sections;
pub mod image_ref;
pub mod instance;
mod instance_parts;
mod invalid;
pub mod last_valid;
pub mod limits;
pub mod mail;
pub mod model;
pub mod names;
pub mod params;
pub mod probes;
pub mod quota;
pub mod render;
pub mod repository;
pub mod schedule;
pub mod secret;
pub mod selector;
pub mod service;
pub mod subnet;
pub mod template;

pub use host::HostConfig;
pub use invalid::Invalid;
pub use model::{Desired, Instance, Service};

use crate::spec::{self, SpecErrors};
use std::collections::BTreeMap;
use template::Template;

/// Everything read from the template and instance directories, validated.
#[derive(Debug, Default)]
pub struct Loaded {
    pub templates: BTreeMap<String, Template>,
    pub desired: Desired,
    /// Every problem found, for `berth validate` and the API.
    pub errors: SpecErrors,
    /// The text of each valid instance file, as read (what `last_valid` keeps).
    pub sources: BTreeMap<String, String>,
}

/// Reads and validates all templates and instances named by `host`.
pub fn load(host: &HostConfig) -> Loaded {
    let (sources, mut errors) = spec::load_templates(&host.templates_dir);
    let mut templates = BTreeMap::new();
    let mut broken_templates = Vec::new();
    for (app, src) in sources {
        match template::validate(&app, src) {
            Ok(t) => {
                templates.insert(app, t);
            }
            Err(e) => {
                errors.0.extend(e.0);
                broken_templates.push(app);
            }
        }
    }
    let (files, broken) = spec::load_instances(&host.instances_dir);
    let mut desired = Desired::default();
    for (stem, e) in broken {
        desired.frozen.insert(stem, e.to_string());
        errors.push(e);
    }
    let proven = domains::proven(&host.state_dir);
    let mut sources = BTreeMap::new();
    let mut claims: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for f in &files {
        let stem = f
            .shown
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if broken_templates.contains(&f.value.template) {
            desired
                .frozen
                .insert(stem, format!("template {:?} has errors", f.value.template));
            continue;
        }
        match instance::build(f, &stem, &templates, host) {
            Ok(i) => {
                for d in exclusive_claims(&i, host, &proven) {
                    claims.entry(d).or_default().push(stem.clone());
                }
                sources.insert(stem.clone(), f.source().to_string());
                desired.instances.insert(stem, i);
            }
            Err(e) => {
                desired.frozen.insert(stem, e.to_string());
                errors.0.extend(e.0);
            }
        }
    }
    reject_shared_domains(&files, claims, &mut desired, &mut errors);
    reject_shared_names(&files, &mut desired, &mut errors);
    sources.retain(|t, _| desired.instances.contains_key(t));
    last_valid::restore(host, &templates, &mut desired);
    Loaded {
        templates,
        desired,
        errors,
        sources,
    }
}

/// The explicit domains, aliases and path mounts plus the tenant subdomain under the base domain.
pub fn claimed_domains(i: &Instance, host: &HostConfig) -> Vec<String> {
    let mut v = i.domains.clone();
    v.extend(i.aliases.iter().cloned());
    v.extend(i.paths.iter().map(|p| p.key()));
    if let Some(b) = &host.base_domain {
        v.push(format!("{}.{b}", i.tenant));
    }
    v
}

/// The names that conflict with another tenant naming them: the tenant's subdomain, its path
/// mounts, and the custom domains and aliases it has proven. A custom domain still waiting for
/// proof is only a claim: another tenant may claim it too, and proof decides.
pub fn exclusive_claims(
    i: &Instance,
    host: &HostConfig,
    proven: &BTreeMap<String, String>,
) -> Vec<String> {
    let mine = |d: &&String| proven.get(*d).is_some_and(|t| *t == i.tenant);
    let mut v: Vec<String> = i
        .domains
        .iter()
        .chain(&i.aliases)
        .filter(mine)
        .cloned()
        .collect();
    v.extend(i.paths.iter().map(|p| p.key()));
    if let Some(b) = &host.base_domain {
        v.push(format!("{}.{b}", i.tenant));
    }
    v
}

/// A domain claimed by two tenants is routed to neither: both are frozen with an error that
/// names the other, so an operator sees the conflict instead of a silent winner.
fn reject_shared_domains(
    files: &[spec::Loaded<spec::instance::InstanceFile>],
    claims: BTreeMap<String, Vec<String>>,
    desired: &mut Desired,
    errors: &mut SpecErrors,
) {
    for (domain, owners) in claims {
        if owners.len() < 2 {
            continue;
        }
        for tenant in &owners {
            let others: Vec<&str> = owners
                .iter()
                .map(String::as_str)
                .filter(|t| t != tenant)
                .collect();
            let msg = format!(
                "domain {domain:?} is also claimed by tenant {}",
                others.join(", ")
            );
            let field = files
                .iter()
                .find(|f| f.value.tenant == *tenant)
                .and_then(|f| {
                    let v = &f.value;
                    let at = |list: &[String], name: &str| {
                        list.iter()
                            .position(|d| *d == domain || d.trim_end_matches('/') == domain)
                            .map(|n| format!("{name}.{n}"))
                    };
                    at(&v.domains, "domains")
                        .or_else(|| at(&v.aliases, "aliases"))
                        .or_else(|| at(&v.paths, "paths"))
                        .map(|field| (f, field))
                });
            let e = match field {
                Some((f, field)) => f.error_at(&field, msg),
                None => spec::whole_file_error(
                    std::path::Path::new(&format!("instances/{tenant}.yaml")),
                    msg,
                ),
            };
            desired.instances.remove(tenant);
            desired.frozen.insert(tenant.clone(), e.to_string());
            errors.push(e);
        }
    }
}

/// Tenants whose engine names meet (`names`) are frozen, each with the other's name.
fn reject_shared_names(
    files: &[spec::Loaded<spec::instance::InstanceFile>],
    desired: &mut Desired,
    errors: &mut SpecErrors,
) {
    for (tenant, why) in names::clashes(&desired.instances) {
        let e = match files.iter().find(|f| f.value.tenant == tenant) {
            Some(f) => f.error_at("tenant", why),
            None => spec::whole_file_error(
                std::path::Path::new(&format!("instances/{tenant}.yaml")),
                why,
            ),
        };
        desired.instances.remove(&tenant);
        desired.frozen.insert(tenant, e.to_string());
        errors.push(e);
    }
}

/// Where `d` stands in the file: `domains.N`, `aliases.N`, `paths.N`, or the tenant's name
/// (whose subdomain it is).
fn claim_field(file: &spec::instance::InstanceFile, d: &str) -> String {
    let at = |list: &[String], name: &str| {
        list.iter()
            .position(|x| x == d || x.trim_end_matches('/') == d)
            .map(|n| format!("{name}.{n}"))
    };
    at(&file.domains, "domains")
        .or_else(|| at(&file.aliases, "aliases"))
        .or_else(|| at(&file.paths, "paths"))
        .unwrap_or_else(|| "tenant".into())
}

/// Validates an instance file that is about to be written (by the API) against the templates
/// and every other instance on disk, so a conflict is refused before anything changes.
pub fn check_candidate(
    host: &HostConfig,
    file: &spec::instance::InstanceFile,
) -> Result<Instance, SpecErrors> {
    let current = load(host);
    let shown = std::path::PathBuf::from(format!("instances/{}.yaml", file.tenant));
    let yaml = serde_yaml::to_string(file).expect("instance file serializes");
    let loaded = spec::parse_yaml::<spec::instance::InstanceFile>(&shown, &yaml)
        .map_err(|e| SpecErrors(vec![e]))?;
    let inst = instance::build(&loaded, &file.tenant, &current.templates, host)?;
    let proven = domains::proven(&host.state_dir);
    let mut errors = SpecErrors::default();
    for d in claimed_domains(&inst, host) {
        let holder = current
            .desired
            .instances
            .values()
            .filter(|o| o.tenant != inst.tenant)
            .find(|o| exclusive_claims(o, host, &proven).contains(&d));
        if let Some(o) = holder {
            errors.push(loaded.error_at(
                &claim_field(file, &d),
                format!("domain {d:?} is already claimed by tenant {}", o.tenant),
            ));
        }
    }
    if let Some(why) = names::clash(&inst, current.desired.instances.values()) {
        errors.push(loaded.error_at("tenant", why));
    }
    for m in admission::admit(host, &current.desired, &inst) {
        errors.push(loaded.error_at(
            if file.limits.is_some() {
                "limits"
            } else {
                "plan"
            },
            m,
        ));
    }
    errors.into_result()?;
    Ok(inst)
}
