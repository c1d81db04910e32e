//! The engine that runs tenants, validated: this host's Docker, or a Docker Swarm reached
//! through its manager's socket plus each node's own engine socket.

use crate::spec::host::EngineFile;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, PartialEq, Default)]
pub enum Engine {
    /// This host's engine (the default).
    #[default]
    Docker,
    Swarm(SwarmEngine),
}

#[derive(Debug, Clone, PartialEq)]
pub struct SwarmEngine {
    /// A manager's engine socket (services, networks, secrets, nodes).
    pub manager: PathBuf,
    /// Node hostname → that node's engine socket (exec, logs, stats, volumes, images).
    pub nodes: BTreeMap<String, PathBuf>,
    /// The image each node's egress guard runs (it must be on every node).
    pub netguard_image: String,
}

/// The guard image `build-images.sh` makes.
pub const DEFAULT_NETGUARD_IMAGE: &str = "berth/netguard:bookworm";

impl Engine {
    pub fn is_swarm(&self) -> bool {
        matches!(self, Engine::Swarm(_))
    }
}

/// Checks `engine:`; reports each problem under its field.
pub fn check(
    e: &EngineFile,
    resolve: impl Fn(&Path) -> PathBuf,
    err: &mut impl FnMut(&str, String),
) -> Engine {
    match e.mode.as_deref() {
        None | Some("docker") => {
            if e.manager.is_some() || !e.nodes.is_empty() || e.netguard_image.is_some() {
                err(
                    "engine.mode",
                    "manager and nodes are for mode: swarm; set mode: swarm or remove them".into(),
                );
            }
            Engine::Docker
        }
        Some("swarm") => swarm(e, resolve, err),
        Some(other) => {
            err(
                "engine.mode",
                format!("{other:?} is not an engine mode; use docker or swarm"),
            );
            Engine::Docker
        }
    }
}

/// What the agent sets on this host's engine's CPU group (a weight and a quota; at least one
/// is set): the very type `host_tuning` applies, so nothing is copied field by field.
pub use crate::host_tuning::engine_cpu::Limits as EngineCpu;

/// Checks `engine.cpu_weight` and `engine.cpu_max` (this host's engine only: a swarm's nodes
/// are placed by their own service managers).
pub fn cpu(e: &EngineFile, err: &mut impl FnMut(&str, String)) -> Option<EngineCpu> {
    if e.cpu_weight.is_none() && e.cpu_max.is_none() {
        return None;
    }
    if e.mode.as_deref() == Some("swarm") {
        let field = match e.cpu_weight {
            Some(_) => "engine.cpu_weight",
            None => "engine.cpu_max",
        };
        err(
            field,
            "set the engine's CPU on each node's engine service (CPUWeight=, CPUQuota=); berth \
             places only its own host's engine"
                .into(),
        );
        return None;
    }
    let weight = e.cpu_weight.and_then(|w| match u16::try_from(w) {
        Ok(w @ 1..=10000) => Some(w),
        _ => {
            err(
                "engine.cpu_weight",
                format!("{w} is not a CPU weight; use 1 to 10000 (a plain process has 100)"),
            );
            None
        }
    });
    let max_millicores = e.cpu_max.and_then(|c| match c {
        c if c.is_finite() && (0.05..=1024.0).contains(&c) => Some((c * 1000.0).round() as u32),
        _ => {
            err(
                "engine.cpu_max",
                format!("{c} is not a number of cores; use 0.05 to 1024 (e.g. 0.5: half a core)"),
            );
            None
        }
    });
    let bad = (e.cpu_weight.is_some() && weight.is_none())
        || (e.cpu_max.is_some() && max_millicores.is_none());
    (!bad).then_some(EngineCpu {
        weight,
        max_millicores,
    })
}

fn swarm(
    e: &EngineFile,
    resolve: impl Fn(&Path) -> PathBuf,
    err: &mut impl FnMut(&str, String),
) -> Engine {
    let manager = e
        .manager
        .as_deref()
        .map(&resolve)
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"));
    if e.nodes.is_empty() {
        err(
            "engine.nodes",
            "name each swarm node's engine socket (hostname: /path/to/docker.sock); berth runs \
             exec, logs, stats and volumes on the node that holds a tenant"
                .into(),
        );
    }
    for name in e.nodes.keys() {
        if !hostname_ok(name) {
            err(
                &format!("engine.nodes.{name}"),
                format!("{name:?} is not a node hostname"),
            );
        }
    }
    if let Some(i) = &e.netguard_image {
        let ok = !i.is_empty()
            && i.len() <= 255
            && i.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/:@".contains(&b));
        if !ok {
            err(
                "engine.netguard_image",
                format!("{i:?} is not an image reference (e.g. berth/netguard:bookworm)"),
            );
        }
    }
    Engine::Swarm(SwarmEngine {
        manager,
        nodes: e
            .nodes
            .iter()
            .map(|(k, v)| (k.clone(), resolve(v)))
            .collect(),
        netguard_image: e
            .netguard_image
            .clone()
            .unwrap_or_else(|| DEFAULT_NETGUARD_IMAGE.into()),
    })
}

fn hostname_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 253
        && n.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(yaml: &str) -> (Engine, Vec<String>) {
        let f: EngineFile = serde_yaml::from_str(yaml).unwrap();
        let mut errs = vec![];
        let e = check(&f, |p| Path::new("/etc/berth").join(p), &mut |k, m| {
            errs.push(format!("{k}: {m}"))
        });
        (e, errs)
    }

    #[test]
    fn the_engines_cpu_weight_and_quota_are_for_this_hosts_engine_only() {
        let cpu_of = |yaml: &str| {
            let f: EngineFile = serde_yaml::from_str(yaml).unwrap();
            let mut errs = vec![];
            let c = cpu(&f, &mut |k, m| errs.push(format!("{k}: {m}")));
            (c, errs)
        };
        let ok = |weight, max_millicores| {
            (
                Some(EngineCpu {
                    weight,
                    max_millicores,
                }),
                vec![],
            )
        };
        assert_eq!(cpu_of("{}"), (None, vec![]), "left as it is unless asked");
        assert_eq!(cpu_of("{cpu_weight: 10}"), ok(Some(10), None));
        assert_eq!(cpu_of("{cpu_weight: 10000}"), ok(Some(10000), None));
        assert_eq!(cpu_of("{cpu_max: 0.5}"), ok(None, Some(500)));
        assert_eq!(
            cpu_of("{cpu_weight: 10, cpu_max: 1.25}"),
            ok(Some(10), Some(1250))
        );
        for (bad, field, says) in [
            ("{cpu_weight: 0}", "engine.cpu_weight", "1 to 10000"),
            ("{cpu_weight: 10001}", "engine.cpu_weight", "1 to 10000"),
            (
                "{cpu_weight: 4294967295}",
                "engine.cpu_weight",
                "1 to 10000",
            ),
            ("{cpu_max: 0}", "engine.cpu_max", "0.05 to 1024"),
            ("{cpu_max: -1}", "engine.cpu_max", "0.05 to 1024"),
            ("{cpu_max: .nan}", "engine.cpu_max", "0.05 to 1024"),
            ("{cpu_max: .inf}", "engine.cpu_max", "0.05 to 1024"),
            ("{cpu_max: 1e300}", "engine.cpu_max", "0.05 to 1024"),
            (
                "{cpu_weight: 10, cpu_max: 0.01}",
                "engine.cpu_max",
                "0.05 to 1024",
            ),
        ] {
            let (c, errs) = cpu_of(bad);
            assert_eq!(c, None, "{bad}: nothing half-set");
            assert!(
                errs[0].starts_with(&format!("{field}: ")) && errs[0].contains(says),
                "{bad}: {errs:?}"
            );
        }
        for yaml in [
            "{mode: swarm, cpu_weight: 10}",
            "{mode: swarm, cpu_max: 0.5}",
        ] {
            let (c, errs) = cpu_of(yaml);
            assert_eq!(c, None);
            assert!(errs[0].contains("each node's engine service"), "{errs:?}");
        }
    }

    #[test]
    fn no_engine_section_means_this_hosts_docker() {
        assert_eq!(run("{}"), (Engine::Docker, vec![]));
    }

    #[test]
    fn a_swarm_names_its_manager_and_nodes_relative_to_the_config() {
        let (e, errs) = run("{mode: swarm, manager: m.sock, nodes: {w1: /run/w1.sock}}");
        assert!(errs.is_empty(), "{errs:?}");
        let Engine::Swarm(s) = e else { panic!() };
        assert_eq!(s.manager, Path::new("/etc/berth/m.sock"));
        assert_eq!(s.nodes["w1"], Path::new("/run/w1.sock"));
    }

    #[test]
    fn hostile_engine_sections_are_refused_by_field() {
        for (yaml, field) in [
            ("{mode: kubernetes}", "engine.mode"),
            ("{mode: swarm}", "engine.nodes"),
            ("{nodes: {w1: /x}}", "engine.mode"),
            (
                "{mode: swarm, nodes: {'a b/../c': /x}}",
                "engine.nodes.a b/../c",
            ),
        ] {
            let (_, errs) = run(yaml);
            assert!(
                errs.iter().any(|e| e.starts_with(field)),
                "{yaml}: {errs:?}"
            );
        }
    }
}
