//! The `berth` command line: a thin client of the agent's API (plus offline `validate` and
//! the agent itself, `serve`).

pub mod access;
pub mod client;
pub mod edge;
pub mod export;
pub mod fleet;
pub mod instances;
pub mod mail;
pub mod ops;
pub mod progress;
mod reads;
pub mod table;
pub mod top;
pub mod validate;

use crate::desired::Invalid;
use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use client::{Client, Target};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "berth",
    version,
    about = "Fully separated per-tenant app instances on one Docker host"
)]
pub struct Cli {
    /// Host config file.
    #[arg(long, global = true, env = "BERTH_CONFIG")]
    pub config: Option<PathBuf>,
    /// API socket (default: the host config's api.socket, else /run/berth/berth.sock).
    #[arg(long, global = true, env = "BERTH_SOCKET")]
    pub socket: Option<PathBuf>,
    /// API over TCP instead of the socket: https://HOST:PORT, or 127.0.0.1:PORT in plain
    /// text on loopback (needs --token-file).
    #[arg(long, global = true, env = "BERTH_API")]
    pub api: Option<String>,
    #[arg(long, global = true, env = "BERTH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate(s) to trust for https --api (berth's own: <state>/certs/ca/ca.pem);
    /// default: the system's roots.
    #[arg(long, global = true, env = "BERTH_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Output {
    Table,
    Json,
}

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
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop an instance's containers (kept, restartable).
    Stop {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Start a stopped or suspended instance.
    Start {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop an instance and mark it suspended.
    Suspend {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Same as start, for a suspended instance.
    Resume {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
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
        tenant: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Swarm mode: move a tenant to another node, rebuilt there from its latest backup (for a
    /// node that is gone; its volumes stay on the old node).
    Move {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        /// The node to move to (its hostname, as `berth capacity` lists it).
        #[arg(long)]
        to: String,
        /// Restore the latest backup there (required: berth does not copy volumes between nodes).
        #[arg(long)]
        from_backup: bool,
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
    /// and removes it.
    Backup {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        /// With `verify`: the backup to verify, as TENANT:ID.
        backup: Option<String>,
        #[arg(long)]
        list: bool,
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

fn parse_kv(s: &str) -> Result<(String, String), Invalid> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| Invalid::NotKeyValue(s.into()))
}

impl Cli {
    fn client(&self) -> Result<Client> {
        if let Some(addr) = &self.api {
            let tf = self
                .token_file
                .as_ref()
                .context("--api needs --token-file")?;
            let token = crate::store::private::read(tf)
                .context("--token-file")?
                .trim()
                .to_string();
            let (addr, name) = client::parse_api(addr)?;
            let tls = name
                .map(|n| client::tls(&n, self.ca_file.as_deref()))
                .transpose()?;
            return Ok(Client {
                target: Target::Tcp { addr, token, tls },
            });
        }
        let socket = match &self.socket {
            Some(s) => s.clone(),
            None => self
                .config
                .as_ref()
                .and_then(|c| crate::desired::host::load(c).ok())
                .map(|h| h.api_socket)
                .unwrap_or_else(crate::spec::host::HostFile::default_socket),
        };
        Ok(Client {
            target: Target::Unix(socket),
        })
    }
}

/// Runs a client command; returns the process exit code.
pub async fn run(cli: Cli) -> Result<i32> {
    let c = cli.client()?;
    match cli.command {
        Command::Serve
        | Command::Validate { .. }
        | Command::Completions { .. }
        | Command::Export { .. } => {
            unreachable!("handled in main")
        }
        cmd @ (Command::Ls { .. }
        | Command::Status { .. }
        | Command::Logs { .. }
        | Command::Reconcile
        | Command::Ca
        | Command::Mail { .. }
        | Command::Jobs { .. }
        | Command::Top { .. }
        | Command::Images { .. }
        | Command::Capacity { .. }) => reads::run(&c, cmd).await?,
        Command::Add(a) => return instances::add(&c, a).await,
        Command::Rm {
            tenant,
            purge,
            output,
        } => instances::rm(&c, &tenant, purge, output).await?,
        Command::Stop { tenant, output } => {
            instances::set_state(&c, &tenant, "stopped", output).await?
        }
        Command::Start { tenant, output } | Command::Resume { tenant, output } => {
            instances::set_state(&c, &tenant, "running", output).await?
        }
        Command::Suspend { tenant, output } => {
            instances::set_state(&c, &tenant, "suspended", output).await?
        }
        Command::Restart { tenant, output } => instances::restart(&c, &tenant, output).await?,
        Command::Move {
            tenant,
            to,
            from_backup,
            detach,
            output,
        } => instances::move_to(&c, &tenant, (&to, from_backup), detach, output).await?,
        Command::Op { id, wait, output } => return ops::show(&c, &id, wait, output).await,
        Command::Set {
            tenant,
            pairs,
            unset,
            output,
        } => instances::set(&c, &tenant, pairs, unset, output).await?,
        Command::Cert { cmd } => edge::cert(&c, cmd).await?,
        Command::Domain { cmd } => edge::domain(&c, cmd).await?,
        Command::Upgrade(a) => return fleet::upgrade(&c, a).await,
        Command::Rollback {
            tenant,
            wait,
            output,
        } => return fleet::rollback(&c, &tenant, wait, output).await,
        cmd @ (Command::Backup { .. } | Command::Restore { .. }) => backups(&c, cmd).await?,
        Command::Token { cmd } => return access::token(&c, cmd).await,
        Command::Audit {
            tenant,
            since,
            limit,
            output,
        } => return access::audit(&c, tenant, since, limit, output).await,
    }
    Ok(0)
}

/// `berth backup` (take, list, verify) and `berth restore`.
async fn backups(c: &Client, cmd: Command) -> Result<()> {
    match cmd {
        Command::Backup {
            tenant,
            backup: Some(b),
            detach,
            output,
            ..
        } if tenant == "verify" => fleet::verify(c, &b, detach, output).await,
        Command::Backup {
            tenant,
            backup: Some(b),
            ..
        } => anyhow::bail!(
            "unexpected argument {b:?}: `berth backup {tenant}` takes no backup id (did you mean `berth backup verify {tenant}:{b}`?)"
        ),
        Command::Backup {
            tenant,
            list,
            detach,
            output,
            ..
        } => fleet::backup(c, &tenant, list, detach, output).await,
        Command::Restore {
            tenant,
            from,
            detach,
            output,
        } => fleet::restore(c, &tenant, &from, detach, output).await,
        _ => unreachable!("only backup and restore come here"),
    }
}

pub(crate) fn print(
    output: Output,
    v: &serde_json::Value,
    table: impl Fn(&serde_json::Value) -> String,
) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => print!("{}", table(v)),
    }
}
