//! The egress policy on swarm nodes. A task container on an overlay reaches everything else
//! through its node's `docker_gwbridge`, so the node's own firewall is where the policy must
//! be: berth runs one small container per node (`<ns>-netguard`, host network, NET_ADMIN and
//! NET_RAW only, read-only) that installs berth's chains, hooked first into `DOCKER-USER` and
//! `INPUT`, for everything entering from `docker_gwbridge`: private, shared, link-local
//! (metadata), loopback and reserved ranges are dropped, and so is the node itself (other
//! tenants' host-mode ports included). It checks them every 10 s, so a dockerd restart that
//! rewrites the chains is repaired. Replies (conntrack ESTABLISHED) and the edge's connections
//! into the tenants' published ports are untouched.

use super::super::RuntimeError;
use crate::egress::{EgressError, Firewall, policy::Rules};
use bollard::{
    Docker,
    models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum},
    query_parameters::{
        CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions,
        StartContainerOptions,
    },
};
use sha2::{Digest, Sha256};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

/// Label on the guard container: the digest of the script it runs.
const SCRIPT_LABEL: &str = "io.berth.netguard";

pub fn name(ns: &str) -> String {
    format!("{ns}-netguard")
}

/// The iptables-restore input of berth's two chains on a node.
pub fn rules(ns: &str) -> String {
    let (fwd, input) = crate::egress::policy::chains(ns);
    let mut t = format!("*filter\n:{fwd} - [0:0]\n:{input} - [0:0]\n");
    t += &format!("-A {fwd} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n");
    for (net, _) in crate::egress::policy::BLOCKED {
        t += &format!("-A {fwd} -i docker_gwbridge -d {net} -j DROP\n");
    }
    t += &format!(
        "-A {input} -i docker_gwbridge -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN\n"
    );
    t += &format!("-A {input} -i docker_gwbridge -j DROP\nCOMMIT\n");
    t
}

/// The guard's shell script: picks the iptables flavour dockerd uses (the one whose DOCKER
/// chain exists), then every 10 s checks the chains (replaced in one commit when they differ)
/// and makes each jump the first rule of its parent.
pub fn script(ns: &str) -> String {
    let (fwd, input) = crate::egress::policy::chains(ns);
    format!(
        r#"set -u
IPT=iptables-nft
iptables-legacy -w -S DOCKER >/dev/null 2>&1 && ! iptables-nft -w -S DOCKER >/dev/null 2>&1 && IPT=iptables-legacy
hook() {{
  first=$($IPT -w -S "$1" | sed -n 2p)
  [ "$first" = "-A $1 -j $2" ] && return 0
  while $IPT -w -D "$1" -j "$2" 2>/dev/null; do :; done
  $IPT -w -I "$1" 1 -j "$2"
}}
chains() {{ $IPT -w -S {fwd} 2>/dev/null; $IPT -w -S {input} 2>/dev/null; }}
applied=never
while :; do
  # Replaced only when they differ from what was installed (a dockerd restart, a hand
  # edit): the packet counters of the drops stay readable.
  if [ "$(chains)" != "$applied" ]; then
    if printf '%s' "$RULES" | $IPT-restore -w --noflush; then
      applied=$(chains); echo "netguard: rules in force ($IPT)"
    else
      applied=; echo "netguard: could not install the rules" >&2
    fi
  fi
  hook DOCKER-USER {fwd} && hook INPUT {input} || echo "netguard: could not hook the chains" >&2
  sleep 10
done
"#
    )
}

fn digest(ns: &str) -> String {
    hex::encode(&Sha256::digest(format!("{}{}", script(ns), rules(ns)))[..8])
}

/// Makes sure the node runs the current guard; recreates one that is stopped or outdated.
pub async fn ensure(node: &Docker, ns: &str, image: &str) -> Result<(), RuntimeError> {
    let name = name(ns);
    let want = digest(ns);
    if let Ok(c) = node
        .inspect_container(&name, None::<InspectContainerOptions>)
        .await
    {
        let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
        let label = c
            .config
            .and_then(|c| c.labels)
            .and_then(|l| l.get(SCRIPT_LABEL).cloned());
        if running && label.as_deref() == Some(&want) {
            return Ok(());
        }
        let opts = RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let r = node.remove_container(&name, Some(opts)).await;
        super::super::docker::tolerate(r, &[404], "container", &name)?;
    }
    let body = ContainerCreateBody {
        image: Some(image.into()),
        labels: Some(HashMap::from([(SCRIPT_LABEL.into(), want)])),
        env: Some(vec![format!("RULES={}", rules(ns))]),
        entrypoint: Some(vec!["sh".into(), "-c".into(), script(ns)]),
        host_config: Some(HostConfig {
            network_mode: Some("host".into()),
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["NET_ADMIN".into(), "NET_RAW".into()]),
            security_opt: Some(vec!["no-new-privileges:true".into()]),
            readonly_rootfs: Some(true),
            tmpfs: Some(HashMap::from([
                ("/tmp".into(), "size=1m".into()),
                ("/run".into(), "size=1m".into()),
            ])),
            memory: Some(32 << 20),
            pids_limit: Some(64),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::UNLESS_STOPPED),
                maximum_retry_count: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let opts = CreateContainerOptions {
        name: Some(name.clone()),
        ..Default::default()
    };
    node.create_container(Some(opts), body)
        .await
        .map_err(super::err("container", &name))?;
    node.start_container(&name, None::<StartContainerOptions>)
        .await
        .map_err(super::err("container", &name))
}

/// Whether the node's guard runs the current script.
pub async fn in_force(node: &Docker, ns: &str) -> bool {
    let Ok(c) = node
        .inspect_container(&name(ns), None::<InspectContainerOptions>)
        .await
    else {
        return false;
    };
    let running = c.state.as_ref().and_then(|s| s.running) == Some(true);
    let label = c
        .config
        .and_then(|c| c.labels)
        .and_then(|l| l.get(SCRIPT_LABEL).cloned());
    running && label == Some(digest(ns))
}

/// The egress boundary in swarm mode: the guards of every node, as the agent's `Firewall`.
/// The chains on the nodes are berth's fixed policy (plans' `egress` allows are not applied:
/// on the bridge a node's tenants share, a tenant's packets cannot be told apart).
pub struct NodeGuards {
    pub nodes: super::nodes::NodeConns,
    pub ns: String,
    pub image: String,
    /// The policy last installed (what `current` answers while every guard runs).
    last: Mutex<Option<Rules>>,
}

impl NodeGuards {
    pub fn new(nodes: super::nodes::NodeConns, ns: &str, image: &str) -> Arc<NodeGuards> {
        Arc::new(NodeGuards {
            nodes,
            ns: ns.into(),
            image: image.into(),
            last: Mutex::new(None),
        })
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Handle::current().block_on(f)
    }
}

impl Firewall for Arc<NodeGuards> {
    fn current(&self) -> Result<Option<Rules>, EgressError> {
        // A node that does not answer is not judged here: its guard, if it ever ran, keeps
        // running (restart policy), and the node's tenants are reported by status.
        let all = NodeGuards::block_on(async {
            for (_, rt) in self.nodes.all() {
                let Ok(rt) = rt else { continue };
                let d = rt.client();
                if d.ping().await.is_ok() && !in_force(d, &self.ns).await {
                    return false;
                }
            }
            true
        });
        Ok(all
            .then(|| self.last.lock().expect("guards").clone())
            .flatten())
    }

    fn install(&self, want: &Rules) -> Result<(), EgressError> {
        NodeGuards::block_on(async {
            for (node, rt) in self.nodes.all() {
                let r = match rt {
                    Ok(rt) => ensure(rt.client(), &self.ns, &self.image).await,
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => {}
                    Err(RuntimeError::Unreachable(e)) => {
                        tracing::warn!(%node, error = %e, "node unreachable; its egress guard is checked when it answers")
                    }
                    Err(e) => {
                        return Err(EgressError::Command(format!(
                            "netguard on node {node}: {e}"
                        )));
                    }
                }
            }
            Ok::<(), EgressError>(())
        })?;
        *self.last.lock().expect("guards") = Some(want.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_drops_what_enters_from_the_tenants_bridge_to_private_ranges_and_itself() {
        let r = rules("berth");
        assert!(r.starts_with("*filter\n:b-berth-fwd - [0:0]\n:b-berth-in - [0:0]\n"));
        for net in [
            "10.0.0.0/8",
            "169.254.0.0/16",
            "172.16.0.0/12",
            "192.168.0.0/16",
        ] {
            assert!(
                r.contains(&format!(
                    "-A b-berth-fwd -i docker_gwbridge -d {net} -j DROP"
                )),
                "{net}"
            );
        }
        assert!(r.contains("-A b-berth-in -i docker_gwbridge -j DROP\nCOMMIT\n"));
        let est = r.find("ESTABLISHED -j RETURN").unwrap();
        assert!(est < r.find("DROP").unwrap(), "replies pass first");
    }

    #[test]
    fn the_script_hooks_both_chains_first_and_changes_with_the_namespace() {
        let s = script("berth");
        assert!(s.contains("hook DOCKER-USER b-berth-fwd && hook INPUT b-berth-in"));
        assert_ne!(digest("berth"), digest("other"));
    }
}
