//! The engine side of the agent: connecting to it, the services and the reconciler built on
//! it, the egress policy sealed into its containers, its CPU weight and its events.

use super::DaemonError;
use crate::{
    desired::{HostConfig, engine::Engine},
    reconcile::Controller,
    runtime::{Runtime, docker::DockerRuntime, swarm::SwarmRuntime},
    services::{Cx, Services},
    store::Layout,
};
use std::{path::PathBuf, sync::Arc};

/// Connects to the engine (Docker, or a swarm's manager and nodes) and builds the services,
/// the reconciler, the mail relay's purge hook and the egress policy.
pub(super) async fn connect(
    host: &HostConfig,
    layout: &Layout,
) -> Result<(Cx, Arc<Controller>), DaemonError> {
    let (rt, node_fw): (Arc<dyn Runtime>, Option<Box<dyn crate::egress::Firewall>>) =
        match &host.engine {
            Engine::Docker => (Arc::new(DockerRuntime::connect().await?), None),
            Engine::Swarm(s) => {
                let rt = SwarmRuntime::connect(s).await?;
                let guards = Box::new(rt.guards(&host.namespace));
                (Arc::new(rt), Some(guards))
            }
        };
    let svc = Arc::new(Services::new(rt, host.clone())?);
    let ctl = Arc::new(Controller::new(svc.clone()));
    let mail_files = crate::mail::relay::Paths::new(layout);
    svc.on_purge(Arc::new(move |t| {
        crate::mail::relay::purge(&mail_files, t).map_err(Into::into)
    }));
    let egress = Arc::new(egress_policy(host, node_fw));
    if egress.enforceable() {
        // Each tenant container carries the policy in its own namespace from its start.
        svc.runtime().seal_with(crate::runtime::netns::Sealing {
            resolvers: egress.resolvers().to_vec(),
            host_network: crate::runtime::spec::network_name(
                &host.namespace,
                crate::runtime::labels::HOST_TENANT,
            ),
        });
        tokio::spawn(seal_running(svc.clone()));
    }
    svc.set_egress(egress);
    let cx = Cx {
        svc,
        passes: ctl.clone(),
    };
    Ok((cx, ctl))
}

/// The kernel-enforced egress policy, or (warned, and shown by status and metrics) why this
/// host cannot have it.
/// In swarm mode `nodes` is the nodes' guards, which stand in for this host's firewall.
fn egress_policy(
    host: &HostConfig,
    nodes: Option<Box<dyn crate::egress::Firewall>>,
) -> crate::egress::Egress {
    use crate::egress::{Egress, Firewall, iptables::Iptables};
    let fw = match nodes {
        Some(guards) => Ok(guards),
        None => Iptables::probe(&host.namespace)
            .map(|f| Box::new(f) as Box<dyn Firewall>)
            .map_err(|e| e.to_string()),
    };
    if let Err(why) = &fw {
        tracing::warn!(reason = %why, "the egress policy cannot be enforced on this host; tenants can reach the host's networks");
    }
    let resolvers = Egress::host_resolvers();
    Egress::new(fw, &host.namespace, host.subnet_pool.net(), resolvers)
}

/// `engine.cpu_weight`, `engine.cpu_max`: the local engine (found as the peer of its socket)
/// and its programs move to a CPU group of that weight and quota, so container starts yield to
/// the tenants and the edge.
/// Called once connected to the engine's events, each time: an engine restarted since is moved
/// again. Blocking work (a connect, a walk of /proc), so off the runtime's threads.
fn place_engine(host: &HostConfig) {
    let (Engine::Docker, Some(cpu)) = (&host.engine, host.engine_cpu) else {
        return;
    };
    let socket = match std::env::var("DOCKER_HOST") {
        Err(_) => PathBuf::from("/var/run/docker.sock"),
        Ok(h) => match h.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None => {
                tracing::warn!(docker_host = %h, "engine.cpu_weight and cpu_max need the engine on a unix socket; its CPU is left as it is");
                return;
            }
        },
    };
    tokio::task::spawn_blocking(move || {
        use crate::host_tuning::engine_cpu;
        let placed = engine_cpu::engine_pid(&socket)
            .map_err(|e| format!("{}: {e}", socket.display()))
            .and_then(|pid| {
                engine_cpu::place(&engine_cpu::Cgroups::default(), pid, cpu)
                    .map_err(|e| e.to_string())
            });
        // Said once until it works: the events stream is retried every 2 s while the engine is down.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        match placed {
            Ok(what) => {
                WARNED.store(false, std::sync::atomic::Ordering::Relaxed);
                if let Some(what) = what {
                    tracing::info!(%what, "engine CPU")
                }
            }
            Err(error) if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) => {
                tracing::warn!(%error, "cannot set the engine's CPU weight or quota; container starts compete with the tenants")
            }
            Err(_) => {}
        }
    });
}

/// Seals every container running when the agent starts: the engine may have started some
/// while no agent watched (a reboot with containers made before tenant containers lost their
/// restart policy, or a `docker start` meanwhile). A tenant container that cannot be sealed is
/// stopped (`Runtime::started_elsewhere`).
async fn seal_running(svc: Arc<Services>) {
    let rt = svc.runtime();
    let Ok(inv) = rt.inventory(&svc.host().namespace).await else {
        return;
    };
    for c in inv
        .containers
        .iter()
        .filter(|c| c.status == crate::runtime::RunStatus::Running)
    {
        rt.started_elsewhere(&c.name).await;
    }
}

/// Kicks a pass on every engine event about our containers but the starts berth made itself
/// (their pass or wake looks after them); reconnects if the stream ends (dockerd restart). The
/// periodic resync covers anything missed in between.
pub(super) async fn follow_events(svc: Arc<Services>, metrics: Arc<crate::metrics::Metrics>) {
    use futures_util::StreamExt;
    loop {
        match svc.runtime().events(&svc.host().namespace).await {
            Ok(mut events) => {
                place_engine(svc.host());
                while let Some(e) = events.next().await {
                    metrics.on_event(&e);
                    if matches!(e.action.as_str(), "start" | "die" | "restart") {
                        svc.probes().reset(&e.container);
                    }
                    if e.action == "start" {
                        if svc.runtime().started_by_berth(&e.container) {
                            continue;
                        }
                        let (rt, name) = (svc.runtime().clone(), e.container.clone());
                        tokio::spawn(async move { rt.started_elsewhere(&name).await });
                    }
                    svc.kick();
                }
            }
            Err(e) => tracing::warn!(error = %e, "engine events unavailable"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}
