//! `berth move T --to https://OTHER:PORT --repo R --to-token-file F`: moves a tenant to another
//! berth host, driving both APIs (`crate::handover` has the steps). The tenant keeps serving
//! here until its requests are held for the final catch-up; from then on this host's edge
//! forwards them to the other host's until DNS points there (`berth rm T --purge` then ends
//! it). A move that fails before the forward leaves the tenant serving here as it was.

use super::{
    Output,
    client::{Client, api_path},
    print, progress,
};
use anyhow::{Context, Result, bail};
use hyper::Method;
use serde_json::{Value, json};
use std::{path::PathBuf, time::Instant};

/// Where to: the other host's API and what it takes to use it.
pub struct Other {
    pub api: String,
    pub repo: String,
    pub token_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub edge: Option<String>,
}

pub async fn run(here: &Client, t: &str, o: Other, output: Output) -> Result<i32> {
    let started = Instant::now();
    let there = Client::tcp(&o.api, &o.token_file, o.ca_file.as_deref())
        .with_context(|| format!("--to {} / --to-token-file", o.api))?;
    let (edge, edge_http) = other_edge(here, &there, &o).await?;
    let step = |s: &str| api_path(&["v1", "instances", t, "handover", s], &[]);
    let repo = json!({ "repository": o.repo });
    // 1. A backup here, the tenant made there from it.
    let call = (Method::POST, step("prepare"), Some(repo.clone()));
    let prepared = follow(here, call, format!("{t}: backing up into {}", o.repo)).await?;
    let body = json!({
        "repository": o.repo,
        "backup": prepared["backup"],
        "entry": prepared["entry"],
    });
    let call = (Method::POST, "/v1/moves".to_string(), Some(body));
    let received = follow(&there, call, format!("{t}: made on {}", o.api)).await?;
    // 2. Requests held here, the final backup, restored there.
    let hold_started = Instant::now();
    let hold_path = step("hold");
    let hold = here.json(Method::POST, &hold_path, Some(repo));
    let held = progress::during(format!("{t}: holding requests, final backup"), hold).await?;
    let restore = api_path(&["v1", "instances", t, "restore"], &[]);
    // B's copy holds only the first backup, which R keeps: no safety backup of it first, so
    // the hold lasts no longer than the catch-up itself.
    let body = json!({ "from": held["backup"], "safety_backup": false });
    let call = (Method::POST, restore, Some(body));
    if let Err(e) = follow(&there, call, format!("{t}: catching up on {}", o.api)).await {
        let _ = here.json(Method::POST, &step("release"), None).await;
        bail!(
            "{e}\n{t} serves here again as before; its copy on {} is incomplete: remove it there (berth rm {t} --purge) before moving it again",
            o.api
        );
    }
    // 3. Forwarded there.
    let ca = there
        .text("/v1/ca")
        .await
        .ok()
        .filter(|p| p.contains("BEGIN"));
    let body = json!({ "to": o.api, "edge": edge, "edge_http": edge_http, "ca_pem": ca });
    let forwarded = match here.json(Method::POST, &step("forward"), Some(body)).await {
        Ok(v) => v,
        Err(e) => {
            let released = here.json(Method::POST, &step("release"), None).await;
            let now = match released {
                Ok(v) if v["released"] == true => "it serves here again as before",
                _ => "see `berth status` here for where it serves now",
            };
            bail!(
                "{e}\n{t}: {now}; its copy on {} is whole (remove it there, or move again)",
                o.api
            );
        }
    };
    let v = json!({
        "tenant": t,
        "to": o.api,
        "edge": edge,
        "first_backup": prepared["backup"],
        "final_backup": held["backup"],
        "received": received,
        "forwarded": forwarded,
        "held_seconds": hold_started.elapsed().as_secs_f64(),
        "seconds": started.elapsed().as_secs_f64(),
    });
    print(output, &v, |v| {
        format!(
            "{t}: moved to {} in {:.1}s (requests held {:.1}s); this host forwards its requests to {} until DNS points there, then `berth rm {t} --purge` here\n",
            o.api,
            v["seconds"].as_f64().unwrap_or(0.0),
            v["held_seconds"].as_f64().unwrap_or(0.0),
            edge,
        )
    });
    Ok(0)
}

/// The other host's edge, HTTPS and HTTP: `--to-edge`'s host (else the API's) with the edge's
/// ports there (`--to-edge`'s own port for HTTPS). Both hosts must share the base domain: the
/// tenant's name there is the one it has here.
async fn other_edge(here: &Client, there: &Client, o: &Other) -> Result<(String, Option<String>)> {
    let (a, b) = (
        here.json(Method::GET, "/v1/agent", None).await?,
        there
            .json(Method::GET, "/v1/agent", None)
            .await
            .with_context(|| format!("--to {}", o.api))?,
    );
    if a["base_domain"].is_null() {
        bail!("this host has no base_domain: a moved tenant is served under its name there");
    }
    if a["base_domain"] != b["base_domain"] {
        bail!(
            "the hosts' base domains differ ({} here, {} there): the tenant's name would not be served there",
            a["base_domain"],
            b["base_domain"]
        );
    }
    let (addr, _) = super::client::parse_api(&o.api)?;
    let api_host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
    let host = o
        .edge
        .as_deref()
        .and_then(|e| e.rsplit_once(':'))
        .map_or(api_host, |(h, _)| h);
    let http = b["edge"]["http_port"]
        .as_u64()
        .map(|p| format!("{host}:{p}"));
    if let Some(e) = &o.edge {
        return Ok((e.clone(), http));
    }
    let port = b["edge"]["https_port"]
        .as_u64()
        .with_context(|| format!("{} runs no edge", o.api))?;
    Ok((format!("{host}:{port}"), http))
}

/// Starts an operation and waits for its result.
async fn follow(
    c: &Client,
    (m, path, body): (Method, String, Option<Value>),
    msg: String,
) -> Result<Value> {
    let call = (m, path.as_str(), body);
    super::ops::run(c, call, msg, false, Output::Json)
        .await?
        .context("the operation ended without a result")
}
