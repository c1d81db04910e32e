//! What the next pass would do, without doing it: `berth diff` and the `dry_run` of the
//! API's writes. The same observe and plan as a pass (`pass.rs`) with none of its effects: no
//! probe target synced, no disk made or grown, no step applied, nothing published.

use super::{Controller, plan::Step};
use crate::{
    desired::Instance,
    services::{PassError, PlannedStep, TenantPlan},
};
use std::{collections::BTreeSet, time::Instant};

impl Controller {
    /// Every tenant the next pass has work for, with its steps and why it would wait; then
    /// each tenant whose file is invalid (no steps: it keeps its last valid state).
    pub async fn preview(&self) -> Result<Vec<TenantPlan>, PassError> {
        let (mut loaded, mut observed) = self.observe().await?;
        self.admit_edits(&mut loaded, &observed);
        loaded.desired = self.carry_last_valid(std::mem::take(&mut loaded.desired));
        self.svc.pulls().check_pins(&mut observed);
        self.svc.probes().overlay(&mut observed);
        let recorded = self.recorded(&loaded.desired);
        let asleep = self.svc.sleep().asleep();
        let none = BTreeSet::new();
        // A disk that must grow shows when the pass that grows it runs (it measures first).
        let ctx = self.plan_context(&none, &asleep);
        let planned = super::plan::plan(&ctx, &loaded.desired, &observed, &recorded);
        let mut out: Vec<TenantPlan> = planned
            .into_iter()
            .map(|(t, steps)| TenantPlan {
                waits: self.waits(&t),
                steps: steps.iter().map(planned_step).collect(),
                tenant: t,
            })
            .collect();
        out.extend((loaded.desired.frozen.iter()).map(|(t, why)| TenantPlan::frozen(t, why)));
        Ok(out)
    }

    /// The steps from what runs of `inst`'s tenant now to `inst`.
    pub async fn preview_instance(&self, inst: &Instance) -> Result<TenantPlan, PassError> {
        let t = &inst.tenant;
        let mut observed = self
            .svc
            .runtime()
            .inventory_of(&self.host().namespace, t)
            .await?;
        self.svc.pulls().check_pins(&mut observed);
        self.svc.probes().overlay(&mut observed);
        let steps = self.plan_tenant(inst, &observed);
        Ok(TenantPlan {
            tenant: t.clone(),
            steps: steps.iter().map(planned_step).collect(),
            waits: self.waits(t),
        })
    }

    /// The steps removing `t`'s file would cause (`berth rm t`): its containers and network
    /// removed; with `purge`, its volumes, databases and files too.
    pub async fn preview_removal(&self, t: &str, purge: bool) -> Result<TenantPlan, PassError> {
        let observed = self
            .svc
            .runtime()
            .inventory_of(&self.host().namespace, t)
            .await?;
        let mut rec = super::plan::Recorded::default();
        if purge {
            rec.purge.insert(t.into());
        }
        let steps = super::plan::plan_removal(t, &observed, &rec);
        Ok(TenantPlan {
            tenant: t.into(),
            steps: steps.iter().map(planned_step).collect(),
            waits: self.waits(t),
        })
    }

    /// Why a pass would leave `t` alone now, if it would.
    fn waits(&self, t: &str) -> Option<String> {
        if self.is_held(t) {
            return Some(
                "held by an operation (an upgrade's turn, a restore or a move): applied when it ends"
                    .into(),
            );
        }
        let next = self
            .backoff
            .lock()
            .expect("backoff lock")
            .get(t)
            .map(|b| b.next_attempt)
            .filter(|at| *at > Instant::now())?;
        let error = self.failures.lock().expect("failures lock").get(t).cloned();
        Some(format!(
            "backing off after a failure{}: tried again in {} s",
            error.map(|e| format!(" ({e})")).unwrap_or_default(),
            (next - Instant::now()).as_secs() + 1
        ))
    }
}

/// `step` as the API shows it: its kind, what it acts on, and in words.
pub(super) fn planned_step(step: &Step) -> PlannedStep {
    let (kind, target, says) = match step {
        Step::CreateNetwork => ("create_network", None, "create the tenant's network".into()),
        Step::CreateVolume(v) => ("create_volume", Some(v), format!("create volume {v}")),
        Step::CheckVolumesFit(_) => (
            "check_volumes_fit",
            None,
            "check the volumes' data fits the tenant's disk".into(),
        ),
        Step::GrowDisk => (
            "grow_disk",
            None,
            "grow the tenant's disk (its containers stopped)".into(),
        ),
        Step::MoveVolume(m) => (
            "move_volume",
            Some(&m.volume),
            format!("move volume {} onto the tenant's disk", m.volume),
        ),
        Step::PullImage(i) => ("pull_image", Some(i), format!("pull image {i}")),
        Step::WriteFiles => (
            "write_files",
            None,
            "write missing secrets and render the config files".into(),
        ),
        Step::EnsureSharedDatabase => (
            "ensure_shared_database",
            None,
            "create the tenant's role and database on the shared server".into(),
        ),
        Step::RemoveContainer(c) => ("remove_container", Some(c), format!("remove container {c}")),
        Step::CreateContainer(svc) => (
            "create_container",
            Some(svc),
            format!("create the container of service {svc}"),
        ),
        Step::StartContainer(c) => ("start_container", Some(c), format!("start container {c}")),
        Step::StopContainer(c) => ("stop_container", Some(c), format!("stop container {c}")),
        Step::RemoveNetwork(n) => ("remove_network", Some(n), format!("remove network {n}")),
        Step::RemoveVolume(v) => (
            "remove_volume",
            Some(v),
            format!("remove volume {v} and its data"),
        ),
        Step::DropSharedDatabase => (
            "drop_shared_database",
            None,
            "drop the tenant's database and role on the shared servers (if it has them)".into(),
        ),
        Step::PurgeFiles => (
            "purge_files",
            None,
            "remove the tenant's secrets, rendered files and allocation".into(),
        ),
    };
    PlannedStep {
        step: kind.into(),
        target: target.cloned(),
        says,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_is_shown_by_its_kind_and_target_in_words() {
        let s = planned_step(&Step::CreateContainer("app".into()));
        assert_eq!(s.step, "create_container");
        assert_eq!(s.target.as_deref(), Some("app"));
        assert_eq!(s.says, "create the container of service app");
        let s = planned_step(&Step::StartContainer("b-acme-app".into()));
        assert_eq!(s.says, "start container b-acme-app");
        // The kind is the step's name as the plan serializes it.
        for step in [
            Step::CreateNetwork,
            Step::PullImage("x".into()),
            Step::RemoveVolume("v".into()),
            Step::PurgeFiles,
        ] {
            let v = serde_json::to_value(&step).unwrap();
            assert_eq!(v["step"], planned_step(&step).step, "{step:?}");
        }
    }
}
