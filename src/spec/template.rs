//! Raw app template files (`templates/<app>/template.yaml`), as written: Docker Compose key names
//! for services, plus berth's own sections for the web entry, database, parameters and versions.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub web: WebFile,
    #[serde(default)]
    pub database: Option<DatabaseFile>,
    /// Asks for the host's shared mail relay: the secret that holds the tenant's SASL password.
    #[serde(default)]
    pub mail: Option<MailFile>,
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterFile>,
    #[serde(default)]
    pub secrets: BTreeMap<String, SecretFile>,
    #[serde(default)]
    pub configs: BTreeMap<String, ConfigFile>,
    /// Named volumes, as Compose's top-level `volumes:` (values may be empty).
    #[serde(default)]
    pub volumes: BTreeMap<String, Option<VolumeFile>>,
    pub services: BTreeMap<String, ServiceFile>,
    pub versions: BTreeMap<String, VersionFile>,
    /// Version for new instances that name none; defaults to the last listed version.
    #[serde(default)]
    pub default_version: Option<String>,
    #[serde(default)]
    pub jobs: BTreeMap<String, JobFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    pub service: String,
    pub port: u16,
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// For path mounts (`example.com/acme/…`): `strip` the prefix before the app sees the path
    /// (the default), or `keep` it for apps configured with their base path.
    #[serde(default)]
    pub path_prefix: PathPrefix,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PathPrefix {
    #[default]
    Strip,
    Keep,
}

fn default_health_path() -> String {
    "/".into()
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseMode {
    #[default]
    Sidecar,
    Shared,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DatabaseEngine {
    Postgres,
    Mariadb,
    Mysql,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailFile {
    /// A secret of this template (`secrets:`): berth's relay accepts it as the tenant's password.
    pub password_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub engine: DatabaseEngine,
    #[serde(default)]
    pub mode: DatabaseMode,
    /// The service that runs the database in `sidecar` mode.
    #[serde(default)]
    pub service: Option<String>,
    /// Database and user names; rendered with the instance context (`{{ tenant }}` works).
    #[serde(default = "default_db_name")]
    pub name: String,
    #[serde(default = "default_db_name")]
    pub user: String,
    /// The generated secret holding the password.
    pub password_secret: String,
    #[serde(default = "default_db_port")]
    pub port: u16,
}

fn default_db_name() -> String {
    "app".into()
}
fn default_db_port() -> u16 {
    5432
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Email,
    Color,
    Integer,
    Boolean,
    Enum,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterFile {
    #[serde(rename = "type")]
    pub kind: ParameterType,
    #[serde(default)]
    pub default: Option<serde_yaml::Value>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub description: String,
    /// A regular expression the whole value must match (strings only).
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub max_length: Option<usize>,
    #[serde(default)]
    pub min: Option<i64>,
    #[serde(default)]
    pub max: Option<i64>,
    /// Allowed values for `enum`.
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretEncoding {
    #[default]
    Hex,
    Base64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretFile {
    /// Random bytes drawn from the OS CSPRNG (at least 16).
    #[serde(default = "default_secret_bytes")]
    pub bytes: usize,
    #[serde(default)]
    pub encoding: SecretEncoding,
}

fn default_secret_bytes() -> usize {
    32
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// A minijinja template file, relative to the template's directory.
    #[serde(default)]
    pub template: Option<String>,
    /// Or the template text inline.
    #[serde(default)]
    pub content: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct VolumeFile {}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    /// Image per service; services not named keep their own `image`.
    #[serde(default)]
    pub images: BTreeMap<String, String>,
    /// Command run in the web service before the new version starts (used by upgrades).
    #[serde(default)]
    pub migration: Option<StringOrList>,
    #[serde(default)]
    pub strategy: Option<UpgradeStrategy>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum UpgradeStrategy {
    BlueGreen,
    Recreate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// Five-field cron expression.
    pub schedule: String,
    pub service: String,
    pub command: StringOrList,
    /// Longest a run may take before it is killed (default 10m).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Wake a sleeping tenant for this job (default: skip runs while asleep).
    #[serde(default)]
    pub wake: bool,
}

/// Compose accepts both `command: a b c` and `command: [a, b, c]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum StringOrList {
    String(String),
    List(Vec<String>),
}

/// Compose accepts `environment:` as a map or as a list of `KEY=value`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Environment {
    Map(BTreeMap<String, Option<serde_yaml::Value>>),
    List(Vec<String>),
}

/// Compose accepts `depends_on:` as a list or as a map of service → condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum DependsOn {
    List(Vec<String>),
    Map(BTreeMap<String, serde_yaml::Value>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckFile {
    #[serde(default)]
    pub test: Option<StringOrList>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfigRef {
    pub source: String,
    pub target: String,
}

/// One service, with Compose's key names and meaning for the subset berth supports.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceFile {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub command: Option<StringOrList>,
    #[serde(default)]
    pub entrypoint: Option<StringOrList>,
    #[serde(default)]
    pub environment: Option<Environment>,
    /// Short syntax `volume:/path[:ro]`; the volume must be declared at the top level.
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `/path` or `/path:size=64m,mode=1777`.
    #[serde(default)]
    pub tmpfs: Vec<String>,
    #[serde(default)]
    pub healthcheck: Option<HealthcheckFile>,
    #[serde(default)]
    pub user: Option<String>,
    /// Numeric `uid:gid` owning this service's secret and config files, for images that start
    /// as root and read them after dropping to another user (the official `mariadb` image
    /// reads its `*_FILE`s as mysql, 999:999). Default: `user`, else root.
    #[serde(default)]
    pub files_owner: Option<String>,
    #[serde(default)]
    pub read_only: bool,
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub depends_on: Option<DependsOn>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub stop_grace_period: Option<String>,
    /// Generated secrets mounted at `/run/secrets/<name>`.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub configs: Vec<ServiceConfigRef>,
    /// berth: this service's share of the instance's memory/CPU/pids (default 1).
    #[serde(default)]
    pub resource_share: Option<u32>,
}
