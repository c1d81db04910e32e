//! What the reconciler publishes after each pass and the rest of the agent reads: each
//! instance's status and phase, and the pass's report.

use crate::{runtime::ObservedContainer, spec::instance::RunState};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Every container runs and none reports unhealthy or starting.
    Running,
    /// Waiting for an image pull (progress in `pull`); nothing of the tenant is made before.
    Pulling,
    Starting,
    /// Idle past its plan's `sleep_after`: containers stopped until a request wakes it.
    Asleep,
    /// Every container runs but a probe (or an opt-in healthcheck) fails: `error` says which.
    Unhealthy,
    Provisioning,
    Stopped,
    Suspended,
    /// The last attempt failed; retried with backoff.
    Failing,
    /// The instance file (or its template) is invalid; nothing is changed until it is fixed.
    Invalid,
    /// No instance file; containers are being removed.
    Removing,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InstanceStatus {
    pub tenant: String,
    pub template: Option<String>,
    pub version: Option<String>,
    /// The tenant's plan (the host's default plan when its file names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    /// The operator's labels from the instance file (a frozen tenant's: its last valid file's).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    pub desired: Option<RunState>,
    pub phase: Phase,
    /// Where the edge reaches its web app: the web container's fixed address on the tenant's
    /// own network, or (swarm) its node and node port. Known while it sleeps too.
    #[schema(value_type = Option<String>, example = "10.240.0.14:8080")]
    pub address: Option<std::net::SocketAddr>,
    pub domains: Vec<String>,
    /// The template's web service: what `berth logs` shows by default.
    pub web_service: Option<String>,
    pub error: Option<String>,
    pub containers: Vec<ObservedContainer>,
    /// An image pull the tenant waits for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<crate::images::Progress>,
    /// berth's health probes of its running containers, with their latest result.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub probes: Vec<crate::probe::ProbeStatus>,
}

#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PassReport {
    pub pass: u64,
    pub duration_ms: f64,
    pub instances: usize,
    pub tenants_changed: usize,
    pub steps: usize,
    pub mutations: u64,
    /// Tenants failing now (in backoff or failed in this pass).
    pub failures: usize,
    /// Tenants whose apply (or disk) failed in this pass.
    pub errors: usize,
}

/// What a pass would do to one tenant, without doing it (`berth diff`, a write's `dry_run`).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct TenantPlan {
    pub tenant: String,
    /// The steps in the order a pass would apply them.
    pub steps: Vec<PlannedStep>,
    /// Why a pass would not apply them now (held by an operation, backing off after a
    /// failure, its file invalid); None: the next pass applies them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits: Option<String>,
}

impl TenantPlan {
    /// A tenant whose file is invalid (`why`): no steps, it keeps its last valid state.
    pub fn frozen(tenant: &str, why: &str) -> TenantPlan {
        TenantPlan {
            tenant: tenant.into(),
            steps: vec![],
            waits: Some(format!(
                "its file is invalid ({why}): it keeps its last valid state until the file is fixed"
            )),
        }
    }
}

/// One step of a `TenantPlan`.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct PlannedStep {
    /// The step's kind (`create_container`, `pull_image`, …).
    pub step: String,
    /// What it acts on (a container, network, volume or image), when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The step in words.
    pub says: String,
}

/// What the API reads: the latest status of each instance and of the last pass.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Board {
    pub instances: BTreeMap<String, InstanceStatus>,
    pub spec_errors: Vec<String>,
    pub last_pass: Option<PassReport>,
    pub engine_error: Option<String>,
}

impl InstanceStatus {
    /// The phase as its API word (`running`, `asleep` …).
    pub fn phase_word(&self) -> String {
        serde_json::to_value(self.phase)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    }

    /// Whether the selector takes this tenant. One with no instance file known (being removed,
    /// or left over) is taken by the phase alone, never by labels, app, plan or version.
    pub fn selected(&self, s: &crate::desired::selector::Selector) -> bool {
        let by_file =
            !s.labels.is_empty() || s.app.is_some() || s.plan.is_some() || s.version.is_some();
        if self.template.is_none() && by_file {
            return false;
        }
        let phase = self.phase_word();
        s.matches(&crate::desired::selector::Subject {
            app: self.template.as_deref(),
            plan: self.plan.as_deref(),
            version: self.version.as_deref(),
            phase: Some(&phase),
            labels: &self.labels,
        })
    }
}
