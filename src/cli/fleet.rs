//! `berth upgrade …`, `berth rollback`, `berth backup`, `berth restore`: thin API calls, with
//! progress bars while an upgrade runs.

use super::{
    Output,
    client::{Client, api_path},
    print, table,
};
use anyhow::Result;
use clap::Args;
use hyper::Method;
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// The app (template) to upgrade, or status | pause | resume | abort.
    pub target: String,
    /// Version to move the app's tenants to.
    #[arg(long)]
    pub to: Option<String>,
    /// Tenants to take: comma-separated names or `prefix*` (default: every tenant of the app).
    #[arg(long)]
    pub tenants: Option<String>,
    /// Only tenants whose labels meet these requirements too (`tier=gold,!legacy`).
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Only tenants on this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Tenants in the first wave, alone.
    #[arg(long, default_value_t = 1)]
    pub canary: usize,
    /// Tenants per later wave: a count (5) or a share of the fleet (10%).
    #[arg(long, default_value = "1")]
    pub batch: String,
    /// Failed tenants tolerated before the fleet halts.
    #[arg(long, default_value_t = 0)]
    pub max_failures: usize,
    /// With it, halt only once more than --max-failures failed and the failed share of the
    /// tenants tried so far is above this (0 < R ≤ 1, or a percentage: 0.1, 10%).
    #[arg(long, value_parser = super::command::failure_ratio)]
    pub max_failure_ratio: Option<f64>,
    /// Seconds a new version has to pass its health checks.
    #[arg(long)]
    pub health_timeout: Option<u64>,
    /// Follow progress until the upgrade ends (exit 1 unless every tenant moved).
    #[arg(long)]
    pub wait: bool,
    /// Check the upgrade and show its waves and skipped tenants; start nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
}

pub async fn upgrade(c: &Client, a: UpgradeArgs) -> Result<i32> {
    let v = match a.target.as_str() {
        "status" => c.json(Method::GET, "/v1/upgrades/current", None).await?,
        "pause" | "resume" | "abort" => {
            let path = api_path(&["v1", "upgrades", "current", &a.target], &[]);
            c.json(Method::POST, &path, None).await?
        }
        app => {
            let Some(to) = &a.to else {
                anyhow::bail!("berth upgrade {app} needs --to VERSION");
            };
            for (flag, v) in [("selector", &a.selector), ("plan", &a.plan)] {
                if v.as_deref().is_some_and(|v| v.trim().is_empty()) {
                    anyhow::bail!("--{flag} is empty: it would select every tenant of {app}");
                }
            }
            if let Some(l) = &a.selector {
                crate::desired::selector::parse_labels(l)
                    .map_err(|e| anyhow::anyhow!("--selector: {e}"))?;
            }
            let mut body = json!({
                "app": app, "to": to, "tenants": a.tenants, "canary": a.canary,
                "batch": a.batch, "max_failures": a.max_failures, "health_timeout_s": a.health_timeout,
                "max_failure_ratio": a.max_failure_ratio,
            });
            // Sent only when given: an agent older than selectors takes the rest as before.
            for (k, v) in [("selector", &a.selector), ("plan", &a.plan)] {
                if let Some(v) = v {
                    body[k] = json!(v);
                }
            }
            if a.dry_run {
                let v = c
                    .json(Method::POST, "/v1/previews/upgrade", Some(body))
                    .await?;
                print(a.output, &v, |v| {
                    format!("dry run: nothing started\n{}", waves_of(v))
                });
                return Ok(0);
            }
            c.json(Method::POST, "/v1/upgrades", Some(body)).await?
        }
    };
    if a.wait {
        return follow(c).await;
    }
    print(a.output, &v, summary);
    Ok(0)
}

pub async fn rollback(c: &Client, tenant: &str, wait: bool, output: Output) -> Result<i32> {
    let path = api_path(&["v1", "instances", tenant, "rollback"], &[]);
    let v = c.json(Method::POST, &path, None).await?;
    let to = v["to"].as_str().unwrap_or("?").to_string();
    print(output, &v, |_| {
        format!("{tenant}: rolling back to version {to}\n")
    });
    if wait {
        return follow(c).await;
    }
    Ok(0)
}

pub async fn backup(
    c: &Client,
    tenant: &str,
    list: bool,
    detach: bool,
    output: Output,
) -> Result<()> {
    let path = api_path(&["v1", "instances", tenant, "backups"], &[]);
    if list {
        let v = c.json(Method::GET, &path, None).await?;
        print(output, &v, backups_table);
        return Ok(());
    }
    let making = format!("{tenant}: backing up");
    let call = (Method::POST, path.as_str(), None);
    let Some(v) = super::ops::run(c, call, making, detach, output).await? else {
        return Ok(());
    };
    print(output, &v, |v| {
        let mut out = format!(
            "{}: backup {} ({}, version {})\n",
            v["tenant"].as_str().unwrap_or("?"),
            v["id"].as_str().unwrap_or("?"),
            super::table::human_bytes(v["bytes"].as_u64().unwrap_or(0)),
            v["version"].as_str().unwrap_or("?")
        );
        for c in v["offsite"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "  copied to {}: snapshot {}, {} added\n",
                c["repository"].as_str().unwrap_or("?"),
                c["snapshot"].as_str().unwrap_or("?"),
                super::table::human_bytes(c["bytes_added"].as_u64().unwrap_or(0))
            ));
        }
        out
    });
    // A backup that stayed on this host is not what a schedule or a script asked for: say so
    // and fail, after the local backup is listed.
    let failed = v["offsite_failed"].as_array().cloned().unwrap_or_default();
    for f in &failed {
        eprintln!(
            "berth: backup {} NOT copied to repository {}: {}",
            v["id"].as_str().unwrap_or("?"),
            f["repository"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        );
    }
    if !failed.is_empty() {
        anyhow::bail!("{} off-host copies failed", failed.len());
    }
    Ok(())
}

pub async fn restore(
    c: &Client,
    tenant: &str,
    from: &str,
    detach: bool,
    output: Output,
) -> Result<()> {
    let path = api_path(&["v1", "instances", tenant, "restore"], &[]);
    let call = (Method::POST, path.as_str(), Some(json!({ "from": from })));
    let msg = format!("{tenant}: restoring {from}");
    let Some(v) = super::ops::run(c, call, msg, detach, output).await? else {
        return Ok(());
    };
    if output == Output::Json {
        print(output, &v, |_| String::new());
    } else if v["restored"].is_array() {
        println!(
            "{tenant}: created from backup {from} (version {}, healthy, {:.1}s)",
            v["version"].as_str().unwrap_or("?"),
            v["seconds"].as_f64().unwrap_or(0.0)
        );
    } else {
        println!(
            "{tenant}: restored backup {from} (taken on version {})",
            v["version"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

pub async fn verify(c: &Client, backup: &str, detach: bool, output: Output) -> Result<()> {
    let Some((tenant, id)) = backup.split_once(':') else {
        anyhow::bail!(
            "{backup:?}: name the backup as TENANT:ID (see `berth backup TENANT --list`)"
        );
    };
    let path = api_path(&["v1", "instances", tenant, "backups", id, "verify"], &[]);
    let msg = format!("verifying {backup} in a scratch tenant");
    let call = (Method::POST, path.as_str(), None);
    if let Some(v) = super::ops::run(c, call, msg, detach, output).await? {
        print(output, &v, verified);
    }
    Ok(())
}

fn verified(v: &Value) -> String {
    format!(
        "backup {}:{}: good — restored {} into {}, healthy, {} ({:.1}s)\n",
        v["from"].as_str().unwrap_or("?"),
        v["id"].as_str().unwrap_or("?"),
        v["restored"]
            .as_array()
            .map(|a| a
                .iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", "))
            .unwrap_or_default(),
        v["tenant"].as_str().unwrap_or("?"),
        if v["removed"] == true {
            "removed"
        } else {
            "removal still in progress"
        },
        v["seconds"].as_f64().unwrap_or(0.0)
    )
}

/// Local archives and off-host snapshots side by side: one row per backup id, WHERE naming
/// `local` and every repository that holds it.
fn backups_table(v: &Value) -> String {
    let mut by_id: std::collections::BTreeMap<String, (Vec<String>, &Value)> = Default::default();
    let listed = |key: &str| v[key].as_array().cloned().unwrap_or_default();
    let (local, off) = (listed("backups"), listed("offsite"));
    for b in &local {
        let id = b["id"].as_str().unwrap_or("").to_string();
        by_id
            .entry(id)
            .or_insert((vec![], b))
            .0
            .push("local".into());
    }
    for s in &off {
        let id = s["backup"].as_str().unwrap_or("").to_string();
        let place = s["repository"].as_str().unwrap_or("?").to_string();
        by_id.entry(id).or_insert((vec![], s)).0.push(place);
    }
    let rows: Vec<Vec<String>> = by_id
        .iter()
        .rev()
        .map(|(id, (places, b))| {
            vec![
                id.clone(),
                places.join(", "),
                b["version"].as_str().unwrap_or("").into(),
                table::human_bytes(b["bytes"].as_u64().unwrap_or(0)),
                b["created"].as_u64().map_or("-".into(), table::relative),
            ]
        })
        .collect();
    let mut out = table::render(&["ID", "WHERE", "VERSION", "SIZE", "TAKEN"], &rows);
    for f in listed("offsite_failed") {
        out.push_str(&format!(
            "repository {} did not answer: {}\n",
            f["repository"].as_str().unwrap_or("?"),
            f["error"].as_str().unwrap_or("?")
        ));
    }
    // A repository whose last copy failed, with why (what the alert points at).
    for (repo, r) in v["offsite_records"].as_object().into_iter().flatten() {
        let (ok, bad) = (r["last_success"].as_u64(), r["last_failure"].as_u64());
        if bad.is_some() && bad > ok {
            out.push_str(&format!(
                "last copy to {repo} failed {}: {}\n",
                bad.map_or("-".into(), table::relative),
                r["last_error"].as_str().unwrap_or("?")
            ));
        }
    }
    let p = &v["policy"];
    if p.is_object() {
        out.push_str(&format!(
            "keeps {}; scheduled: {}\n",
            p["keep"],
            p["schedule"].as_str().unwrap_or("no")
        ));
    }
    let l = &v["last_scheduled"];
    if l.is_object() {
        out.push_str(&match l["error"].as_str() {
            Some(e) => format!("last scheduled backup failed: {e}\n"),
            None => format!(
                "last scheduled backup: {}\n",
                l["id"].as_str().unwrap_or("?")
            ),
        });
    }
    out
}

/// One line per tenant: phase, seconds, error.
/// A planned upgrade: its waves in order, then the tenants it passes over and why.
fn waves_of(v: &Value) -> String {
    let mut out = format!(
        "upgrade of {} to {}: {} tenants in {} waves\n",
        v["app"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        v["tenants"].as_object().map_or(0, |t| t.len()),
        v["waves"].as_array().map_or(0, Vec::len),
    );
    let rows: Vec<Vec<String>> = v["waves"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, w)| {
            let names: Vec<String> = w
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| {
                    let t = t.as_str().unwrap_or("?");
                    match v["tenants"][t]["from"].as_str() {
                        Some(from) => format!("{t} (from {from})"),
                        None => t.to_string(),
                    }
                })
                .collect();
            vec![(i + 1).to_string(), names.join(", ")]
        })
        .collect();
    out.push_str(&table::render(&["WAVE", "TENANTS"], &rows));
    for (t, why) in v["skipped"].as_object().into_iter().flatten() {
        out.push_str(&format!("skipped {t}: {}\n", why.as_str().unwrap_or("")));
    }
    out
}

fn summary(v: &Value) -> String {
    let mut out = format!(
        "upgrade {} of {} to {}: {} (wave {}/{}){}\n",
        v["id"].as_str().unwrap_or(""),
        v["app"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        v["status"].as_str().unwrap_or(""),
        (v["wave"].as_u64().unwrap_or(0) + 1).min(v["waves"].as_array().map_or(0, Vec::len) as u64),
        v["waves"].as_array().map_or(0, Vec::len),
        v["reason"]
            .as_str()
            .map(|r| format!(" — {r}"))
            .unwrap_or_default(),
    );
    let rows: Vec<Vec<String>> = v["tenants"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(t, p)| {
            vec![
                t.clone(),
                p["from"].as_str().unwrap_or("").into(),
                p["phase"].as_str().unwrap_or("").into(),
                p["seconds"]
                    .as_f64()
                    .map(|s| format!("{s:.1}s"))
                    .unwrap_or_default(),
                p["error"].as_str().unwrap_or("").into(),
            ]
        })
        .collect();
    out.push_str(&table::render(
        &["TENANT", "FROM", "PHASE", "TOOK", "ERROR"],
        &rows,
    ));
    for (t, why) in v["skipped"].as_object().into_iter().flatten() {
        out.push_str(&format!("skipped {t}: {}\n", why.as_str().unwrap_or("")));
    }
    out
}

/// Progress bar over the fleet until the upgrade stops running; exit 1 unless all moved.
async fn follow(c: &Client) -> Result<i32> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} tenants  {msg}")
            .expect("valid template"),
    );
    let mut reported = BTreeSet::new();
    loop {
        let v = c.json(Method::GET, "/v1/upgrades/current", None).await?;
        let tenants = v["tenants"].as_object().cloned().unwrap_or_default();
        bar.set_length(tenants.len() as u64);
        let mut settled = 0;
        for (t, p) in &tenants {
            let phase = p["phase"].as_str().unwrap_or("");
            if matches!(phase, "done" | "rolled_back" | "failed") {
                settled += 1;
                if reported.insert(t.clone()) {
                    let err = p["error"]
                        .as_str()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default();
                    bar.println(format!("{t}: {phase}{err}"));
                }
            }
        }
        bar.set_position(settled);
        let status = v["status"].as_str().unwrap_or("");
        bar.set_message(format!(
            "wave {}/{} · {status}",
            (v["wave"].as_u64().unwrap_or(0) + 1)
                .min(v["waves"].as_array().map_or(0, Vec::len) as u64),
            v["waves"].as_array().map_or(0, Vec::len)
        ));
        if !matches!(status, "running" | "paused") {
            bar.finish();
            print!("{}", summary(&v));
            let all_done = tenants.values().all(|p| p["phase"] == "done");
            return Ok(if status == "done" && all_done { 0 } else { 1 });
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

pub fn jobs_table(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, j)| {
            let last = j["runs"].as_array().and_then(|r| r.last());
            vec![
                name.clone(),
                j["schedule"].as_str().unwrap_or("").into(),
                last.and_then(|r| r["started_ms"].as_u64())
                    .map(|ms| super::table::relative(ms / 1000))
                    .unwrap_or("-".into()),
                last.map(|r| match r["timed_out"].as_bool() {
                    Some(true) => "timed out".to_string(),
                    _ => r["exit_code"].to_string(),
                })
                .unwrap_or("-".into()),
                last.and_then(|r| r["duration_ms"].as_u64())
                    .map(|ms| format!("{ms}ms"))
                    .unwrap_or("-".into()),
                j["last_success"]
                    .as_u64()
                    .map(super::table::relative)
                    .unwrap_or("never".into()),
                j["skipped_overlap"].to_string(),
                if j["running"] == true {
                    "running".into()
                } else {
                    j["next_run"]
                        .as_u64()
                        .map(super::table::relative)
                        .unwrap_or("-".into())
                },
            ]
        })
        .collect();
    table::render(
        &[
            "JOB",
            "SCHEDULE",
            "LAST RUN",
            "EXIT",
            "TOOK",
            "LAST SUCCESS",
            "SKIPPED",
            "NEXT",
        ],
        &rows,
    )
}
