//! The engines of the swarm's nodes, each reached on its own socket and connected on first
//! use: a node that is down (its socket gone) when the agent starts is one it waits for.

use super::super::{RuntimeError, docker::DockerRuntime};
use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

/// A node's socket and its engine once connected.
type Slot = (PathBuf, Mutex<Option<Arc<DockerRuntime>>>);

#[derive(Clone)]
pub struct NodeConns {
    version: bollard::ClientVersion,
    conns: Arc<BTreeMap<String, Slot>>,
}

impl NodeConns {
    pub fn new(version: bollard::ClientVersion, sockets: &BTreeMap<String, PathBuf>) -> NodeConns {
        let conns = sockets
            .iter()
            .map(|(n, p)| (n.clone(), (p.clone(), Mutex::new(None))))
            .collect();
        NodeConns {
            version,
            conns: Arc::new(conns),
        }
    }

    /// The engine of `node`; Unreachable while its socket is missing.
    pub fn get(&self, node: &str) -> Result<Arc<DockerRuntime>, RuntimeError> {
        let (path, slot) = self.conns.get(node).ok_or_else(|| RuntimeError::Call {
            kind: "node",
            name: node.into(),
            message: "no engine socket for this node in engine.nodes".into(),
        })?;
        let mut slot = slot.lock().expect("node slot");
        if let Some(rt) = &*slot {
            return Ok(rt.clone());
        }
        let rt = Arc::new(DockerRuntime::lazy_socket(path, &self.version)?);
        *slot = Some(rt.clone());
        Ok(rt)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.conns.keys()
    }

    /// Every node's engine, or why it cannot be had now.
    pub fn all(&self) -> Vec<(String, Result<Arc<DockerRuntime>, RuntimeError>)> {
        self.names().map(|n| (n.clone(), self.get(n))).collect()
    }

    /// Mutating calls made on the nodes so far.
    pub fn mutations(&self) -> u64 {
        self.conns
            .values()
            .filter_map(|(_, s)| s.lock().expect("node slot").clone())
            .map(|rt| super::super::Runtime::mutations(&*rt))
            .sum()
    }
}
