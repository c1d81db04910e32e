//! Subnets, web address slots and swarm node ports handed to tenants, remembered across
//! restarts.

use super::atomic;
use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    path::PathBuf,
    sync::Mutex,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    /// Index of the tenant's subnet in the pool.
    pub subnet: u32,
    /// Web port published on the tenant's swarm node (swarm mode only).
    pub port: u16,
    /// Which of its subnet's two web addresses the web container has (0 or 1; see
    /// `SubnetPool::web_ip`). A blue-green upgrade starts the new container in the other.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub web_slot: u8,
    /// The port of a blue-green upgrade's new container, recorded before it is used so a
    /// crash never leaves a published port the table does not know. Its presence also marks
    /// the other web slot as taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_port: Option<u16>,
}

fn is_zero(n: &u8) -> bool {
    *n == 0
}

impl Allocation {
    /// What a blue-green upgrade's new web container gets: the reserved next port and the
    /// other web slot. None when no next port is reserved.
    pub fn next(&self) -> Option<Allocation> {
        Some(Allocation {
            port: self.next_port?,
            web_slot: self.web_slot ^ 1,
            next_port: None,
            ..*self
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AllocError {
    #[error(
        "no free subnet left in the pool ({capacity} subnets, all in use); widen network.subnet_pool"
    )]
    SubnetsExhausted { capacity: u32 },
    #[error("no free port left in {first}-{last}; widen the ports range")]
    PortsExhausted { first: u16, last: u16 },
    #[error("tenant {0} has no allocation")]
    Unknown(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// The allocation table, written atomically before any Docker object uses a value from it, so
/// a crash never leaves a network or port that the table does not know.
#[derive(Debug)]
pub struct Allocations {
    path: PathBuf,
    table: Mutex<BTreeMap<String, Allocation>>,
}

impl Allocations {
    pub fn open(path: PathBuf) -> Result<Allocations, AllocError> {
        let table = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| AllocError::Read {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                return Err(AllocError::Read {
                    path,
                    message: e.to_string(),
                });
            }
        };
        Ok(Allocations {
            path,
            table: Mutex::new(table),
        })
    }

    pub fn get(&self, tenant: &str) -> Option<Allocation> {
        self.table
            .lock()
            .expect("allocations lock")
            .get(tenant)
            .copied()
    }

    pub fn snapshot(&self) -> BTreeMap<String, Allocation> {
        self.table.lock().expect("allocations lock").clone()
    }

    /// The tenant's allocation, making and persisting one if it has none.
    pub fn ensure(
        &self,
        tenant: &str,
        subnets: u32,
        ports: (u16, u16),
    ) -> Result<Allocation, AllocError> {
        let mut t = self.table.lock().expect("allocations lock");
        if let Some(a) = t.get(tenant) {
            return Ok(*a);
        }
        let used_subnets: BTreeSet<u32> = t.values().map(|a| a.subnet).collect();
        let subnet = (0..subnets)
            .find(|n| !used_subnets.contains(n))
            .ok_or(AllocError::SubnetsExhausted { capacity: subnets })?;
        let port = free_port(&t, ports)?;
        let a = Allocation {
            subnet,
            port,
            web_slot: 0,
            next_port: None,
        };
        t.insert(tenant.to_string(), a);
        self.save(&t)?;
        Ok(a)
    }

    /// A second port for the tenant's next web container (kept if one is recorded already).
    pub fn reserve_next(&self, tenant: &str, ports: (u16, u16)) -> Result<u16, AllocError> {
        let mut t = self.table.lock().expect("allocations lock");
        let Some(a) = t.get(tenant).copied() else {
            return Err(AllocError::Unknown(tenant.into()));
        };
        if let Some(p) = a.next_port {
            return Ok(p);
        }
        let p = free_port(&t, ports)?;
        t.get_mut(tenant).expect("present").next_port = Some(p);
        self.save(&t)?;
        Ok(p)
    }

    /// Makes the next port and web slot the tenant's (the old ones are free again). No-op
    /// without a next port.
    pub fn promote_next(&self, tenant: &str) -> Result<(), AllocError> {
        self.update(tenant, |a| {
            if let Some(next) = a.next() {
                *a = next;
            }
        })
    }

    /// Forgets the next port (an upgrade that did not switch).
    pub fn drop_next(&self, tenant: &str) -> Result<(), AllocError> {
        self.update(tenant, |a| a.next_port = None)
    }

    fn update(&self, tenant: &str, f: impl FnOnce(&mut Allocation)) -> Result<(), AllocError> {
        let mut t = self.table.lock().expect("allocations lock");
        if let Some(a) = t.get_mut(tenant) {
            let before = *a;
            f(a);
            if *a != before {
                self.save(&t)?;
            }
        }
        Ok(())
    }

    pub fn release(&self, tenant: &str) -> Result<(), AllocError> {
        let mut t = self.table.lock().expect("allocations lock");
        if t.remove(tenant).is_some() {
            self.save(&t)?;
        }
        Ok(())
    }

    fn save(&self, t: &BTreeMap<String, Allocation>) -> Result<(), AllocError> {
        let json = serde_json::to_vec_pretty(t).expect("table serializes");
        atomic::write(&self.path, &json, 0o600).map_err(|source| AllocError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// The first port in range used by no tenant (current or next) and by no other program.
fn free_port(t: &BTreeMap<String, Allocation>, ports: (u16, u16)) -> Result<u16, AllocError> {
    let used: BTreeSet<u16> = t
        .values()
        .flat_map(|a| std::iter::once(a.port).chain(a.next_port))
        .collect();
    (ports.0..=ports.1)
        .find(|p| !used.contains(p) && port_is_free(*p))
        .ok_or(AllocError::PortsExhausted {
            first: ports.0,
            last: ports.1,
        })
}

/// A port some other program already listens on is skipped rather than handed out.
fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_unique_persisted_and_reused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        let a = Allocations::open(p.clone()).unwrap();
        let x = a.ensure("x", 16, (40100, 40199)).unwrap();
        let y = a.ensure("y", 16, (40100, 40199)).unwrap();
        assert_ne!(x.subnet, y.subnet);
        assert_ne!(x.port, y.port);
        let again = Allocations::open(p).unwrap();
        assert_eq!(again.ensure("x", 16, (40100, 40199)).unwrap(), x);
    }

    #[test]
    fn an_exhausted_pool_says_so() {
        let d = tempfile::tempdir().unwrap();
        let a = Allocations::open(d.path().join("a.json")).unwrap();
        a.ensure("x", 1, (40200, 40210)).unwrap();
        assert!(matches!(
            a.ensure("y", 1, (40200, 40210)),
            Err(AllocError::SubnetsExhausted { capacity: 1 })
        ));
    }

    #[test]
    fn released_values_are_handed_out_again() {
        let d = tempfile::tempdir().unwrap();
        let a = Allocations::open(d.path().join("a.json")).unwrap();
        let x = a.ensure("x", 4, (40300, 40310)).unwrap();
        a.release("x").unwrap();
        assert_eq!(a.ensure("z", 4, (40300, 40310)).unwrap().subnet, x.subnet);
    }
}

#[cfg(test)]
mod next_port_tests {
    use super::*;

    #[test]
    fn a_next_port_is_unique_survives_reopen_and_becomes_the_port_and_slot_on_promotion() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a.json");
        let a = Allocations::open(p.clone()).unwrap();
        let x = a.ensure("x", 4, (40400, 40410)).unwrap();
        let y = a.ensure("y", 4, (40400, 40410)).unwrap();
        let next = a.reserve_next("x", (40400, 40410)).unwrap();
        assert!(next != x.port && next != y.port);
        assert_eq!(a.reserve_next("x", (40400, 40410)).unwrap(), next, "kept");
        let again = Allocations::open(p).unwrap();
        assert_eq!(again.get("x").unwrap().next_port, Some(next));
        assert_eq!(again.get("x").unwrap().next().unwrap().web_slot, 1);
        again.promote_next("x").unwrap();
        let promoted = Allocation {
            subnet: x.subnet,
            port: next,
            web_slot: 1,
            next_port: None,
        };
        assert_eq!(again.get("x").unwrap(), promoted);
        let z = again.ensure("z", 4, (40400, 40410)).unwrap();
        assert_eq!(z.port, x.port, "the old port is free again");
        again.reserve_next("x", (40400, 40410)).unwrap();
        assert_eq!(
            again.get("x").unwrap().next().unwrap().web_slot,
            0,
            "back to the first"
        );
    }
}
