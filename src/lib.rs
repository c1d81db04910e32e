//! berth: fully separated per-tenant app instances on one Docker host, reconciled from files.
//!
//! Data flows one way: `spec` (parse YAML) → `desired` (validated) → `reconcile`
//! (observe → plan → apply) → `runtime` (Docker via bollard); `store` records allocations.

/// mimalloc for every binary built on this crate (the agent, the CLI, the benches and tests).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod audit;
pub mod backoff;
pub mod backup;
pub mod capacity;
pub mod certs;
pub mod cli;
pub mod daemon;
pub mod desired;
pub mod disk;
pub mod domains;
pub mod egress;
pub mod export;
pub mod handover;
pub mod host_tuning;
pub mod http1;
pub mod human;
pub mod images;
pub mod jobs;
pub mod mail;
pub mod metrics;
pub mod offsite;
pub mod ops;
pub mod probe;
pub mod proxy;
pub mod reconcile;
pub mod runtime;
pub mod services;
pub mod sleep;
pub mod spec;
pub mod store;
pub mod ui;
pub mod upgrade;

#[cfg(test)]
pub mod fixtures;
