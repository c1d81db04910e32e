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

/// Checks `engine.cpu_weight` (this host's engine only: a swarm's nodes are placed by their
/// own service managers).
pub fn cpu_weight(e: &EngineFile, err: &mut impl FnMut(&str, String)) -> Option<u16> {
    let w = e.cpu_weight?;
    if e.mode.as_deref() == Some("swarm") {
        err(
            "engine.cpu_weight",
            "set the weight on each node's engine service (CPUWeight=); berth places only its \
             own host's engine"
                .into(),
        );
        return None;
    }
    match u16::try_from(w) {
        Ok(w @ 1..=10000) => Some(w),
        _ => {
            err(
                "engine.cpu_weight",
                format!("{w} is not a CPU weight; use 1 to 10000 (a plain process has 100)"),
            );
            None
        }
    }
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
    fn the_engines_cpu_weight_is_a_cgroup_weight_for_this_hosts_engine_only() {
        let weight = |yaml: &str| {
            let f: EngineFile = serde_yaml::from_str(yaml).unwrap();
            let mut errs = vec![];
            let w = cpu_weight(&f, &mut |k, m| errs.push(format!("{k}: {m}")));
            (w, errs)
        };
        assert_eq!(weight("{}"), (None, vec![]), "left as it is unless asked");
        assert_eq!(weight("{cpu_weight: 10}"), (Some(10), vec![]));
        assert_eq!(weight("{cpu_weight: 10000}"), (Some(10000), vec![]));
        for bad in [
            "{cpu_weight: 0}",
            "{cpu_weight: 10001}",
            "{cpu_weight: 4294967295}",
        ] {
            let (w, errs) = weight(bad);
            assert_eq!(w, None, "{bad}");
            assert!(errs[0].starts_with("engine.cpu_weight: ") && errs[0].contains("1 to 10000"));
        }
        let (w, errs) = weight("{mode: swarm, cpu_weight: 10}");
        assert_eq!(w, None);
        assert!(errs[0].contains("each node's engine service"), "{errs:?}");
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
