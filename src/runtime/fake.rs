//! In-memory runtime for unit tests and the 1,000-instance benchmark: records every mutating
//! call and can be told to fail one.

use super::{
    ExecOutput, Inventory, LogStream, ObservedContainer, ObservedNetwork, ObservedVolume,
    RunStatus, Runtime, RuntimeError, labels,
    spec::{ContainerSpec, NetworkSpec, VolumeSpec},
};
use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

#[derive(Default)]
struct State {
    containers: BTreeMap<String, ObservedContainer>,
    networks: BTreeMap<String, ObservedNetwork>,
    volumes: BTreeMap<String, ObservedVolume>,
    calls: Vec<String>,
    fail_on: Option<String>,
    with_healthcheck: std::collections::BTreeSet<String>,
    /// None: every image counts as present (the default); Some: only these.
    images: Option<std::collections::BTreeSet<String>>,
    /// How long each inventory takes (an engine listing a few hundred tenants), and how many.
    inventory_delay: Duration,
    inventories: u64,
}

#[derive(Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
    mutations: AtomicU64,
}

impl FakeRuntime {
    pub fn new() -> FakeRuntime {
        FakeRuntime::default()
    }

    /// From now on each inventory takes `d`.
    pub fn set_inventory_delay(&self, d: Duration) {
        self.state.lock().unwrap().inventory_delay = d;
    }

    /// How many inventories were asked for so far.
    pub fn inventories(&self) -> u64 {
        self.state.lock().unwrap().inventories
    }

    /// From now on only these images are present (pulls add to them).
    pub fn set_images(&self, images: &[&str]) {
        self.state.lock().unwrap().images = Some(
            images
                .iter()
                .map(|i| crate::desired::image_ref::normalize(i))
                .collect(),
        );
    }

    /// Every mutating call so far, as `verb name`.
    pub fn calls(&self) -> Vec<String> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Makes the next call whose `verb name` starts with `prefix` fail.
    pub fn fail_on(&self, prefix: &str) {
        self.state.lock().unwrap().fail_on = Some(prefix.into());
    }

    /// Simulates someone running `docker stop` / `docker rm` by hand.
    pub fn set_status(&self, name: &str, status: RunStatus) {
        if let Some(c) = self.state.lock().unwrap().containers.get_mut(name) {
            c.status = status;
        }
    }

    pub fn forget_container(&self, name: &str) {
        self.state.lock().unwrap().containers.remove(name);
    }

    fn record(&self, call: String) -> Result<std::sync::MutexGuard<'_, State>, RuntimeError> {
        self.mutations.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state.lock().unwrap();
        if s.fail_on
            .as_ref()
            .is_some_and(|p| call.starts_with(p.as_str()))
        {
            s.fail_on = None;
            return Err(RuntimeError::Call {
                kind: "fake",
                name: call,
                message: "injected failure".into(),
            });
        }
        s.calls.push(call);
        Ok(s)
    }
}

#[async_trait::async_trait]
impl Runtime for FakeRuntime {
    async fn inventory(&self, _ns: &str) -> Result<Inventory, RuntimeError> {
        let delay = {
            let mut s = self.state.lock().unwrap();
            s.inventories += 1;
            s.inventory_delay
        };
        tokio::time::sleep(delay).await;
        let s = self.state.lock().unwrap();
        Ok(Inventory {
            containers: s.containers.values().cloned().collect(),
            networks: s.networks.values().cloned().collect(),
            volumes: s.volumes.values().cloned().collect(),
            images: s.images.clone(),
            image_ids: Default::default(),
        })
    }

    async fn pull_image(
        &self,
        image: &str,
        _auth: Option<(String, String)>,
        progress: &(dyn for<'e> Fn(&'e super::PullEvent) + Send + Sync),
    ) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("pull_image {image}"))?;
        progress(&super::PullEvent {
            layer: Some("l1".into()),
            status: "Pull complete".into(),
            current: None,
            total: None,
        });
        if let Some(i) = &mut s.images {
            i.insert(crate::desired::image_ref::normalize(image));
        }
        Ok(())
    }

    async fn create_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("create_network {}", spec.name))?;
        let tenant = spec.labels.get(labels::TENANT).cloned().unwrap_or_default();
        s.networks.insert(
            spec.name.clone(),
            ObservedNetwork {
                name: spec.name.clone(),
                tenant,
                subnet: Some(spec.subnet.clone()),
                ip_range: spec.ip_range.clone(),
            },
        );
        Ok(())
    }

    async fn remove_network(&self, name: &str) -> Result<(), RuntimeError> {
        self.record(format!("remove_network {name}"))?
            .networks
            .remove(name);
        Ok(())
    }

    async fn connect_network(
        &self,
        network: &str,
        container: &str,
        _alias: &str,
    ) -> Result<(), RuntimeError> {
        drop(self.record(format!("connect_network {network} {container}"))?);
        Ok(())
    }

    async fn disconnect_network(&self, network: &str, container: &str) -> Result<(), RuntimeError> {
        drop(self.record(format!("disconnect_network {network} {container}"))?);
        Ok(())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("create_volume {}", spec.name))?;
        let tenant = spec.labels.get(labels::TENANT).cloned().unwrap_or_default();
        s.volumes.insert(
            spec.name.clone(),
            ObservedVolume {
                name: spec.name.clone(),
                tenant,
                mountpoint: format!("/fake/volumes/{}/_data", spec.name),
                device: spec.device.clone(),
            },
        );
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.record(format!("remove_volume {name}"))?
            .volumes
            .remove(name);
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("create_container {}", spec.name))?;
        if s.containers.contains_key(&spec.name) {
            return Err(RuntimeError::NotOwned {
                kind: "container",
                name: spec.name.clone(),
            });
        }
        if spec.healthcheck.is_some() {
            s.with_healthcheck.insert(spec.name.clone());
        }
        let l = |k: &str| spec.labels.get(k).cloned().unwrap_or_default();
        let ip = spec
            .address
            .unwrap_or_else(|| std::net::Ipv4Addr::from(0x0a00_0002 + s.containers.len() as u32));
        s.containers.insert(
            spec.name.clone(),
            ObservedContainer {
                name: spec.name.clone(),
                tenant: l(labels::TENANT),
                service: l(labels::SERVICE),
                spec_hash: l(labels::SPEC_HASH),
                status: RunStatus::Stopped,
                health: None,
                host_port: spec.publish.map(|p| p.1),
                ip: Some(ip),
                node: None,
            },
        );
        Ok(())
    }

    async fn start_container(&self, name: &str) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("start_container {name}"))?;
        // The fake's health checks pass at once.
        let health = s
            .with_healthcheck
            .contains(name)
            .then_some(super::Health::Healthy);
        match s.containers.get_mut(name) {
            Some(c) => {
                c.status = RunStatus::Running;
                c.health = health;
                Ok(())
            }
            None => Err(RuntimeError::Call {
                kind: "container",
                name: name.into(),
                message: "no such container".into(),
            }),
        }
    }

    async fn stop_container(&self, name: &str, _grace: Duration) -> Result<(), RuntimeError> {
        if let Some(c) = self
            .record(format!("stop_container {name}"))?
            .containers
            .get_mut(name)
        {
            c.status = RunStatus::Stopped;
        }
        Ok(())
    }

    async fn remove_container(&self, name: &str) -> Result<(), RuntimeError> {
        self.record(format!("remove_container {name}"))?
            .containers
            .remove(name);
        Ok(())
    }

    async fn rename_container(&self, from: &str, to: &str) -> Result<(), RuntimeError> {
        let mut w = self.record(format!("rename_container {from} {to}"))?;
        if let Some(mut c) = w.containers.remove(from) {
            c.name = to.to_string();
            w.containers.insert(to.to_string(), c);
        }
        Ok(())
    }

    async fn logs(
        &self,
        name: &str,
        follow: bool,
        _tail: usize,
    ) -> Result<LogStream, RuntimeError> {
        let line = bytes::Bytes::from(format!("fake log of {name}\n"));
        let lines = futures_util::stream::iter(vec![Ok(line)]);
        // Following, like the engine's: more lines may come, the stream does not end.
        let more = futures_util::StreamExt::take(
            futures_util::stream::pending::<Result<bytes::Bytes, RuntimeError>>(),
            usize::from(follow),
        );
        Ok(Box::pin(futures_util::StreamExt::chain(lines, more)))
    }

    async fn exec_out(
        &self,
        name: &str,
        cmd: &[&str],
        stdin: Option<Vec<u8>>,
        sink: &mut (dyn tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError> {
        let out = self.exec(name, cmd, stdin).await?;
        tokio::io::AsyncWriteExt::write_all(sink, &out.stdout)
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        Ok(out)
    }

    async fn exec_in(
        &self,
        name: &str,
        cmd: &[&str],
        source: &mut (dyn tokio::io::AsyncRead + Unpin + Send),
    ) -> Result<ExecOutput, RuntimeError> {
        let mut data = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(source, &mut data)
            .await
            .map_err(|e| RuntimeError::Unreachable(e.to_string()))?;
        self.exec(name, cmd, Some(data)).await
    }

    async fn exec(
        &self,
        name: &str,
        cmd: &[&str],
        _stdin: Option<Vec<u8>>,
    ) -> Result<ExecOutput, RuntimeError> {
        drop(self.record(format!("exec {name} {}", cmd.join(" ")))?);
        Ok(ExecOutput {
            exit_code: 0,
            output: String::new(),
            stdout: Vec::new(),
            timed_out: false,
        })
    }

    async fn list_images(&self) -> Result<Vec<super::ImageInfo>, RuntimeError> {
        let s = self.state.lock().unwrap();
        Ok(s.images
            .iter()
            .flatten()
            .map(|i| super::ImageInfo {
                id: format!("sha256:{i}"),
                size: 1 << 20,
                tags: vec![i.clone()],
                digests: vec![],
            })
            .collect())
    }

    async fn remove_image(&self, reference: &str) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("remove_image {reference}"))?;
        if let Some(i) = &mut s.images {
            i.remove(&crate::desired::image_ref::normalize(reference));
        }
        Ok(())
    }

    async fn tag_image(&self, source: &str, target: &str) -> Result<(), RuntimeError> {
        let mut s = self.record(format!("tag_image {source} {target}"))?;
        if let Some(i) = &mut s.images {
            i.insert(crate::desired::image_ref::normalize(target));
        }
        Ok(())
    }

    async fn exec_timed(
        &self,
        name: &str,
        cmd: &[&str],
        _limit: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        self.exec(name, cmd, None).await
    }

    async fn events(
        &self,
        _ns: &str,
    ) -> Result<futures_util::stream::BoxStream<'static, super::EngineEvent>, RuntimeError> {
        Ok(Box::pin(futures_util::stream::pending()))
    }

    /// A running container reads as one process using 1 MiB of its 64 MiB.
    async fn stats(&self, name: &str) -> Result<super::ContainerStats, RuntimeError> {
        match self.state.lock().unwrap().containers.get(name) {
            Some(c) if c.status == RunStatus::Running => Ok(super::ContainerStats {
                cpu_seconds: 0.5,
                memory_bytes: 1 << 20,
                memory_limit: 64 << 20,
                pids: 1,
                ..Default::default()
            }),
            _ => Err(RuntimeError::Call {
                kind: "container stats",
                name: name.into(),
                message: "not running".into(),
            }),
        }
    }

    fn mutations(&self) -> u64 {
        self.mutations.load(Ordering::Relaxed)
    }
}
