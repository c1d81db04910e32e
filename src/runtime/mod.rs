//! The container runtime boundary: what reconcile needs from Docker, as a trait with a real
//! implementation (`docker`, the only bollard user) and an in-memory fake for unit tests.

pub mod cgroup;
pub mod docker;
pub mod fake;
pub mod host_net;
pub mod labels;
pub mod netns;
pub mod proctree;
pub mod spec;
pub mod swarm;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use serde::Serialize;
use std::time::Duration;

pub use spec::{ContainerSpec, NetworkSpec, VolumeSpec};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("docker engine unreachable: {0}")]
    Unreachable(String),
    #[error("{kind} {name}: {message}")]
    Call {
        kind: &'static str,
        name: String,
        message: String,
    },
    #[error("{kind} {name} exists but is not owned by berth; rename or remove it")]
    NotOwned { kind: &'static str, name: String },
    #[error("image {image} is not present on this host")]
    MissingImage { image: String },
    #[error("pulling {image}: {reason}")]
    Pull { image: String, reason: String },
    #[error("container seal {name}: {source}")]
    Seal {
        name: String,
        source: netns::SealError,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Stopped,
    /// Created, restarting, paused, dead: present but not serving.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ObservedContainer {
    pub name: String,
    pub tenant: String,
    pub service: String,
    pub spec_hash: String,
    pub status: RunStatus,
    pub health: Option<Health>,
    /// Its node port (swarm mode only: the single-host engine publishes nothing).
    pub host_port: Option<u16>,
    /// Its address on the tenant's own network (what berth's database probes connect to).
    #[schema(value_type = Option<String>, format = Ipv4)]
    pub ip: Option<std::net::Ipv4Addr>,
    /// The swarm node that runs it (swarm mode only); the edge reaches `host_port` there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRef>,
}

impl ObservedContainer {
    /// Where a web app listening on `port` in it answers: its node port on its swarm node,
    /// or its own address on the tenant's bridge. None while it has neither.
    pub fn web_addr(&self, port: u16) -> Option<std::net::SocketAddr> {
        match &self.node {
            Some(n) => Some((n.addr, self.host_port?).into()),
            None => Some((self.ip?, port).into()),
        }
    }
}

/// A swarm node as a tenant's container sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct NodeRef {
    pub name: String,
    /// The node's address, where host-mode published ports answer.
    #[schema(value_type = String, format = Ipv4)]
    pub addr: std::net::Ipv4Addr,
    /// Swarm reports it ready (false: down, or unreachable from the managers).
    pub ready: bool,
}

/// A node of the engine, for placement (`Runtime::nodes`; empty on one host).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeInfo {
    pub name: String,
    pub addr: std::net::Ipv4Addr,
    pub ready: bool,
    /// Available for new tasks (not drained or paused).
    pub active: bool,
    pub memory: u64,
    pub cpus: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedNetwork {
    pub name: String,
    pub tenant: String,
    pub subnet: Option<String>,
    /// The range the engine picks addresses from, when the network has one.
    pub ip_range: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ObservedVolume {
    pub name: String,
    pub tenant: String,
    /// Where the engine keeps its data on the host.
    pub mountpoint: String,
    /// The directory a bind volume points at (a tenant filesystem); None: the engine's own.
    pub device: Option<String>,
}

/// Every object carrying this agent's namespace label. Unlabelled objects never appear here,
/// so nothing berth does can touch them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Inventory {
    pub containers: Vec<ObservedContainer>,
    pub networks: Vec<ObservedNetwork>,
    pub volumes: Vec<ObservedVolume>,
    /// Images the engine has, as `desired::image_ref::normalize` writes them (tags and
    /// digests); None when not observed (then every image counts as present).
    pub images: Option<std::collections::BTreeSet<String>>,
    /// Each of those names → the engine's image id it points at (empty when not observed).
    pub image_ids: std::collections::BTreeMap<String, String>,
}

/// One image of the engine: its id, size, and every name it goes by (normalized).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ImageInfo {
    pub id: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub digests: Vec<String>,
}

/// One progress message of an image pull.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PullEvent {
    pub layer: Option<String>,
    pub status: String,
    pub current: Option<i64>,
    pub total: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i64,
    /// stdout and stderr interleaved, as text (for messages).
    pub output: String,
    /// stdout alone, byte for byte (dumps and archives).
    pub stdout: Vec<u8>,
    /// The command outlived its time limit and was killed with everything it started.
    pub timed_out: bool,
}

/// One reading of a container's resource use (cumulative values since it started).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ContainerStats {
    pub cpu_seconds: f64,
    /// In use, page cache that can be reclaimed not counted (what `docker stats` shows).
    pub memory_bytes: u64,
    pub memory_limit: u64,
    pub pids: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Times the engine restarted it (restart policy) since it was created.
    pub restarts: u64,
}

/// An engine event about one of this namespace's containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineEvent {
    /// start, die, destroy, health_status, oom …
    pub action: String,
    pub container: String,
    pub tenant: String,
    pub service: String,
}

pub type LogStream = BoxStream<'static, Result<Bytes, RuntimeError>>;

/// Every mutating call is idempotent: creating what exists, starting what runs, stopping what
/// is stopped and removing what is gone all succeed, so a step can be repeated after a crash.
#[async_trait::async_trait]
pub trait Runtime: Send + Sync + 'static {
    async fn inventory(&self, namespace: &str) -> Result<Inventory, RuntimeError>;
    /// `tenant`'s containers, networks and volumes alone (and every image). An engine that can
    /// filter by label lists only those: a wake looks at its tenant a few times, and a list of
    /// every tenant's containers costs the engine ~50 ms of CPU at 250 tenants.
    async fn inventory_of(&self, namespace: &str, tenant: &str) -> Result<Inventory, RuntimeError> {
        let mut inv = self.inventory(namespace).await?;
        inv.containers.retain(|c| c.tenant == tenant);
        inv.networks.retain(|n| n.tenant == tenant);
        inv.volumes.retain(|v| v.tenant == tenant);
        Ok(inv)
    }
    async fn create_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError>;
    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError>;
    /// Attaches a container (e.g. the shared database) to a network; already attached is fine.
    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        alias: &str,
    ) -> Result<(), RuntimeError>;
    /// Detaches a container from a network; not attached (or either gone) is fine.
    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), RuntimeError>;
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError>;
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;
    async fn create_container(&self, spec: &ContainerSpec) -> Result<(), RuntimeError>;
    async fn start_container(&self, name: &str) -> Result<(), RuntimeError>;
    async fn stop_container(&self, name: &str, grace: Duration) -> Result<(), RuntimeError>;
    async fn remove_container(&self, name: &str) -> Result<(), RuntimeError>;
    /// Renames a container; done already (`from` gone, `to` present) is fine.
    async fn rename_container(&self, from: &str, to: &str) -> Result<(), RuntimeError>;
    async fn logs(&self, name: &str, follow: bool, tail: usize) -> Result<LogStream, RuntimeError>;
    /// Runs `cmd` in a running container, feeding `stdin`; secrets go through stdin, never argv.
    async fn exec(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Like `exec` (with a small `stdin`, e.g. a password line), its stdout written to `sink`
    /// as it arrives (never held whole: dumps and archives); `output` holds its stderr only
    /// (capped), `stdout` stays empty.
    async fn exec_out(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError>;
    /// Like `exec`, its stdin read from `source` as the command takes it.
    async fn exec_in(
        &self,
        name: &str,
        cmd: &[&str],
        source: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError>;
    /// Pulls `image` with optional (username, password) credentials, reporting progress.
    async fn pull_image(
        &self,
        image: &str,
        auth: Option<(String, String)>,
        progress: &(dyn for<'e> Fn(&'e PullEvent) + Send + Sync),
    ) -> Result<(), RuntimeError>;
    /// Every image of the engine.
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError>;
    /// Removes the name `reference` (and the image, once no name or container is left to it).
    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError>;
    /// Gives image `source` the name `target` too (a mirror's pull under the template's name).
    async fn tag_image(&self, source: &str, target: &str) -> Result<(), RuntimeError>;
    /// Like `exec` without stdin, but the command and every process it started are killed
    /// (SIGKILL) once `limit` has passed; the output so far is kept and `timed_out` is set.
    async fn exec_timed(
        &self,
        name: &str,
        cmd: &[&str],
        limit: Duration,
    ) -> Result<ExecOutput, RuntimeError>;
    /// Engine events on this namespace's containers (started, died, changed health, OOM
    /// killed …), so reconcile reacts at once instead of at the next tick and OOM kills are
    /// counted. The stream ends when the engine connection does.
    async fn events(
        &self,
        namespace: &str,
    ) -> Result<BoxStream<'static, EngineEvent>, RuntimeError>;
    /// One reading of a running container's resource use.
    async fn stats(&self, name: &str) -> Result<ContainerStats, RuntimeError>;
    /// The engine's nodes (swarm mode); empty on one host.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError> {
        Ok(vec![])
    }
    /// Places `tenant`'s next network (and so the whole tenant) on `node` (swarm mode).
    async fn pin_tenant(&self, tenant: &str, node: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Call {
            kind: "tenant",
            name: tenant.into(),
            message: format!("cannot be placed on {node}: one host has no nodes"),
        })
    }
    /// Mutating calls made so far (create/start/stop/remove/connect/exec).
    fn mutations(&self) -> u64;
    /// From now on every tenant container is sealed when started (see `netns`); an engine
    /// without per-container namespaces on this host (swarm: its node guards) ignores it.
    fn seal_with(&self, _sealing: netns::Sealing) {}
    /// Seals (or pins the route of) one running container again, e.g. the relay after the
    /// engine restarted it.
    async fn reseal(&self, _name: &str) -> Result<(), RuntimeError> {
        Ok(())
    }
    /// The engine says `name` started: when berth did not start it just now (someone ran
    /// `docker start`, or a policy did), it is sealed now, or stopped if it cannot be.
    async fn started_elsewhere(&self, _name: &str) {}
    /// True when berth itself started `name` in the last few seconds: the engine's start
    /// event is the echo of berth's own call, and whoever made it (a pass, which observes
    /// again after its steps, or a wake's fast path) already looks after the tenant.
    fn started_by_berth(&self, _name: &str) -> bool {
        false
    }
}
