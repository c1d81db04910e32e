//! The validated desired state of instances: what reconcile converges Docker to.

use super::limits::Limits;
use crate::spec::{
    instance::RunState,
    template::{DatabaseEngine, DatabaseMode, SecretEncoding},
};
use serde::Serialize;
use std::{collections::BTreeMap, time::Duration};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    pub tenant: String,
    pub template: String,
    pub version: String,
    pub state: RunState,
    pub domains: Vec<String>,
    /// Names that redirect to the primary domain.
    pub aliases: Vec<String>,
    pub paths: Vec<PathMount>,
    pub plan: Option<String>,
    /// The operator's labels, for selectors; nothing of the tenant's containers depends on them.
    pub labels: BTreeMap<String, String>,
    pub limits: Limits,
    pub quota: super::quota::Quota,
    pub backups: super::backups::BackupPolicy,
    /// Destinations allowed beyond the default egress policy (plan or `limits.egress`).
    pub egress: Vec<super::egress::Allow>,
    /// Idle this long (no request at the edge), the tenant sleeps until a request wakes it.
    pub sleep_after: Option<Duration>,
    /// Share of `limits.memory` admission counts for it when it may sleep (None: all).
    pub sleep_memory: Option<f64>,
    pub parameters: BTreeMap<String, String>,
    pub web: Web,
    pub database: Option<Database>,
    /// In start order (dependencies first).
    pub services: Vec<Service>,
    pub volumes: Vec<String>,
    pub secrets: BTreeMap<String, SecretSpec>,
    /// Config name → rendered text.
    pub configs: BTreeMap<String, String>,
    /// Scheduled commands from the template, by name.
    pub jobs: BTreeMap<String, Job>,
    /// The tenant's account at the shared mail relay (its template asks for mail and the host
    /// runs a relay).
    pub mail: Option<Mail>,
}

/// A tenant's login at the shared mail relay and what it may send.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mail {
    /// The SASL login: the tenant's name.
    pub user: String,
    /// The template's secret holding the password.
    pub password_secret: String,
    /// The domain the app is told to send from: its subdomain (else its first custom domain).
    pub from_domain: String,
    #[serde(skip)]
    pub limits: super::mail::MailLimits,
}

/// A command berth runs inside one of the tenant's containers on a cron schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// Cron expression: five fields, or six with seconds first.
    pub schedule: String,
    pub service: String,
    pub command: Vec<String>,
    /// A run still going after this is killed and recorded as timed out.
    pub timeout: std::time::Duration,
    /// Runs wake a sleeping tenant (else they are skipped while it sleeps).
    pub wake: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Web {
    pub service: String,
    pub port: u16,
    pub health_path: String,
    /// Path mounts strip their prefix before the request reaches the app.
    pub strip_prefix: bool,
}

/// The tenant mounted at `https://<host><prefix>/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathMount {
    pub host: String,
    /// `/segment`, without a trailing slash.
    pub prefix: String,
}

impl PathMount {
    /// The key under which domain claims are checked for conflicts.
    pub fn key(&self) -> String {
        format!("{}{}", self.host, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Database {
    /// Shared mode: the host's server image, which the tenant needs before anything is made.
    pub server_image: Option<String>,
    pub engine: DatabaseEngine,
    pub mode: DatabaseMode,
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password_secret: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SecretSpec {
    pub bytes: usize,
    pub encoding: SecretEncoding,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    pub name: String,
    pub image: String,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, String>,
    pub volumes: Vec<VolumeMount>,
    /// Path → tmpfs options.
    pub tmpfs: BTreeMap<String, String>,
    pub healthcheck: Option<Healthcheck>,
    pub user: Option<String>,
    /// Numeric uid:gid the service runs as, for owning its secret and config files.
    pub file_owner: (u32, u32),
    pub read_only: bool,
    pub cap_add: Vec<String>,
    pub depends_on: Vec<String>,
    pub working_dir: Option<String>,
    pub stop_grace: Option<Duration>,
    pub secrets: Vec<String>,
    /// (config name, target path)
    pub configs: Vec<(String, String)>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VolumeMount {
    pub volume: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Healthcheck {
    pub test: Vec<String>,
    pub interval: Duration,
    pub timeout: Duration,
    pub retries: u32,
    pub start_period: Duration,
}

impl Instance {
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// Everything desired, plus the tenants whose files are broken: those are left exactly as they
/// are (never removed, never changed) until their file is fixed.
#[derive(Debug, Clone, Default)]
pub struct Desired {
    pub instances: BTreeMap<String, Instance>,
    pub frozen: BTreeMap<String, String>,
    /// For frozen tenants, the last valid state this agent saw: the edge keeps serving it
    /// (routes, certificates, limits) until the file is fixed or removed.
    pub last_valid: BTreeMap<String, Instance>,
}

impl Instance {
    /// This instance as selectors see it (no phase: files do not have one).
    pub fn subject(&self) -> super::selector::Subject<'_> {
        super::selector::Subject {
            app: Some(&self.template),
            plan: self.plan.as_deref(),
            version: Some(&self.version),
            phase: None,
            labels: &self.labels,
        }
    }
}
