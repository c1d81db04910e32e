//! The commands that only read: instances, status, logs, a pass on demand, the CA, mail,
//! jobs, `top`, images and the host's capacity.

use super::{Command, Output, client::Client, client::api_path, fleet, mail, print, table, top};
use anyhow::Result;
use hyper::Method;

pub(super) async fn run(c: &Client, cmd: Command) -> Result<()> {
    match cmd {
        Command::Ls { select, output } => {
            select.check()?;
            let v = c.json(Method::GET, &select.list_path(), None).await?;
            print(output, &v, table::instances);
        }
        Command::Status { tenant, output } => {
            let v = c
                .json(
                    Method::GET,
                    &api_path(&["v1", "instances", &tenant], &[]),
                    None,
                )
                .await?;
            print(output, &v, table::status);
        }
        Command::Logs {
            tenant,
            follow,
            service,
            tail,
        } => {
            let (follow, tail) = (follow.to_string(), tail.to_string());
            let mut query = vec![("follow", follow.as_str()), ("tail", tail.as_str())];
            if let Some(svc) = &service {
                query.push(("service", svc));
            }
            c.stream(&api_path(&["v1", "instances", &tenant, "logs"], &query))
                .await?;
        }
        Command::Reconcile => {
            let v = c.json(Method::POST, "/v1/reconcile", None).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        Command::Ca => c.stream("/v1/ca").await?,
        Command::Mail {
            first,
            second,
            output,
        } => {
            let (dns, tenant) = mail::target(&first, second.as_deref())?;
            super::tenant_arg(&tenant)?;
            let mut parts = vec!["v1", "instances", &tenant, "mail"];
            if dns {
                parts.push("dns");
            }
            let v = c.json(Method::GET, &api_path(&parts, &[]), None).await?;
            print(output, &v, if dns { mail::dns } else { mail::report });
        }
        Command::Jobs { tenant, output } => {
            let v = c
                .json(
                    Method::GET,
                    &api_path(&["v1", "instances", &tenant, "jobs"], &[]),
                    None,
                )
                .await?;
            print(output, &v, fleet::jobs_table);
        }
        Command::Top {
            once,
            output,
            interval,
        } => top::run(c, once, matches!(output, Output::Json), interval).await?,
        Command::Images { action, output } => {
            let v = match action.as_deref() {
                Some("prune") => c.json(Method::POST, "/v1/images/prune", None).await?,
                _ => c.json(Method::GET, "/v1/images", None).await?,
            };
            let table = if action.is_some() {
                table::pruned
            } else {
                table::images
            };
            print(output, &v, table);
        }
        Command::Capacity { output } => {
            let v = c.json(Method::GET, "/v1/capacity", None).await?;
            print(output, &v, capacity_table);
        }
        _ => unreachable!("only reading commands come here"),
    }
    Ok(())
}

fn capacity_table(v: &serde_json::Value) -> String {
    let bytes = |k: &str| {
        v[k].as_u64()
            .map_or("unknown".to_string(), table::human_bytes)
    };
    let rows = vec![
        vec![
            "memory".to_string(),
            bytes("memory_total"),
            format!("{} (× {})", bytes("memory_allowed"), v["memory_overcommit"]),
            format!(
                "{} (limits {})",
                bytes("memory_reserved"),
                bytes("memory_limits")
            ),
            bytes("memory_used"),
        ],
        vec![
            "disk".to_string(),
            bytes("disk_total"),
            format!("{} (× {})", bytes("disk_allowed"), v["disk_overcommit"]),
            bytes("disk_reserved"),
            bytes("disk_used"),
        ],
        vec![
            "cpus".to_string(),
            v["cpus_total"]
                .as_f64()
                .map_or(v["cpus"].to_string(), |c| c.to_string()),
            format!(
                "{} (× {})",
                v["cpus_allowed"]
                    .as_f64()
                    .map_or("unknown".to_string(), |c| format!("{c:.2}")),
                v["cpu_overcommit"]
            ),
            format!("{:.2}", v["cpus_reserved"].as_f64().unwrap_or(0.0)),
            "-".to_string(),
        ],
    ];
    let mut out = table::render(&["RESOURCE", "TOTAL", "ALLOWED", "RESERVED", "USED"], &rows);
    out.push_str(&format!(
        "{} instances; {} may sleep, {} asleep\n",
        v["instances"], v["sleepers"], v["asleep"]
    ));
    if let Some(nodes) = v["nodes"].as_array().filter(|n| !n.is_empty()) {
        out.push('\n');
        out.push_str(&nodes_table(nodes));
    }
    out
}

/// Swarm mode: each node, its state and what its tenants' limits promise.
fn nodes_table(nodes: &[serde_json::Value]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let state = match (n["ready"].as_bool(), n["active"].as_bool()) {
                (Some(true), Some(true)) => "ready",
                (Some(true), _) => "drained",
                _ => "DOWN",
            };
            let mem = |k: &str| table::human_bytes(n[k].as_u64().unwrap_or(0));
            vec![
                n["name"].as_str().unwrap_or("?").to_string(),
                n["addr"].as_str().unwrap_or("?").to_string(),
                state.to_string(),
                n["tenants"].to_string(),
                format!("{} of {}", mem("memory_limits"), mem("memory_total")),
                n["cpus"].to_string(),
            ]
        })
        .collect();
    table::render(
        &[
            "NODE",
            "ADDRESS",
            "STATE",
            "TENANTS",
            "MEMORY LIMITS",
            "CPUS",
        ],
        &rows,
    )
}
