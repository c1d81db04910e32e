//! `berth cert …`, `berth domain …` and `berth ca`: thin calls to the agent's API.

use super::{
    Output,
    client::{Client, api_path},
    domain_arg, print, progress, table, tenant_arg,
};
use anyhow::Result;
use clap::Subcommand;
use hyper::Method;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum CertCommand {
    /// List certificates: domain, tenant, issuer, expiry, renewal, last error.
    Ls {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Order a new certificate for a domain now and wait for the outcome.
    Renew {
        #[arg(value_parser = domain_arg)]
        domain: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Claim a custom domain for a tenant; prints the token to publish.
    Add {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(value_parser = domain_arg)]
        domain: String,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Check the published token and, if found, route the domain to the tenant.
    Verify {
        #[arg(value_parser = tenant_arg)]
        tenant: String,
        #[arg(value_parser = domain_arg)]
        domain: String,
        /// dns or http (default: DNS, then HTTP).
        #[arg(long)]
        method: Option<String>,
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List bound domains and pending claims.
    Ls {
        #[arg(short, long, value_enum, default_value = "table")]
        output: Output,
    },
}

fn time(v: &Value) -> String {
    v.as_u64()
        .map(|s| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs();
            let days = (s as i64 - now as i64) as f64 / 86400.0;
            format!("{days:+.1}d")
        })
        .unwrap_or_else(|| "-".into())
}

fn certs_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            vec![
                r["domain"].as_str().unwrap_or("").into(),
                r["tenant"].as_str().unwrap_or("").into(),
                r["issuer"].as_str().unwrap_or("").into(),
                time(&r["not_after"]),
                time(&r["renew_at"]),
                r["last_error"].as_str().unwrap_or("-").into(),
            ]
        })
        .collect();
    table::render(
        &[
            "DOMAIN",
            "TENANT",
            "ISSUER",
            "EXPIRES",
            "RENEWS",
            "LAST ERROR",
        ],
        &rows,
    )
}

fn domains_table(v: &Value) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    if let Some(b) = v["bound"].as_object() {
        for (d, x) in b {
            rows.push(vec![
                d.clone(),
                x["tenant"].as_str().unwrap_or("").into(),
                format!("verified ({})", x["method"].as_str().unwrap_or("")),
            ]);
        }
    }
    for p in v["pending"].as_array().into_iter().flatten() {
        rows.push(vec![
            p["domain"].as_str().unwrap_or("").into(),
            p["tenant"].as_str().unwrap_or("").into(),
            format!(
                "pending: TXT _berth.{} = {}",
                p["domain"].as_str().unwrap_or(""),
                p["token"].as_str().unwrap_or("")
            ),
        ]);
    }
    table::render(&["DOMAIN", "TENANT", "STATE"], &rows)
}

pub async fn cert(c: &Client, cmd: CertCommand) -> Result<()> {
    match cmd {
        CertCommand::Ls { output } => print(
            output,
            &c.json(Method::GET, "/v1/certs", None).await?,
            certs_table,
        ),
        CertCommand::Renew { domain, output } => {
            let path = api_path(&["v1", "certs", &domain, "renew"], &[]);
            let call = c.json(Method::POST, &path, None);
            progress::during(format!("{domain}: ordering a certificate"), call).await?;
            let v = json!({ "domain": domain, "renewed": true });
            print(output, &v, |_| {
                format!("{domain}: new certificate installed\n")
            });
        }
    }
    Ok(())
}

pub async fn domain(c: &Client, cmd: DomainCommand) -> Result<()> {
    match cmd {
        DomainCommand::Add {
            tenant,
            domain,
            output,
        } => {
            let v = c
                .json(
                    Method::POST,
                    &api_path(&["v1", "instances", &tenant, "domains"], &[]),
                    Some(json!({ "domain": domain })),
                )
                .await?;
            if output == Output::Json {
                print(output, &v, |_| String::new());
                return Ok(());
            }
            println!("Prove control of {domain} by publishing either:");
            println!(
                "  DNS:  {} TXT \"{}\"",
                v["dns"]["name"].as_str().unwrap_or(""),
                v["token"].as_str().unwrap_or("")
            );
            println!(
                "  HTTP: {} answering {}",
                v["http"]["url"].as_str().unwrap_or(""),
                v["token"].as_str().unwrap_or("")
            );
            match v["held_by"].as_str() {
                Some(h) => println!(
                    "{domain} is currently used by tenant {h}; it moves once the proof is checked."
                ),
                None if v["claimed_elsewhere"] == true => println!(
                    "{domain} is claimed by another tenant; it moves to {tenant} once the proof is checked."
                ),
                None => {}
            }
            println!("then run: berth domain verify {tenant} {domain}");
        }
        DomainCommand::Verify {
            tenant,
            domain,
            method,
            output,
        } => {
            let path = api_path(
                &["v1", "instances", &tenant, "domains", &domain, "verify"],
                &[],
            );
            let call = c.json(Method::POST, &path, Some(json!({ "method": method })));
            let v = progress::during(format!("{domain}: looking for the proof"), call).await?;
            print(output, &v, |v| {
                format!(
                    "{domain}: verified by {} for tenant {tenant}; routed now\n",
                    v["method"].as_str().unwrap_or("?")
                )
            });
        }
        DomainCommand::Ls { output } => print(
            output,
            &c.json(Method::GET, "/v1/domains", None).await?,
            domains_table,
        ),
    }
    Ok(())
}
