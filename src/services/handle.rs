//! The narrow handle to the reconciler that features hold: ask for a pass, read what the
//! last pass published, and keep passes away from a tenant while an operation changes it.

use super::{Board, PassError, PassReport};
use crate::desired::{Desired, Instance};
use futures_util::future::BoxFuture;
use std::{net::SocketAddr, sync::Arc, time::Duration};

/// Why a tenant was not started and healthy outside the pass (the passes carry on with it).
#[derive(Debug, thiserror::Error)]
pub enum WakeError {
    #[error("held by another operation")]
    Held,
    #[error("taken over by an upgrade or restore")]
    TakenOver,
    #[error("no longer desired")]
    NotDesired,
    #[error("its file says {0}")]
    NotRunning(&'static str),
    #[error("{0}")]
    Engine(#[from] crate::runtime::RuntimeError),
    #[error("{0}")]
    Apply(Box<dyn std::error::Error + Send + Sync>),
    /// A probe of the tenant fails: its words.
    #[error("{0}")]
    Probe(String),
    #[error("not healthy within {0:?}")]
    TooSlow(Duration),
}

pub trait Reconciler: Send + Sync {
    /// Asks for a pass soon; many kicks before it starts make one pass.
    fn kick(&self);
    /// Runs one full pass now (passes never overlap) and answers with its report.
    fn pass(&self) -> BoxFuture<'_, Result<PassReport, PassError>>;
    /// The board the last pass published.
    fn board(&self) -> Board;
    /// One tenant's status from the last pass (without copying the whole board).
    fn status_of(&self, tenant: &str) -> Option<super::InstanceStatus>;
    /// The desired state seen by the last pass.
    fn desired(&self) -> Arc<Desired>;
    /// Resolves each time a pass has published a new board (or `touch` was called).
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64>;
    /// Tells subscribers something beside the files changed (a domain was verified).
    fn touch(&self);
    /// Forgets a tenant's backoff so the next pass retries it at once (after an operator fix).
    fn reset_backoff(&self, tenant: &str);
    /// Where the edge reaches `tenant`'s web container placed by `alloc`: its fixed address
    /// and `web_port` on the tenant's bridge, or (swarm) `alloc`'s node port on its node.
    fn web_at(&self, tenant: &str, web_port: u16, alloc: &crate::store::Allocation) -> SocketAddr;

    /// Keeps passes away from `tenant` (its containers are being changed by an operation).
    fn hold(&self, tenant: &str);
    /// Holds `tenant` unless another operation holds it already: whether the caller now does.
    /// Two operations that must not overlap on a tenant (a move's hold, an upgrade's turn) each
    /// take it this way, and the second is refused.
    fn try_hold(&self, tenant: &str) -> bool;
    /// Holds `tenant` and waits out a pass already running, which may be applying steps to
    /// it: after this resolves, no pass touches the tenant until it is released.
    fn hold_settled<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, ()>;
    /// Hands `tenant` back to the reconciler and asks for a pass.
    fn release(&self, tenant: &str);
    fn is_held(&self, tenant: &str) -> bool;

    /// Writes `inst`'s secrets and configs as a pass's `WriteFiles` step does, for an
    /// operation that starts one of its containers outside the pass (an upgrade's new web).
    fn write_files<'a>(
        &'a self,
        inst: &'a Instance,
    ) -> BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>>;

    /// What the next pass would do to each tenant it has work for, without doing it: the
    /// same observe and plan, none of the effects.
    fn preview(&self) -> BoxFuture<'_, Result<Vec<super::TenantPlan>, PassError>>;
    /// The steps a pass would take to bring `inst`'s tenant from what runs now to `inst`
    /// (a write checked but not made: `dry_run`).
    fn preview_instance<'a>(
        &'a self,
        inst: &'a Instance,
    ) -> BoxFuture<'a, Result<super::TenantPlan, PassError>>;

    /// The steps removing `tenant`'s file would cause (with `purge`: its data too).
    fn preview_removal<'a>(
        &'a self,
        tenant: &'a str,
        purge: bool,
    ) -> BoxFuture<'a, Result<super::TenantPlan, PassError>>;

    /// Starts `tenant` now, outside the pass, and waits within `limit` until every probe of
    /// it is healthy. Err says why not; the passes then carry on with the tenant.
    fn converge_tenant<'a>(
        &'a self,
        tenant: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), WakeError>>;
}

impl dyn Reconciler + '_ {
    /// Holds `tenant` like `hold_settled`; the hold ends when the guard is dropped, so every
    /// way out of an operation (an error, a panic, its future dropped, even mid-wait) releases
    /// the tenant.
    pub async fn hold_guard(&self, tenant: &str) -> Held<'_> {
        let held = Held {
            passes: self,
            tenant: tenant.into(),
        };
        self.hold_settled(tenant).await;
        held
    }

    /// `hold_guard` in one step against any other holder (`try_hold`): None, and nothing
    /// changed, while another operation holds `tenant`.
    pub async fn try_hold_guard(&self, tenant: &str) -> Option<Held<'_>> {
        if !self.try_hold(tenant) {
            return None;
        }
        Some(self.hold_guard(tenant).await)
    }
}

/// A tenant held from the reconciler until this is dropped (`hold_guard`).
pub struct Held<'a> {
    passes: &'a dyn Reconciler,
    tenant: String,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.passes.release(&self.tenant);
    }
}
