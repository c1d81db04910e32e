//! `berth recover --repo R [--inventory ID]`: whole-host recovery, followed as an operation, each tenant's
//! outcome as a row.

use super::{Output, client::Client, print, table};
use anyhow::Result;
use hyper::Method;
use serde_json::{Value, json};

pub async fn run(
    c: &Client,
    repo: &str,
    tenants: Vec<String>,
    inventory: Option<String>,
    detach: bool,
    output: Output,
) -> Result<i32> {
    let msg = match &inventory {
        Some(id) => {
            format!("recovering this host's tenants from inventory {id} of repository {repo}")
        }
        None => format!("recovering this host's tenants from repository {repo}"),
    };
    let body = json!({ "repository": repo, "tenants": tenants, "inventory": inventory });
    let call = (Method::POST, "/v1/recover", Some(body));
    let Some(v) = super::ops::run(c, call, msg, detach, output).await? else {
        return Ok(0);
    };
    print(output, &v, report);
    let failed = v["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|t| t["outcome"] == "failed");
    Ok(i32::from(failed))
}

fn report(v: &Value) -> String {
    let s = |x: &Value| x.as_str().unwrap_or("-").to_string();
    let rows: Vec<Vec<String>> = v["tenants"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let domains: Vec<String> = t["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .map(s)
                .collect();
            vec![
                s(&t["tenant"]),
                s(&t["outcome"]),
                s(&t["backup"]),
                if domains.is_empty() {
                    "-".into()
                } else {
                    domains.join(",")
                },
                format!("{:.1}s", t["seconds"].as_f64().unwrap_or(0.0)),
                s(&t["error"]),
            ]
        })
        .collect();
    let n = |o: &str| rows.iter().filter(|r| r[1] == o).count();
    format!(
        "{}{} recovered, {} left alone (they exist here), {} failed, from inventory {} of repository {} in {:.1}s\n",
        table::render(
            &["TENANT", "OUTCOME", "BACKUP", "DOMAINS", "TOOK", "ERROR"],
            &rows
        ),
        n("recovered"),
        n("exists"),
        n("failed"),
        s(&v["inventory"]),
        s(&v["repository"]),
        v["seconds"].as_f64().unwrap_or(0.0)
    )
}
