//! The controller as the features see it: `services::Reconciler`, the narrow handle.

use super::{Controller, plan};
use crate::{
    desired,
    services::{Board, PassError, PassReport},
};
use futures_util::future::BoxFuture;
use std::{sync::Arc, time::Duration};

impl crate::services::Reconciler for Controller {
    fn kick(&self) {
        Controller::kick(self);
    }
    fn pass(&self) -> BoxFuture<'_, Result<PassReport, PassError>> {
        Box::pin(Controller::pass(self))
    }
    fn board(&self) -> Board {
        Controller::board(self)
    }
    fn status_of(&self, tenant: &str) -> Option<crate::services::InstanceStatus> {
        self.board
            .read()
            .expect("board lock")
            .instances
            .get(tenant)
            .cloned()
    }
    fn desired(&self) -> Arc<desired::Desired> {
        Controller::desired(self)
    }
    fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        Controller::subscribe(self)
    }
    fn touch(&self) {
        Controller::touch(self);
    }
    fn reset_backoff(&self, tenant: &str) {
        Controller::reset_backoff(self, tenant);
    }
    fn web_at(
        &self,
        tenant: &str,
        web_port: u16,
        alloc: &crate::store::Allocation,
    ) -> std::net::SocketAddr {
        Controller::web_at(self, tenant, web_port, alloc)
    }
    fn hold(&self, tenant: &str) {
        Controller::hold(self, tenant);
    }
    fn try_hold(&self, tenant: &str) -> bool {
        Controller::try_hold(self, tenant)
    }
    fn hold_settled<'a>(&'a self, tenant: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(Controller::hold_settled(self, tenant))
    }
    fn release(&self, tenant: &str) {
        Controller::release(self, tenant);
    }
    fn is_held(&self, tenant: &str) -> bool {
        Controller::is_held(self, tenant)
    }
    fn write_files<'a>(
        &'a self,
        inst: &'a desired::Instance,
    ) -> BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync>>> {
        Box::pin(async move {
            let steps = [plan::Step::WriteFiles];
            self.applier()
                .apply(&inst.tenant, Some(inst), &steps)
                .await?;
            Ok(())
        })
    }
    fn preview(&self) -> BoxFuture<'_, Result<Vec<crate::services::TenantPlan>, PassError>> {
        Box::pin(Controller::preview(self))
    }
    fn preview_instance<'a>(
        &'a self,
        inst: &'a crate::desired::Instance,
    ) -> BoxFuture<'a, Result<crate::services::TenantPlan, PassError>> {
        Box::pin(Controller::preview_instance(self, inst))
    }
    fn preview_removal<'a>(
        &'a self,
        tenant: &'a str,
        purge: bool,
    ) -> BoxFuture<'a, Result<crate::services::TenantPlan, PassError>> {
        Box::pin(Controller::preview_removal(self, tenant, purge))
    }
    fn converge_tenant<'a>(
        &'a self,
        tenant: &'a str,
        limit: Duration,
    ) -> BoxFuture<'a, Result<(), crate::services::WakeError>> {
        Box::pin(Controller::converge_tenant(self, tenant, limit))
    }
}
