//! The commands and their arguments, each argument checked by its parser before any request:
//! `../acme` or `acme?x=1` is refused here, with the reason, instead of reaching the agent.

use super::{Output, access, edge, export, fleet, instances};
use crate::desired::Invalid;
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the agent (reconciler + API).
    Serve,
    /// Print a shell completion script: `berth completions bash > /etc/bash_completion.d/berth`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Check templates and instances offline; non-zero exit on any problem.
    Validate {
        /// Directory holding berth.yaml and/or templates/ and instances/ (default: .).
        dir: Option<PathBuf>,
    },
    /// List instances.
    Ls {
        #[command(flatten)]
        select: super::select::Select,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// What the next reconcile pass would do to each tenant, step by step, without doing it
    /// (exit 1 when anything is pending).
    Diff {
        #[arg(value_parser = tenant_arg)]
        tenants: Vec<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show one instance.
    Status {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Add an instance (writes instances/<tenant>.yaml).
    Add(instances::AddArgs),
    /// Remove an instance; volumes and secrets are kept unless --purge.
    Rm {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(long)]
        purge: bool,
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop an instance's containers (kept, restartable).
    Stop {
        #[arg(value_parser = tenant_arg)]
        tenant: Option<String>,
        #[command(flatten)]
        select: super::select::Select,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Start a stopped or suspended instance.
    Start {
        #[arg(value_parser = tenant_arg)]
        tenant: Option<String>,
        #[command(flatten)]
        select: super::select::Select,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop an instance and mark it suspended.
    Suspend {
        #[arg(value_parser = tenant_arg)]
        tenant: Option<String>,
        #[command(flatten)]
        select: super::select::Select,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Same as start, for a suspended instance.
    Resume {
        #[arg(value_parser = tenant_arg)]
        tenant: Option<String>,
        #[command(flatten)]
        select: super::select::Select,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Export tenants for another engine (offline, from the files): `berth export kubernetes`.
    Export {
        #[command(subcommand)]
        cmd: export::ExportCmd,
    },
    /// Restart a running instance's containers (database first).
    Restart {
        #[arg(value_parser = tenant_arg)]
        tenant: Option<String>,
        #[command(flatten)]
        select: super::select::Select,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Swarm mode: move a tenant to another node, rebuilt there from its latest backup (for a
    /// node that is gone; its volumes stay on the old node).
    Move {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        /// A swarm node (its hostname, as `berth capacity` lists it), or another berth host's
        /// API (`https://HOST:PORT`; plain `http://` on loopback only).
        #[arg(long)]
        to: String,
        /// Swarm: restore the latest backup there (required: berth does not copy volumes
        /// between nodes).
        #[arg(long)]
        from_backup: bool,
        /// Another host: the backup repository both hosts have (its name in berth.yaml).
        #[arg(long)]
        repo: Option<String>,
        /// Another host: a file holding an operator token of its API.
        #[arg(long)]
        to_token_file: Option<std::path::PathBuf>,
        /// Another host: CA certificate(s) for its https API (default: the system's roots).
        #[arg(long)]
        to_ca_file: Option<std::path::PathBuf>,
        /// Another host: its edge's HTTPS listener as HOST:PORT (default: the API's host and
        /// the edge's port there).
        #[arg(long)]
        to_edge: Option<String>,
        /// Start it and return at once, printing the operation (follow it with `berth op ID`).
        #[arg(long)]
        detach: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Set template parameters of an instance (key=value …), checked against its template.
    Set {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(value_parser = parse_kv)]
        pairs: Vec<(String, String)>,
        /// Drop a parameter back to the template's default (repeatable).
        #[arg(long)]
        unset: Vec<String>,
        /// Check the change and show the steps it would cause; write nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Show an instance's logs.
    Logs {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(short, long)]
        follow: bool,
        #[arg(long)]
        service: Option<String>,
        #[arg(long, default_value_t = 200)]
        tail: usize,
    },
    /// Run a reconcile pass now and print its report.
    Reconcile,
    /// TLS certificates of routed domains.
    Cert {
        #[command(subcommand)]
        cmd: edge::CertCommand,
    },
    /// Custom domains: claim, prove, list.
    Domain {
        #[command(subcommand)]
        cmd: edge::DomainCommand,
    },
    /// Print the internal CA certificate (PEM), to trust berth's certificates in tests.
    Ca,
    /// Upgrade an app's tenants in waves (`berth upgrade APP --to V`), or
    /// `berth upgrade status|pause|resume|abort`.
    Upgrade(fleet::UpgradeArgs),
    /// Return a tenant to the version it had before its last upgrade.
    Rollback {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(long)]
        wait: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Back a tenant up now (database dump, volumes, files), or list its backups;
    /// `berth backup verify T:ID` restores a backup into a scratch tenant, checks its health
    /// and removes it; `berth backup prune --repo R` forgets the off-host snapshots each plan's
    /// `offsite_keep` does not keep (run where the repository may be written: not the host of
    /// an append-only repository; reads the host config, needs no agent).
    Backup {
        #[arg(value_parser = tenant_arg)]
        tenant: Option<String>,
        #[command(flatten)]
        select: super::select::Select,
        /// With `verify`: the backup to verify, as TENANT:ID.
        backup: Option<String>,
        #[arg(long)]
        list: bool,
        /// With `prune`: the repository (a name under `backup_repositories:`).
        #[arg(long)]
        repo: Option<String>,
        /// With `prune`: reach the repository here instead of its configured url (the
        /// storage itself, or a REST server that is not append-only).
        #[arg(long)]
        url: Option<String>,
        /// With `prune`: say what would be forgotten, forget nothing.
        #[arg(long)]
        dry_run: bool,
        /// Start it and return at once, printing the operation (follow it with `berth op ID`).
        #[arg(long)]
        detach: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Images tenants use or berth pulled (reference, id, size, digest, tenants);
    /// `berth images prune` removes the ones berth pulled that no tenant names.
    Images {
        #[arg(value_parser = ["prune"])]
        action: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// API tokens: operator, tenant-admin or tenant-viewer, bound to tenants, with an expiry.
    Token {
        #[command(subcommand)]
        cmd: access::TokenCmd,
    },
    /// Who changed what: API changes, refusals and automatic actions (newest last).
    Audit {
        #[arg(long, value_parser = tenant_arg)]
        tenant: Option<String>,
        /// Only rows this recent, e.g. 1h, 7d.
        #[arg(long, value_parser = access::since)]
        since: Option<u64>,
        /// The newest this many rows (default 1000).
        #[arg(long)]
        limit: Option<usize>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Host memory, disk and CPUs: total, what admission allows, what instances reserve, what is used.
    Capacity {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Live per-tenant figures: CPU, memory, pids, disk, network, restarts, OOM kills, requests.
    Top {
        /// Print one table and exit.
        #[arg(long)]
        once: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
        /// Refresh period.
        #[arg(long, default_value = "2s", value_parser = crate::spec::units::parse_duration)]
        interval: std::time::Duration,
    },
    /// A tenant's mail at the shared relay (`berth mail T`: limits, use, sent, deferred,
    /// bounced, refused, queued, last errors), or the DNS records to publish for its DKIM keys
    /// (`berth mail dns T`).
    Mail {
        /// The tenant, or `dns`.
        first: String,
        /// With `dns`: the tenant.
        second: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// A long operation (backup, restore, clone, verify, move) the agent runs: its state,
    /// result or error; `--wait` follows it to its end.
    Op {
        id: String,
        #[arg(long)]
        wait: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// A tenant's scheduled jobs: last runs, exit status, duration, next run.
    Jobs {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Restore a tenant in place from one of its backups (`--from ID`), or create a new tenant
    /// as a clone of another's backup (`--from TENANT:ID`; new secrets, no custom domains).
    Restore {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(long, value_parser = backup_arg)]
        from: String,
        /// Start it and return at once, printing the operation (follow it with `berth op ID`).
        #[arg(long)]
        detach: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Whole-host recovery: bring back every tenant of the repository's newest inventory of
    /// this host (its identity, secrets, instance file, proven domains, database and volumes
    /// from its newest snapshot); tenants that exist here are left alone. Exits 1 when any
    /// tenant failed (it is removed whole: run the command again to retry it).
    Recover {
        /// The repository (a name under `backup_repositories:` in berth.yaml).
        #[arg(long)]
        repo: String,
        /// Only this tenant of the inventory (repeatable).
        #[arg(long = "tenant", value_parser = tenant_arg)]
        tenants: Vec<String>,
        /// From this inventory of the host (its snapshot id, or 8+ of its first hex digits;
        /// `restic snapshots --tag berth-inventory` lists them) instead of the newest.
        #[arg(long, value_parser = snapshot_arg)]
        inventory: Option<String>,
        /// Start it and return at once, printing the operation (follow it with `berth op ID`).
        #[arg(long)]
        detach: bool,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// A tenant argument is checked before any request: `../acme` or `acme?x=1` is refused here,
/// with the reason, instead of reaching the agent.
pub fn tenant_arg(s: &str) -> Result<String, Invalid> {
    crate::api::params::tenant(s).map(|()| s.to_string())
}

pub fn domain_arg(s: &str) -> Result<String, Invalid> {
    crate::desired::instance::check_domain(s).map(|()| s.to_string())
}

pub fn backup_arg(s: &str) -> Result<String, Invalid> {
    crate::api::params::backup_ref(s).map(|()| s.to_string())
}

pub fn snapshot_arg(s: &str) -> Result<String, Invalid> {
    crate::desired::repository::check_snapshot_id(s).map(|()| s.to_string())
}

pub(super) fn parse_kv(s: &str) -> Result<(String, String), Invalid> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Invalid::NotKeyValue(s.into()))
}

/// `0.1` or `10%`: a share above 0 and at most 1.
pub fn failure_ratio(s: &str) -> Result<f64, String> {
    let (n, scale) = match s.strip_suffix('%') {
        Some(p) => (p, 100.0),
        None => (s, 1.0),
    };
    let r = n
        .trim()
        .parse::<f64>()
        .map(|v| v / scale)
        .map_err(|_| format!("{s:?} is not a share (0.1) or a percentage (10%)"))?;
    if r > 0.0 && r <= 1.0 {
        Ok(r)
    } else {
        Err(format!("{s:?} is not above 0 and at most 1 (100%)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_ratio_is_a_share_or_a_percentage_above_zero_and_at_most_all() {
        assert_eq!(failure_ratio("0.1"), Ok(0.1));
        assert_eq!(failure_ratio("25%"), Ok(0.25));
        assert_eq!(failure_ratio("100%"), Ok(1.0));
        for bad in ["0", "1.5", "-0.1", "NaN", "inf", "ten", "%", "101%"] {
            assert!(failure_ratio(bad).is_err(), "{bad}");
        }
    }
}
