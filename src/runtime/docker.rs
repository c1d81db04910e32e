//! The real runtime: Docker Engine through bollard. With `swarm/`, the only code that imports
//! bollard.

use super::{
    ExecOutput, Health, Inventory, LogStream, ObservedContainer, ObservedNetwork, ObservedVolume,
    RunStatus, Runtime, RuntimeError, labels,
    spec::{ContainerSpec, MountKind, NetworkSpec, VolumeSpec},
};
use bollard::{
    Docker,
    auth::DockerCredentials,
    errors::Error as BollardError,
    exec::{StartExecOptions, StartExecResults},
    models::{
        ContainerCreateBody, ContainerSummaryStateEnum, EndpointIpamConfig, EndpointSettings,
        ExecConfig, HealthConfig, HostConfig, HostConfigLogConfig, Ipam, IpamConfig, Mount,
        MountTypeEnum, NetworkConnectRequest, NetworkCreateRequest, NetworkDisconnectRequest,
        NetworkingConfig, RestartPolicy, RestartPolicyNameEnum, VolumeCreateOptions,
    },
    query_parameters::{
        CreateContainerOptions, CreateImageOptions, EventsOptions, InspectContainerOptions,
        ListContainersOptions, ListImagesOptions, ListNetworksOptions, ListVolumesOptions,
        LogsOptions, RemoveContainerOptions, RemoveImageOptions, RemoveVolumeOptions,
        RenameContainerOptions, StatsOptions, StopContainerOptions, TagImageOptions,
    },
};
use futures_util::{StreamExt, TryStreamExt};
use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

pub struct DockerRuntime {
    docker: Docker,
    mutations: AtomicU64,
    crash_after: Option<u64>,
    kernel_stats: bool,
    /// Set by the agent when its firewall works: tenant containers are sealed on start.
    sealing: std::sync::OnceLock<super::netns::Sealing>,
    restarts: super::netns::Restarts,
}

/// `BERTH_STATS_SOURCE=engine` reads container figures with the engine's stats call only: an
/// escape hatch should a host's cgroup layout fool the kernel reading, and the benchmark's
/// comparison.
pub const STATS_SOURCE_ENV: &str = "BERTH_STATS_SOURCE";

/// Fault injection for crash-safety tests: with `BERTH_FAULT_CRASH_AFTER=k` the process
/// aborts (no cleanup, like `kill -9`) right before its (k+1)-th mutating engine call.
pub const CRASH_AFTER_ENV: &str = "BERTH_FAULT_CRASH_AFTER";

/// The registry's own words, without bollard's wrapping.
fn pull_reason(e: BollardError) -> String {
    match e {
        BollardError::DockerResponseServerError { message, .. } => message,
        BollardError::DockerStreamError { error } => error,
        other => other.to_string(),
    }
}

/// Where an exec's stdin comes from and its stdout goes (None: no stdin; kept in memory).
struct ExecIo<'a> {
    stdin: Option<&'a mut (dyn AsyncRead + Unpin + Send)>,
    sink: Option<&'a mut (dyn AsyncWrite + Unpin + Send)>,
}

impl DockerRuntime {
    /// berth's containers, networks and volumes of namespace `ns` that match `filters`
    /// (labels), and every image.
    async fn listed(
        &self,
        ns: &str,
        filters: HashMap<String, Vec<String>>,
    ) -> Result<Inventory, RuntimeError> {
        let opts = ListContainersOptions {
            all: true,
            filters: Some(filters.clone()),
            ..Default::default()
        };
        let containers = self
            .docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| call_err("containers", ns, e))?;
        let containers = containers
            .into_iter()
            .map(|c| {
                let l = c.labels.unwrap_or_default();
                let status = match c.state {
                    Some(ContainerSummaryStateEnum::RUNNING) => RunStatus::Running,
                    Some(ContainerSummaryStateEnum::EXITED)
                    | Some(ContainerSummaryStateEnum::CREATED) => RunStatus::Stopped,
                    _ => RunStatus::Other,
                };
                let host_port = c
                    .ports
                    .unwrap_or_default()
                    .iter()
                    .find_map(|p| p.public_port);
                ObservedContainer {
                    name: c
                        .names
                        .unwrap_or_default()
                        .first()
                        .map(|n| n.trim_start_matches('/').to_string())
                        .unwrap_or_default(),
                    tenant: label(&l, labels::TENANT),
                    service: label(&l, labels::SERVICE),
                    spec_hash: label(&l, labels::SPEC_HASH),
                    status,
                    health: health_from_status(c.status.as_deref().unwrap_or_default()),
                    host_port,
                    ip: tenant_ip(ns, &l, c.network_settings.as_ref()),
                    node: None,
                }
            })
            .collect();
        let nets = self
            .docker
            .list_networks(Some(ListNetworksOptions {
                filters: Some(filters.clone()),
            }))
            .await
            .map_err(|e| call_err("networks", ns, e))?;
        let networks = nets
            .into_iter()
            .map(|n| ObservedNetwork {
                name: n.name.unwrap_or_default(),
                tenant: label(&n.labels.unwrap_or_default(), labels::TENANT),
                subnet: first_ipam(&n.ipam).and_then(|c| c.subnet.clone()),
                ip_range: first_ipam(&n.ipam).and_then(|c| c.ip_range.clone()),
            })
            .collect();
        let vols = self
            .docker
            .list_volumes(Some(ListVolumesOptions {
                filters: Some(filters),
            }))
            .await
            .map_err(|e| call_err("volumes", ns, e))?;
        let volumes = vols
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| ObservedVolume {
                tenant: label(&v.labels, labels::TENANT),
                device: v.options.get("device").cloned(),
                mountpoint: v.mountpoint,
                name: v.name,
            })
            .collect();
        let image_ids = self.images().await?;
        Ok(Inventory {
            containers,
            networks,
            volumes,
            images: Some(image_ids.keys().cloned().collect()),
            image_ids,
        })
    }

    /// Every tag and digest the engine lists, normalized for lookups, with the id of each.
    async fn images(&self) -> Result<std::collections::BTreeMap<String, String>, RuntimeError> {
        Ok(self
            .list_images()
            .await?
            .into_iter()
            .flat_map(|i| {
                let id = i.id;
                i.tags
                    .into_iter()
                    .chain(i.digests)
                    .map(move |n| (n, id.clone()))
            })
            .collect())
    }

    /// One exec; with a `limit`, its process tree is killed by host PID once it passes.
    async fn exec_with(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
        limit: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        let mut data = stdin.as_deref();
        let io = ExecIo {
            stdin: data
                .as_mut()
                .map(|d| d as &mut (dyn AsyncRead + Unpin + Send)),
            sink: None,
        };
        self.exec_io(name, cmd, io, limit).await
    }

    /// One exec with stdin read from a stream as the command takes it (fed while its output
    /// is read, so neither side can block the other) and stdout kept or written to a sink.
    async fn exec_io(
        &self,
        name: &str,
        cmd: &[&str],
        io: ExecIo<'_>,
        limit: Option<Duration>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.count();
        let cfg = ExecConfig {
            attach_stdin: Some(io.stdin.is_some()),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        };
        let exec = self
            .docker
            .create_exec(name, cfg)
            .await
            .map_err(|e| call_err("container", name, e))?;
        let started = self
            .docker
            .start_exec(
                &exec.id,
                Some(StartExecOptions {
                    detach: false,
                    tty: false,
                    output_capacity: None,
                }),
            )
            .await
            .map_err(|e| call_err("container", name, e))?;
        let mut result = ExecOutput {
            exit_code: -1,
            output: String::new(),
            stdout: Vec::new(),
            timed_out: false,
        };
        let io_err = |e: std::io::Error| RuntimeError::Call {
            kind: "exec",
            name: name.into(),
            message: format!("feeding its input: {e}"),
        };
        let mut fed_err = None;
        if let StartExecResults::Attached { output, input } = started {
            let feed = async move {
                let mut input = input;
                if let Some(src) = io.stdin {
                    tokio::io::copy(src, &mut input).await?;
                    input.shutdown().await.ok();
                }
                Ok::<_, std::io::Error>(())
            };
            let drain = self.drain(name, &exec.id, output, io.sink, limit, &mut result);
            let (fed, drained) = tokio::join!(feed, drain);
            drained?;
            fed_err = fed.err();
        }
        let inspect = self
            .docker
            .inspect_exec(&exec.id)
            .await
            .map_err(|e| call_err("container", name, e))?;
        result.exit_code = inspect.exit_code.unwrap_or(-1);
        // A command that stopped reading because it failed says why in its output and exit
        // code; the broken pipe it left is only an error when it claims success.
        match fed_err {
            Some(e) if result.exit_code == 0 => Err(io_err(e)),
            _ => Ok(result),
        }
    }

    /// Reads an exec's output to its end: stdout to `sink` (or kept), everything as text for
    /// messages (stdout left out when it goes to a sink; capped at 64 KiB then).
    async fn drain(
        &self,
        name: &str,
        exec_id: &str,
        mut out: std::pin::Pin<
            Box<
                dyn futures_util::Stream<
                        Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
                    > + Send,
            >,
        >,
        mut sink: Option<&mut (dyn AsyncWrite + Unpin + Send)>,
        limit: Option<Duration>,
        r: &mut ExecOutput,
    ) -> Result<(), RuntimeError> {
        let deadline = limit.map(|l| tokio::time::Instant::now() + l);
        loop {
            let next = match deadline {
                Some(d) if !r.timed_out => match tokio::time::timeout_at(d, out.next()).await {
                    Ok(n) => n,
                    Err(_) => {
                        r.timed_out = true;
                        self.kill_exec(exec_id).await;
                        continue;
                    }
                },
                // Killed: what is left to read arrives at once, or is given up.
                Some(_) => tokio::time::timeout(Duration::from_secs(10), out.next())
                    .await
                    .unwrap_or(None),
                None => out.next().await,
            };
            let Some(chunk) = next else { break };
            let chunk = chunk.map_err(|e| call_err("container", name, e))?;
            match (&chunk, sink.as_mut()) {
                (bollard::container::LogOutput::StdOut { message }, Some(w)) => {
                    w.write_all(message).await.map_err(|e| RuntimeError::Call {
                        kind: "exec",
                        name: name.into(),
                        message: format!("writing its output: {e}"),
                    })?;
                    continue;
                }
                (bollard::container::LogOutput::StdOut { message }, None) => {
                    r.stdout.extend_from_slice(message)
                }
                _ => {}
            }
            if sink.is_none() || r.output.len() < 64 * 1024 {
                r.output
                    .push_str(&String::from_utf8_lossy(&chunk.into_bytes()));
            }
        }
        if let Some(w) = sink {
            w.flush().await.map_err(|e| RuntimeError::Call {
                kind: "exec",
                name: name.into(),
                message: format!("writing its output: {e}"),
            })?;
        }
        Ok(())
    }

    /// SIGKILL to a running exec's process and its descendants (by host PID).
    async fn kill_exec(&self, id: &str) {
        let info = self.docker.inspect_exec(id).await.ok();
        let container = info
            .as_ref()
            .and_then(|i| i.container_id.clone())
            .unwrap_or_default();
        let pid = info.and_then(|i| i.pid);
        if let Some(pid) = pid.filter(|p| *p > 1) {
            let kill = move || super::proctree::kill_tree(pid as i32, &container);
            let n = tokio::task::spawn_blocking(kill).await.unwrap_or(0);
            tracing::info!(
                exec = id,
                pid,
                killed = n,
                "exec past its time limit killed"
            );
        }
    }

    /// Connects to the local engine (DOCKER_HOST or the default socket) and negotiates the API
    /// version down to what the engine speaks (Debian 12's Docker 20.10 speaks 1.41).
    pub async fn connect() -> Result<DockerRuntime, RuntimeError> {
        let docker = Docker::connect_with_local_defaults()
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        Self::open(
            docker,
            std::env::var(STATS_SOURCE_ENV).as_deref() != Ok("engine"),
        )
        .await
    }

    /// The engine answering on the unix socket `path` (a swarm node's); `kernel_stats` reads
    /// figures from this host's cgroups, which only the local engine's containers have.
    pub async fn connect_socket(
        path: &std::path::Path,
        kernel_stats: bool,
    ) -> Result<DockerRuntime, RuntimeError> {
        let at = path.to_string_lossy();
        let docker = Docker::connect_with_unix(&at, 120, bollard::API_DEFAULT_VERSION)
            .map_err(|e| RuntimeError::Unreachable(format!("{at}: {e}")))?;
        Self::open(docker, kernel_stats).await
    }

    /// The engine on the unix socket `path`, spoken to at `version` (the swarm manager's),
    /// without a call now: a node that is down when the agent starts is one it can wait for.
    pub fn lazy_socket(
        path: &std::path::Path,
        version: &bollard::ClientVersion,
    ) -> Result<DockerRuntime, RuntimeError> {
        let at = path.to_string_lossy();
        let docker = Docker::connect_with_unix(&at, 120, version)
            .map_err(|e| RuntimeError::Unreachable(format!("{at}: {e}")))?;
        Ok(DockerRuntime {
            docker,
            mutations: AtomicU64::new(0),
            crash_after: None,
            kernel_stats: false,
            sealing: std::sync::OnceLock::new(),
            restarts: Default::default(),
        })
    }

    async fn open(docker: Docker, kernel_stats: bool) -> Result<DockerRuntime, RuntimeError> {
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        docker
            .ping()
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        let crash_after = std::env::var(CRASH_AFTER_ENV)
            .ok()
            .and_then(|v| v.parse().ok());
        Ok(DockerRuntime {
            docker,
            mutations: AtomicU64::new(0),
            crash_after,
            kernel_stats,
            sealing: std::sync::OnceLock::new(),
            restarts: Default::default(),
        })
    }

    /// How long the container's last run lasted (from the engine's start and finish times).
    async fn last_run(&self, name: &str) -> Option<Duration> {
        let info = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .ok()?;
        let state = info.state?;
        let at = |t: Option<String>| chrono::DateTime::parse_from_rfc3339(&t?).ok();
        let (from, to) = (at(state.started_at)?, at(state.finished_at)?);
        (to - from).to_std().ok()
    }

    /// The bollard client (for `swarm/`, which speaks to the same engine API).
    pub(super) fn client(&self) -> &Docker {
        &self.docker
    }

    pub(super) fn count(&self) {
        let done = self.mutations.fetch_add(1, Ordering::SeqCst);
        if self.crash_after == Some(done) {
            eprintln!(
                "{CRASH_AFTER_ENV}={done}: aborting before mutating call {}",
                done + 1
            );
            std::process::abort();
        }
    }
}

pub(super) fn status_of(e: &BollardError) -> Option<u16> {
    match e {
        BollardError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub(super) fn call_err(kind: &'static str, name: &str, e: BollardError) -> RuntimeError {
    match e {
        BollardError::DockerResponseServerError { message, .. } => RuntimeError::Call {
            kind,
            name: name.into(),
            message,
        },
        BollardError::HyperResponseError { .. }
        | BollardError::IOError { .. }
        | BollardError::SocketNotFoundError(_) => RuntimeError::Unreachable(e.to_string()),
        other => RuntimeError::Call {
            kind,
            name: name.into(),
            message: other.to_string(),
        },
    }
}

/// Maps "already in that state" answers to success: 304 (not modified), and `ok` codes.
pub(super) fn tolerate(
    r: Result<(), BollardError>,
    ok: &[u16],
    kind: &'static str,
    name: &str,
) -> Result<(), RuntimeError> {
    match r {
        Err(e) if status_of(&e).is_some_and(|c| ok.contains(&c)) => Ok(()),
        other => other.map_err(|e| call_err(kind, name, e)),
    }
}

pub(super) fn ns_filter(ns: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{}={ns}", labels::NAMESPACE)],
    )])
}

/// The container's address on its tenant's network (not on a shared server's network).
fn tenant_ip(
    ns: &str,
    l: &std::collections::HashMap<String, String>,
    net: Option<&bollard::models::ContainerSummaryNetworkSettings>,
) -> Option<std::net::Ipv4Addr> {
    let want = super::spec::network_name(ns, l.get(labels::TENANT)?);
    let ep = net?.networks.as_ref()?.get(&want)?;
    ep.ip_address.as_deref()?.parse().ok()
}

/// Docker reports health only inside the status text ("Up 5 minutes (healthy)"); reading it
/// from the list answer spares one inspect call per container per pass.
fn health_from_status(status: &str) -> Option<Health> {
    if status.contains("(healthy)") {
        Some(Health::Healthy)
    } else if status.contains("(unhealthy)") {
        Some(Health::Unhealthy)
    } else if status.contains("(health: starting)") {
        Some(Health::Starting)
    } else {
        None
    }
}

fn label(map: &HashMap<String, String>, key: &str) -> String {
    map.get(key).cloned().unwrap_or_default()
}

fn host_config(s: &ContainerSpec) -> HostConfig {
    let mounts = s
        .mounts
        .iter()
        .map(|m| Mount {
            target: Some(m.target.clone()),
            source: Some(m.source.clone()),
            typ: Some(match m.kind {
                MountKind::Volume => MountTypeEnum::VOLUME,
                MountKind::File => MountTypeEnum::BIND,
            }),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    HostConfig {
        memory: Some(s.memory),
        // Equal to memory: no swap beyond the limit.
        memory_swap: Some(s.memory),
        nano_cpus: Some(s.nano_cpus),
        cpu_shares: Some(s.cpu_shares),
        pids_limit: Some(s.pids_limit),
        cap_drop: Some(s.cap_drop.clone()),
        cap_add: (!s.cap_add.is_empty()).then(|| s.cap_add.clone()),
        security_opt: s
            .no_new_privileges
            .then(|| vec!["no-new-privileges:true".to_string()]),
        privileged: Some(false),
        readonly_rootfs: Some(s.read_only_rootfs),
        tmpfs: (!s.tmpfs.is_empty()).then(|| s.tmpfs.clone().into_iter().collect()),
        mounts: Some(mounts),
        // Nothing published: no proxy process and no NAT rules per tenant. The edge and the
        // probes reach the web container at its fixed address on the tenant's bridge.
        network_mode: Some(s.network.clone()),
        // A tenant's container is started by berth only, sealed (see `netns`): never by the
        // engine at boot or after a crash, before its rules are in place.
        restart_policy: Some(RestartPolicy {
            name: Some(
                match s
                    .labels
                    .get(labels::TENANT)
                    .is_some_and(|t| t != labels::HOST_TENANT)
                {
                    true => RestartPolicyNameEnum::NO,
                    false => RestartPolicyNameEnum::UNLESS_STOPPED,
                },
            ),
            maximum_retry_count: None,
        }),
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".into(), super::spec::LOG_MAX_SIZE.into()),
                ("max-file".into(), super::spec::LOG_MAX_FILES.into()),
            ])),
        }),
        ..Default::default()
    }
}

/// The engine's health check: the template's, or none at all (an image's own HEALTHCHECK
/// switched off too).
pub(super) fn health_config(s: &ContainerSpec) -> HealthConfig {
    s.healthcheck.as_ref().map_or_else(
        || HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        },
        |h| HealthConfig {
            test: Some(h.test.clone()),
            interval: Some(h.interval_ns),
            timeout: Some(h.timeout_ns),
            retries: Some(h.retries),
            start_period: Some(h.start_period_ns),
            ..Default::default()
        },
    )
}

/// The first address block of a network's IPAM, as the engine lists it.
fn first_ipam(i: &Option<Ipam>) -> Option<&IpamConfig> {
    i.as_ref()?.config.as_ref()?.first()
}

/// A network's one address range.
pub(super) fn ipam(s: &NetworkSpec) -> Ipam {
    Ipam {
        config: Some(vec![IpamConfig {
            subnet: Some(s.subnet.clone()),
            gateway: Some(s.gateway.clone()),
            ip_range: s.ip_range.clone(),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

fn create_body(s: &ContainerSpec) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(s.image.clone()),
        labels: Some(s.labels.clone().into_iter().collect()),
        env: Some(s.env.clone()),
        cmd: s.cmd.clone(),
        entrypoint: s.entrypoint.clone(),
        user: s.user.clone(),
        working_dir: s.working_dir.clone(),
        hostname: s.aliases.first().cloned(),
        exposed_ports: s
            .publish
            .map(|(p, _)| HashMap::from([(format!("{p}/tcp"), HashMap::new())])),
        // Docker's exec checks are opt-in: without one in the template, an image's own
        // HEALTHCHECK is switched off too (berth probes health itself).
        healthcheck: Some(health_config(s)),
        stop_timeout: Some(s.stop_timeout_s),
        host_config: Some(host_config(s)),
        networking_config: Some(NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                s.network.clone(),
                EndpointSettings {
                    aliases: Some(s.aliases.clone()),
                    ipam_config: s.address.map(|a| EndpointIpamConfig {
                        ipv4_address: Some(a.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl Runtime for DockerRuntime {
    async fn inventory(&self, ns: &str) -> Result<Inventory, RuntimeError> {
        self.listed(ns, ns_filter(ns)).await
    }

    async fn inventory_of(&self, ns: &str, tenant: &str) -> Result<Inventory, RuntimeError> {
        // Label filters are ANDed: this namespace's objects of this tenant, nothing else.
        let only = HashMap::from([(
            "label".to_string(),
            vec![
                format!("{}={ns}", labels::NAMESPACE),
                format!("{}={tenant}", labels::TENANT),
            ],
        )]);
        self.listed(ns, only).await
    }

    async fn pull_image(
        &self,
        image: &str,
        auth: Option<(String, String)>,
        progress: &(dyn for<'e> Fn(&'e super::PullEvent) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        self.count();
        let (from, tag) = crate::desired::image_ref::pull_parts(image);
        let opts = CreateImageOptions {
            from_image: Some(from),
            tag: Some(tag),
            ..Default::default()
        };
        let creds = auth.map(|(username, password)| DockerCredentials {
            username: Some(username),
            password: Some(password),
            serveraddress: Some(crate::desired::image_ref::registry_of(image).to_string()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(opts), None, creds);
        while let Some(item) = stream.next().await {
            let info = item.map_err(|e| RuntimeError::Pull {
                image: image.into(),
                reason: pull_reason(e),
            })?;
            progress(&super::PullEvent {
                layer: info.id,
                status: info.status.unwrap_or_default(),
                current: info.progress_detail.as_ref().and_then(|d| d.current),
                total: info.progress_detail.as_ref().and_then(|d| d.total),
            });
        }
        Ok(())
    }

    async fn create_network(&self, s: &NetworkSpec) -> Result<(), RuntimeError> {
        self.count();
        let req = NetworkCreateRequest {
            name: s.name.clone(),
            driver: Some("bridge".into()),
            // Said, not left to the engine's defaults: tenants have no IPv6 path at all.
            enable_ipv6: Some(false),
            ipam: Some(ipam(s)),
            labels: Some(s.labels.clone().into_iter().collect()),
            ..Default::default()
        };
        match self.docker.create_network(req).await {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(409) => Ok(()),
            // Engines before API 1.44 do not check names by default: creating a network that
            // exists fails on its subnet ("Pool overlaps"). The one of that name is the one.
            Err(e) => match self
                .docker
                .inspect_network(
                    &s.name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(_) => Ok(()),
                Err(_) => Err(call_err("network", &s.name, e)),
            },
        }
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.count();
        tolerate(
            self.docker.remove_network(name).await,
            &[404],
            "network",
            name,
        )
    }

    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        alias: &str,
    ) -> Result<(), RuntimeError> {
        self.count();
        let req = NetworkConnectRequest {
            container: Some(container.into()),
            endpoint_config: Some(EndpointSettings {
                aliases: Some(vec![alias.into()]),
                ..Default::default()
            }),
        };
        match self.docker.connect_network(network, req).await {
            // 403 "already exists in network" on 20.10.
            Err(e) if matches!(&e, BollardError::DockerResponseServerError { message, .. } if message.contains("already exists")) => {
                Ok(())
            }
            r => r.map_err(|e| call_err("network", network, e)),
        }?;
        // The engine may have moved the default route to the network just joined.
        self.reseal(container).await
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), RuntimeError> {
        self.count();
        let req = NetworkDisconnectRequest {
            container: Some(container.into()),
            force: Some(true),
        };
        match self.docker.disconnect_network(network, req).await {
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) if matches!(&e, BollardError::DockerResponseServerError { message, .. } if message.contains("not connected")) => {
                Ok(())
            }
            r => r.map_err(|e| call_err("network", network, e)),
        }
    }

    async fn create_volume(&self, s: &VolumeSpec) -> Result<(), RuntimeError> {
        self.count();
        // A bind to a directory on the tenant's filesystem; the engine still copies the
        // image's files (and their owners) into it on first use, as for any empty volume.
        let driver_opts = s.device.as_ref().map(|d| {
            HashMap::from([
                ("type".to_string(), "none".to_string()),
                ("o".to_string(), "bind".to_string()),
                ("device".to_string(), d.clone()),
            ])
        });
        let req = VolumeCreateOptions {
            name: Some(s.name.clone()),
            labels: Some(s.labels.clone().into_iter().collect()),
            driver_opts,
            ..Default::default()
        };
        let made = self
            .docker
            .create_volume(req)
            .await
            .map_err(|e| call_err("volume", &s.name, e))?;
        // The engine answers a create of an existing name with that volume, whoever made it:
        // one without this tenant's labels (made by hand, or by another namespace) is not
        // mounted into the tenant, and the reason shows in its status.
        let ours = |l: &HashMap<String, String>| s.labels.iter().all(|(k, v)| l.get(k) == Some(v));
        let mut labels = made.labels;
        if !ours(&labels) {
            // After an engine restart, the answer for a volume no container has mounted since
            // carries no labels at all; inspect reads the ones stored with it.
            labels = self
                .docker
                .inspect_volume(&s.name)
                .await
                .map_err(|e| call_err("volume", &s.name, e))?
                .labels;
        }
        match ours(&labels) {
            true => Ok(()),
            false => Err(RuntimeError::Call {
                kind: "volume",
                name: s.name.clone(),
                // Whose it is stays out of the message: it lands in this tenant's status, and
                // the volume may be another tenant's whose name happens to read the same.
                message: "a volume of this name exists and is not this tenant's (made by hand, \
                          or by another namespace or tenant); berth does not mount it: remove \
                          or rename it"
                    .into(),
            }),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.count();
        tolerate(
            self.docker
                .remove_volume(name, Some(RemoveVolumeOptions { force: false }))
                .await,
            &[404],
            "volume",
            name,
        )
    }

    async fn create_container(&self, s: &ContainerSpec) -> Result<(), RuntimeError> {
        self.count();
        let opts = CreateContainerOptions {
            name: Some(s.name.clone()),
            ..Default::default()
        };
        match self
            .docker
            .create_container(Some(opts), create_body(s))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Err(RuntimeError::MissingImage {
                image: s.image.clone(),
            }),
            Err(e) if status_of(&e) == Some(409) => Err(RuntimeError::NotOwned {
                kind: "container",
                name: s.name.clone(),
            }),
            Err(e) => Err(call_err("container", &s.name, e)),
        }
    }

    async fn start_container(&self, name: &str) -> Result<(), RuntimeError> {
        self.count();
        if let Some(wait) = self.restarts.backoff(name) {
            return Err(RuntimeError::Call {
                kind: "container",
                name: name.into(),
                message: format!(
                    "exits within {} s of each start: started again in {} s",
                    super::netns::SHORT.as_secs(),
                    wait.as_secs() + 1
                ),
            });
        }
        let ran = match self.restarts.is_restart(name) {
            true => self.last_run(name).await,
            false => None,
        };
        let none: Option<bollard::query_parameters::StartContainerOptions> = None;
        match self.docker.start_container(name, none).await {
            Ok(()) => self.restarts.started(name, ran),
            // Running already: nothing started, nothing to count.
            Err(e) if status_of(&e) == Some(304) => {}
            Err(e) => return Err(call_err("container", name, e)),
        }
        let Err(e) = self.reseal(name).await else {
            return Ok(());
        };
        // Fail closed: a tenant container whose namespace is not sealed does not run.
        tracing::error!(container = name, error = %e, "container not sealed: stopping it");
        let _ = self.stop_container(name, Duration::ZERO).await;
        Err(e)
    }

    async fn started_elsewhere(&self, name: &str) {
        if self.sealing.get().is_none() || self.restarts.started_lately(name) {
            return;
        }
        if let Err(e) = self.reseal(name).await {
            tracing::error!(container = name, error = %e, "started outside berth and not sealed: stopping it");
            let _ = self.stop_container(name, Duration::ZERO).await;
        }
    }

    fn started_by_berth(&self, name: &str) -> bool {
        self.restarts.started_lately(name)
    }

    fn seal_with(&self, sealing: super::netns::Sealing) {
        let _ = self.sealing.set(sealing);
    }

    async fn reseal(&self, name: &str) -> Result<(), RuntimeError> {
        match self.sealing.get() {
            Some(s) => super::netns::seal(&self.docker, s, name).await,
            None => Ok(()),
        }
    }

    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), RuntimeError> {
        self.count();
        let opts = StopContainerOptions {
            t: Some(grace.as_secs() as i32),
            signal: None,
        };
        self.restarts.stopped(name);
        tolerate(
            self.docker.stop_container(name, Some(opts)).await,
            &[304, 404],
            "container",
            name,
        )
    }

    async fn remove_container(&self, name: &str) -> Result<(), RuntimeError> {
        self.count();
        self.restarts.removed(name);
        let opts = RemoveContainerOptions {
            force: true,
            v: false,
            link: false,
        };
        tolerate(
            self.docker.remove_container(name, Some(opts)).await,
            &[404],
            "container",
            name,
        )
    }

    async fn rename_container(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        self.count();
        let opts = RenameContainerOptions { name: to.into() };
        match self.docker.rename_container(from, opts).await {
            Err(e) if status_of(&e) == Some(404) => {
                // Already renamed by an earlier attempt, if `to` exists.
                self.docker
                    .inspect_container(
                        to,
                        None::<bollard::query_parameters::InspectContainerOptions>,
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| call_err("container", to, e))
            }
            other => other.map_err(|e| call_err("container", from, e)),
        }
    }

    async fn logs(&self, name: &str, follow: bool, tail: usize) -> Result<LogStream, RuntimeError> {
        let opts = LogsOptions {
            follow,
            stdout: true,
            stderr: true,
            tail: tail.to_string(),
            ..Default::default()
        };
        let name = name.to_string();
        let stream = self
            .docker
            .logs(&name, Some(opts))
            .map_ok(|o| o.into_bytes())
            .map_err(move |e| call_err("container", &name, e));
        Ok(stream.boxed())
    }

    async fn exec(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput, RuntimeError> {
        self.exec_with(name, cmd, stdin, None).await
    }

    async fn exec_out(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
        sink: &mut (dyn AsyncWrite + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError> {
        let mut data = stdin.as_deref();
        let io = ExecIo {
            stdin: data
                .as_mut()
                .map(|d| d as &mut (dyn AsyncRead + Unpin + Send)),
            sink: Some(sink),
        };
        self.exec_io(name, cmd, io, None).await
    }

    async fn exec_in(
        &self,
        name: &str,
        cmd: &[&str],
        source: &mut (dyn AsyncRead + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError> {
        let io = ExecIo {
            stdin: Some(source),
            sink: None,
        };
        self.exec_io(name, cmd, io, None).await
    }

    async fn list_images(&self) -> Result<Vec<super::ImageInfo>, RuntimeError> {
        let list = self
            .docker
            .list_images(Some(ListImagesOptions::default()))
            .await
            .map_err(|e| call_err("images", "", e))?;
        let names = |v: Vec<String>| -> Vec<String> {
            v.into_iter()
                .filter(|r| !r.starts_with("<none>"))
                .map(|r| crate::desired::image_ref::normalize(&r))
                .collect()
        };
        Ok(list
            .into_iter()
            .map(|i| super::ImageInfo {
                id: i.id,
                size: i.size.max(0) as u64,
                tags: names(i.repo_tags),
                digests: names(i.repo_digests),
            })
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        self.count();
        match self
            .docker
            .remove_image(reference, None::<RemoveImageOptions>, None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if status_of(&e) == Some(404) => Ok(()),
            Err(e) => Err(call_err("image", reference, e)),
        }
    }

    async fn tag_image(&self, source: &str, target: &str) -> Result<(), RuntimeError> {
        self.count();
        let (repo, tag) = crate::desired::image_ref::pull_parts(target);
        let opts = TagImageOptions {
            repo: Some(repo),
            tag: Some(tag),
        };
        self.docker
            .tag_image(source, Some(opts))
            .await
            .map_err(|e| call_err("image", source, e))
    }

    async fn exec_timed(
        &self,
        name: &str,
        cmd: &[&str],
        limit: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.exec_with(name, cmd, None, Some(limit)).await
    }

    async fn events(
        &self,
        ns: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, super::EngineEvent>, RuntimeError> {
        let mut filters = ns_filter(ns);
        filters.insert("type".into(), vec!["container".into()]);
        filters.insert(
            "event".into(),
            ["start", "die", "destroy", "health_status", "oom"]
                .map(String::from)
                .to_vec(),
        );
        let opts = EventsOptions {
            filters: Some(filters),
            ..Default::default()
        };
        Ok(self
            .docker
            .events(Some(opts))
            .take_while(|r| futures_util::future::ready(r.is_ok()))
            .filter_map(|r| futures_util::future::ready(r.ok().map(event_of)))
            .boxed())
    }

    async fn stats(&self, name: &str) -> Result<super::ContainerStats, RuntimeError> {
        let info = self
            .docker
            .inspect_container(name, None::<InspectContainerOptions>)
            .await
            .map_err(|e| call_err("container", name, e))?;
        let restarts = info.restart_count.unwrap_or(0).max(0) as u64 + self.restarts.count(name);
        let pid = info.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
        // The kernel's counters when this host shows them to us (pseudo-files: no disk wait);
        // the engine's stats call, ~0.5 s each on a busy engine, otherwise.
        if let (true, Some(id), Ok(pid @ 1..)) =
            (self.kernel_stats, info.id.as_deref(), u32::try_from(pid))
            && let Some(r) = super::cgroup::read(id, pid)
        {
            return Ok(super::ContainerStats { restarts, ..r });
        }
        let opts = StatsOptions {
            stream: false,
            one_shot: true,
        };
        let s = self
            .docker
            .stats(name, Some(opts))
            .next()
            .await
            .ok_or_else(|| RuntimeError::Call {
                kind: "container stats",
                name: name.into(),
                message: "the engine sent no reading".into(),
            })?
            .map_err(|e| call_err("container stats", name, e))?;
        Ok(stats_of(s, restarts))
    }

    fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::Relaxed)
    }
}

fn event_of(m: bollard::models::EventMessage) -> super::EngineEvent {
    let attrs = m.actor.and_then(|a| a.attributes).unwrap_or_default();
    super::EngineEvent {
        action: m.action.unwrap_or_default(),
        container: attrs.get("name").cloned().unwrap_or_default(),
        tenant: label(&attrs, labels::TENANT),
        service: label(&attrs, labels::SERVICE),
    }
}

/// Memory as `docker stats` shows it: usage less the inactive page cache the kernel can drop
/// (`inactive_file` on cgroup v2, `total_inactive_file` on v1).
fn stats_of(s: bollard::models::ContainerStatsResponse, restarts: u64) -> super::ContainerStats {
    let mem = s.memory_stats.unwrap_or_default();
    let cache = mem
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("inactive_file")
                .or_else(|| m.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    let nets = s.networks.unwrap_or_default();
    super::ContainerStats {
        cpu_seconds: s
            .cpu_stats
            .and_then(|c| c.cpu_usage)
            .and_then(|u| u.total_usage)
            .unwrap_or(0) as f64
            / 1e9,
        memory_bytes: mem.usage.unwrap_or(0).saturating_sub(cache),
        memory_limit: mem.limit.unwrap_or(0),
        pids: s.pids_stats.and_then(|p| p.current).unwrap_or(0),
        rx_bytes: nets.values().filter_map(|n| n.rx_bytes).sum(),
        tx_bytes: nets.values().filter_map(|n| n.tx_bytes).sum(),
        restarts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_is_read_from_the_status_text() {
        assert_eq!(
            health_from_status("Up 3 minutes (healthy)"),
            Some(Health::Healthy)
        );
        assert_eq!(
            health_from_status("Up 1 second (health: starting)"),
            Some(Health::Starting)
        );
        assert_eq!(health_from_status("Up 2 hours"), None);
    }
}
