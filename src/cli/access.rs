//! `berth token …` and `berth audit`.

use super::{Output, client::Client, client::api_path, print, table};
use crate::api::auth::Role;
use anyhow::{Result, bail};
use clap::Subcommand;
use hyper::Method;

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Make an API token (printed once); through the agent's Unix socket only.
    Create {
        /// operator, tenant-admin (its tenants: status, logs, start/stop, backups, restore,
        /// domains) or tenant-viewer (its tenants, read only).
        #[arg(long, value_enum)]
        role: Role,
        /// A tenant the token is bound to (repeat for a group of tenants).
        #[arg(long = "tenant", value_parser = super::tenant_arg)]
        tenants: Vec<String>,
        /// Lifetime, e.g. 30d, 12h (required unless --no-expiry).
        #[arg(long, value_parser = lifetime)]
        expires: Option<u64>,
        /// A token that never expires (the operator's explicit choice).
        #[arg(long)]
        no_expiry: bool,
        #[arg(long)]
        name: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List tokens (never their secrets).
    Ls {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Revoke a token by its prefix (`bth_1a2b3c4d`) or id.
    Revoke {
        id: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

/// `30d` → seconds.
fn lifetime(s: &str) -> anyhow::Result<u64> {
    let d = crate::spec::units::parse_duration(s)?;
    match d.as_secs() {
        0 => anyhow::bail!("{s:?} is not in the future"),
        n => Ok(n),
    }
}

/// A relative age like `1h` or `7d` → Unix milliseconds that long ago.
pub fn since(s: &str) -> Result<u64, crate::spec::units::UnitError> {
    let d = crate::spec::units::parse_duration(s)?;
    let now = crate::audit::now_ms();
    Ok(now.saturating_sub(d.as_millis().min(u128::from(u64::MAX)) as u64))
}

pub async fn token(c: &Client, cmd: TokenCmd) -> Result<i32> {
    match cmd {
        TokenCmd::Create {
            role,
            tenants,
            expires,
            no_expiry,
            name,
            output,
        } => {
            if expires.is_none() && !no_expiry {
                bail!("--expires (e.g. 30d) is required, or --no-expiry");
            }
            let body = serde_json::json!({
                "role": role, "tenants": tenants, "expires_in": expires,
                "no_expiry": no_expiry, "name": name,
            });
            let v = c.json(Method::POST, "/v1/tokens", Some(body)).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    println!("{}", v["token"].as_str().unwrap_or_default());
                    eprintln!(
                        "token bth_{} ({}) made: it is shown this once; keep it in a 0600 file",
                        v["id"].as_str().unwrap_or_default(),
                        v["name"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        TokenCmd::Ls { output } => {
            let v = c.json(Method::GET, "/v1/tokens", None).await?;
            print(output, &v, table::tokens);
        }
        TokenCmd::Revoke { id, output } => {
            let v = c
                .json(Method::DELETE, &api_path(&["v1", "tokens", &id], &[]), None)
                .await?;
            print(output, &v, |v| {
                format!("revoked bth_{}\n", v["id"].as_str().unwrap_or_default())
            });
        }
    }
    Ok(0)
}

pub async fn audit(
    c: &Client,
    tenant: Option<String>,
    since_ms: Option<u64>,
    limit: Option<usize>,
    output: Output,
) -> Result<i32> {
    let since = since_ms.map(|s| s.to_string());
    let limit = limit.map(|l| l.to_string());
    let mut q: Vec<(&str, &str)> = vec![];
    if let Some(t) = &tenant {
        q.push(("tenant", t));
    }
    if let Some(s) = &since {
        q.push(("since", s));
    }
    if let Some(l) = &limit {
        q.push(("limit", l));
    }
    let v = c
        .json(Method::GET, &api_path(&["v1", "audit"], &q), None)
        .await?;
    print(output, &v, table::audit);
    Ok(0)
}
