//! The `berth` command line: a thin client of the agent's API (plus offline `validate` and
//! the agent itself, `serve`).

pub mod access;
pub mod client;
mod command;
pub mod edge;
pub mod export;
pub mod fleet;
mod handover;
pub mod instances;
pub mod mail;
pub mod ops;
mod preview;
pub mod progress;
mod prune;
mod reads;
mod recover;
pub mod select;
pub mod table;
pub mod top;
pub mod validate;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use client::{Client, Target};
use command::parse_kv;
pub use command::{Command, backup_arg, domain_arg, tenant_arg};
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

impl Cli {
    fn client(&self) -> Result<Client> {
        if let Some(addr) = &self.api {
            let tf = self
                .token_file
                .as_ref()
                .context("--api needs --token-file")?;
            return Client::tcp(addr, tf, self.ca_file.as_deref()).context("--token-file");
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
            dry_run: true,
            output,
        } => preview::rm(&c, &tenant, purge, output).await?,
        Command::Rm {
            tenant,
            purge,
            output,
            ..
        } => instances::rm(&c, &tenant, purge, output).await?,
        Command::Stop {
            tenant,
            select,
            output,
        } => return states(&c, tenant, &select, "stopped", output).await,
        Command::Start {
            tenant,
            select,
            output,
        }
        | Command::Resume {
            tenant,
            select,
            output,
        } => return states(&c, tenant, &select, "running", output).await,
        Command::Suspend {
            tenant,
            select,
            output,
        } => return states(&c, tenant, &select, "suspended", output).await,
        Command::Restart {
            tenant,
            select,
            output,
        } => {
            let ts = select::targets(&c, tenant, &select).await?;
            return select::each(ts, |t| {
                let c = &c;
                async move { instances::restart(c, &t, output).await }
            })
            .await;
        }
        Command::Move {
            tenant,
            to,
            repo,
            to_token_file,
            to_ca_file,
            to_edge,
            output,
            ..
        } if to.contains("://") => {
            let other = handover::Other {
                api: to,
                repo: repo.context("--repo: name the backup repository both hosts have")?,
                token_file: to_token_file
                    .context("--to-token-file: the other host's operator token")?,
                ca_file: to_ca_file,
                edge: to_edge,
            };
            return handover::run(&c, &tenant, other, output).await;
        }
        Command::Move {
            tenant,
            to,
            from_backup,
            detach,
            output,
            ..
        } => instances::move_to(&c, &tenant, (&to, from_backup), detach, output).await?,
        Command::Op { id, wait, output } => return ops::show(&c, &id, wait, output).await,
        Command::Set {
            tenant,
            pairs,
            unset,
            dry_run,
            output,
        } => instances::set(&c, &tenant, pairs, unset, dry_run, output).await?,
        Command::Diff { tenants, output } => return preview::diff(&c, tenants, output).await,
        Command::Cert { cmd } => edge::cert(&c, cmd).await?,
        Command::Domain { cmd } => edge::domain(&c, cmd).await?,
        Command::Upgrade(a) => return fleet::upgrade(&c, a).await,
        Command::Rollback {
            tenant,
            wait,
            output,
        } => return fleet::rollback(&c, &tenant, wait, output).await,
        Command::Backup {
            tenant: Some(word),
            select,
            ..
        } if matches!(word.as_str(), "prune" | "verify") && !select.is_empty() => anyhow::bail!(
            "-l, --app, --plan, --version and --phase select tenants to back up; `berth backup {word}` takes none"
        ),
        Command::Backup {
            tenant,
            repo: Some(repo),
            url,
            dry_run,
            output,
            ..
        } if tenant.as_deref() == Some("prune") => {
            let config = cli
                .config
                .unwrap_or_else(|| crate::spec::host::DEFAULT_CONFIG_PATH.into());
            return prune::run(&config, &repo, url, dry_run, output).await;
        }
        cmd @ (Command::Backup { .. } | Command::Restore { .. }) => return backups(&c, cmd).await,
        Command::Recover {
            repo,
            tenants,
            inventory,
            detach,
            output,
        } => return recover::run(&c, &repo, tenants, inventory, detach, output).await,
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

/// `berth stop|start|resume|suspend` of one tenant or of each the selection takes.
async fn states(
    c: &Client,
    tenant: Option<String>,
    sel: &select::Select,
    state: &str,
    output: Output,
) -> Result<i32> {
    let ts = select::targets(c, tenant, sel).await?;
    select::each(ts, |t| async move {
        instances::set_state(c, &t, state, output).await
    })
    .await
}

/// `berth backup` (take, list, verify) and `berth restore`.
async fn backups(c: &Client, cmd: Command) -> Result<i32> {
    match cmd {
        Command::Backup {
            tenant,
            backup: Some(b),
            detach,
            output,
            ..
        } if tenant.as_deref() == Some("verify") => {
            fleet::verify(c, &b, detach, output).await.map(|()| 0)
        }
        Command::Backup {
            tenant,
            backup: Some(b),
            ..
        } => {
            let tenant = tenant.unwrap_or_default();
            anyhow::bail!(
                "unexpected argument {b:?}: `berth backup {tenant}` takes no backup id (did you mean `berth backup verify {tenant}:{b}`?)"
            )
        }
        Command::Backup {
            tenant,
            repo,
            url,
            dry_run,
            ..
        } if repo.is_some() || url.is_some() || dry_run => anyhow::bail!(
            "--repo, --url and --dry-run go with `berth backup prune --repo R`, not with a backup of {}",
            tenant.map_or("the selection".into(), |t| format!("{t:?}"))
        ),
        Command::Backup {
            tenant,
            select,
            list,
            detach,
            output,
            ..
        } => {
            let ts = select::targets(c, tenant, &select).await?;
            select::each(ts, |t| async move {
                fleet::backup(c, &t, list, detach, output).await
            })
            .await
        }
        Command::Restore {
            tenant,
            from,
            detach,
            output,
        } => fleet::restore(c, &tenant, &from, detach, output)
            .await
            .map(|()| 0),
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
