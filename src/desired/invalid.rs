//! Why a value in a spec file is refused: one variant per rule, each with what broke it. The
//! loaders put the text after `file:line:col: field:`; the API and the CLI answer with it.

use crate::spec::units::UnitError;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Invalid {
    // Names.
    #[error("{0:?} is not a valid domain name (lowercase labels separated by dots)")]
    NotDomain(String),
    #[error("{0:?} is an IP address, not a domain name")]
    AddressNotDomain(String),
    #[error(
        "{domain:?} is the host's base domain {base:?} or under it; tenants get their own subdomain {tenant}.{base} and may not claim others"
    )]
    UnderBase {
        domain: String,
        base: String,
        tenant: String,
    },
    #[error(
        "{domain:?} is the shared domain {shared:?} or under it; tenants are mounted there by path (paths:), never by name"
    )]
    UnderShared { domain: String, shared: String },
    #[error(
        "{0:?} is not a registry host (host or host:port, e.g. registry.example.com or 127.0.0.1:5000)"
    )]
    NotRegistry(String),
    #[error("{0:?} must be <shared domain>/<segment>")]
    NotPathMount(String),
    #[error("{host:?} is not one of this host's shared domains (proxy.shared_domains: {shared})")]
    NotSharedDomain { host: String, shared: String },
    #[error("path segment {0:?} must be lowercase letters, digits and inner hyphens")]
    BadSegment(String),
    #[error(
        "{0:?} is not a valid tenant name (a DNS label of at most 40 characters: a-z, 0-9, inner -)"
    )]
    NotTenant(String),
    #[error("{0:?} is not a backup reference (ID or TENANT:ID)")]
    NotBackupRef(String),
    #[error("{0:?} is not a snapshot id (8 to 64 lowercase hex digits)")]
    NotSnapshotId(String),
    #[error("{text:?} {why} (a restic repository: /path, rest:URL, s3:URL or sftp:HOST:PATH)")]
    NotRepository { text: String, why: &'static str },
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),

    // Networks.
    #[error("{text:?} {why} (expected CIDR, CIDR:PORT or CIDR:PORT/udp)")]
    BadAllow { text: String, why: &'static str },
    #[error("{0:?} is not an IP network (a.b.c.d/n)")]
    NotNetwork(String),
    #[error("{0:?} has an invalid prefix length")]
    BadPrefix(String),
    #[error("{0:?} is not a CIDR (a.b.c.d/n)")]
    NotCidr(String),
    #[error("{0:?} is not an IPv4 address")]
    NotIpv4(String),
    #[error("{0:?} is not a prefix length")]
    NotPrefixLength(String),
    #[error("subnet /{subnet} does not fit in pool /{pool} (subnets are /16 to /28)")]
    SubnetDoesNotFit { subnet: u8, pool: u8 },
    #[error("{0} has host bits set")]
    HostBits(String),

    // Templates.
    #[error("{0:?} is not volume:/path[:ro]")]
    NotVolume(String),
    #[error("{0:?} mounts a host path; only named volumes are allowed")]
    HostPath(String),
    #[error("volume {0:?} is not declared under volumes")]
    UndeclaredVolume(String),
    #[error("target {0:?} must be an absolute path")]
    RelativeTarget(String),
    #[error("mode {0:?} must be ro or rw")]
    BadMode(String),
    #[error("depends_on has a cycle: {path} -> {back_to}")]
    Cycle { path: String, back_to: String },
    #[error(
        "template {template:?} uses a shared {engine:?} database but the host config has no {section} section"
    )]
    NoSharedServer {
        template: String,
        engine: crate::spec::template::DatabaseEngine,
        section: &'static str,
    },
    #[error("healthcheck needs a test")]
    NoHealthTest,
    #[error("environment values must be text, numbers or booleans")]
    EnvNotScalar,
    #[error("environment {0} has no value (host environment is not passed through)")]
    EnvNoValue(String),
    #[error("environment entry {0:?} is not KEY=value")]
    EnvNotPair(String),
    #[error("environment {key}: {why}")]
    Env { key: String, why: Box<Invalid> },
    #[error("{0}")]
    Render(String),

    // Schedules and sizes.
    #[error(
        "{0:?} is not a cron expression: five fields (minute hour day month weekday), or six with seconds first"
    )]
    CronFields(String),
    #[error("{expr:?} is not a valid cron expression: {why}")]
    Cron { expr: String, why: String },
    #[error("{0:?} is out of range (1s..=24h)")]
    TimeoutRange(String),
    #[error(transparent)]
    Unit(#[from] UnitError),

    // Parameters.
    #[error("must be a single value (text, number or boolean)")]
    NotScalar,
    #[error("{0:?} is not an email address")]
    NotEmail(String),
    #[error("{0:?} is not a colour like #3366cc")]
    NotColour(String),
    #[error("{0:?} is not an integer")]
    NotInteger(String),
    #[error("{n} is outside {min}..={max}")]
    OutOfRange { n: i64, min: i64, max: i64 },
    #[error("{0:?} is not true or false")]
    NotBoolean(String),
    #[error("{text:?} is not one of {values}")]
    NotOneOf { text: String, values: String },
    #[error("is longer than {0} characters")]
    TooLong(usize),
    #[error("must not contain control characters (newlines, tabs …)")]
    ControlCharacters,
    #[error("{text:?} does not match {pattern}")]
    NoMatch { text: String, pattern: String },
    #[error("invalid pattern: {0}")]
    BadPattern(String),
}

impl Invalid {
    /// A template error as its line and detail (the template's own text is the tenant's, so
    /// the error keeps minijinja's words, not its type).
    pub fn render(e: &minijinja::Error) -> Invalid {
        Invalid::Render(match e.line() {
            Some(l) => format!("line {l}: {}", e.detail().unwrap_or(&e.kind().to_string())),
            None => e.to_string(),
        })
    }
}
