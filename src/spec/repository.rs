//! Raw `backup_repositories:` entries: restic repositories tenants' backups are copied to.

use serde::Deserialize;
use std::path::PathBuf;

/// One off-host backup repository, in the restic format.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryFile {
    /// restic's repository string: an absolute path, `rest:http(s)://host:port/path`,
    /// `s3:http(s)://host:port/bucket[/prefix]` or `sftp:user@host:/path`.
    pub url: String,
    /// The file holding the repository key's password (mode 0600); never in this file.
    pub password_file: PathBuf,
    /// `KEY=VALUE` lines the backend needs (`AWS_ACCESS_KEY_ID`, `RESTIC_REST_USERNAME`, …),
    /// mode 0600.
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    /// Only tenants on these plans; default every tenant (with `tenants`, either matches).
    #[serde(default)]
    pub plans: Vec<String>,
    /// Only these tenants; default every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// How long one copy to this repository may take; default 1h.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Make the repository at the first copy when none is there (default false: a missing
    /// repository is an error, so an unmounted disk or a mistyped bucket is never papered
    /// over with a new, empty repository). A path on the state directory's own filesystem is
    /// never made.
    #[serde(default)]
    pub create: bool,
    /// `restic check` of this repository on a schedule, reading part of the data back.
    #[serde(default)]
    pub check: Option<CheckFile>,
}

/// When a repository is checked, and how much of its data each check reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    /// Cron expression (UTC), five fields or six with seconds first.
    pub schedule: String,
    /// restic's `--read-data-subset`: `N%` or `n/t`; default `5%`.
    #[serde(default)]
    pub read_data: Option<String>,
}
