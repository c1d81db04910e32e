//! `berth add`, `rm`, `stop`, `start`, `suspend`, `resume`: each prints a line, or with
//! `-o json` the outcome as JSON; `add --wait` shows the instance coming up.

use super::{Output, client::Client, client::api_path, parse_kv, progress, tenant_arg};
use anyhow::{Result, bail};
use hyper::Method;
use serde_json::{Value, json};

#[derive(clap::Args, Debug)]
pub struct AddArgs {
    #[arg(value_parser = tenant_arg)]
    pub tenant: String,
    #[arg(long)]
    pub template: String,
    #[arg(long)]
    pub version: Option<String>,
    #[arg(long = "domain")]
    pub domains: Vec<String>,
    #[arg(long)]
    pub plan: Option<String>,
    /// Parameter value, key=value (repeatable).
    #[arg(long = "set", value_parser = parse_kv)]
    pub set: Vec<(String, String)>,
    /// Wait until the instance runs (or fails).
    #[arg(long)]
    pub wait: bool,
    /// Check the new instance and show the steps that would make it; write nothing.
    #[arg(long, conflicts_with = "wait")]
    pub dry_run: bool,
    #[arg(short, long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Prints `text`, or `v` as JSON with `-o json`.
fn say(output: Output, v: &Value, text: String) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => println!("{text}"),
    }
}

pub async fn add(c: &Client, a: AddArgs) -> Result<i32> {
    let body = json!({
        "tenant": a.tenant, "template": a.template, "version": a.version, "domains": a.domains,
        "plan": a.plan, "parameters": a.set.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    });
    if a.dry_run {
        let v = c.json(Method::POST, "/v1/previews/add", Some(body)).await?;
        super::preview::written(a.output, &v, &format!("{} checked", a.tenant));
        return Ok(0);
    }
    let added = c.json(Method::POST, "/v1/instances", Some(body)).await?;
    if !a.wait {
        say(a.output, &added, format!("added {}", a.tenant));
        return Ok(0);
    }
    if a.output == Output::Table {
        println!("added {}", a.tenant);
    }
    let status = wait_running(c, &a.tenant).await?;
    say(
        a.output,
        &status,
        format!(
            "{} is running at {}",
            a.tenant,
            status["address"].as_str().unwrap_or("-")
        ),
    );
    Ok(0)
}

pub async fn rm(c: &Client, tenant: &str, purge: bool, output: Output) -> Result<()> {
    let query = [("purge", if purge { "true" } else { "false" })];
    c.json(
        Method::DELETE,
        &api_path(&["v1", "instances", tenant], &query),
        None,
    )
    .await?;
    let kept = if purge {
        " (purging volumes and secrets)"
    } else {
        " (volumes and secrets kept)"
    };
    let v = json!({ "tenant": tenant, "removed": true, "purge": purge });
    say(output, &v, format!("removing {tenant}{kept}"));
    Ok(())
}

pub async fn set_state(c: &Client, tenant: &str, state: &str, output: Output) -> Result<()> {
    c.json(
        Method::PUT,
        &api_path(&["v1", "instances", tenant, "state"], &[]),
        Some(json!({ "state": state })),
    )
    .await?;
    let v = json!({ "tenant": tenant, "desired": state });
    say(output, &v, format!("{tenant}: desired state {state}"));
    Ok(())
}

pub async fn move_to(
    c: &Client,
    tenant: &str,
    (to, from_backup): (&str, bool),
    detach: bool,
    output: Output,
) -> Result<()> {
    let path = api_path(&["v1", "instances", tenant, "move"], &[]);
    let body = serde_json::json!({ "to": to, "from_backup": from_backup });
    let call = (Method::POST, path.as_str(), Some(body));
    let msg = format!("{tenant}: moving to {to}");
    let Some(v) = super::ops::run(c, call, msg, detach, output).await? else {
        return Ok(());
    };
    let backup = v["backup"].as_str().unwrap_or("?");
    say(
        output,
        &v,
        format!("{tenant}: moved to {to}, restored backup {backup}"),
    );
    Ok(())
}

pub async fn restart(c: &Client, tenant: &str, output: Output) -> Result<()> {
    let path = api_path(&["v1", "instances", tenant, "restart"], &[]);
    let call = c.json(Method::POST, &path, None);
    let v = progress::during(format!("{tenant}: restarting"), call).await?;
    let names: Vec<&str> = v
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    say(
        output,
        &v,
        format!("{tenant}: restarted {}", names.join(", ")),
    );
    Ok(())
}

pub async fn set(
    c: &Client,
    tenant: &str,
    pairs: Vec<(String, String)>,
    unset: Vec<String>,
    dry_run: bool,
    output: Output,
) -> Result<()> {
    if pairs.is_empty() && unset.is_empty() {
        bail!("name at least one key=value or --unset KEY");
    }
    let set: std::collections::BTreeMap<_, _> = pairs.into_iter().collect();
    let body = json!({ "set": set, "unset": unset });
    if dry_run {
        let path = api_path(&["v1", "instances", tenant, "parameters", "preview"], &[]);
        let v = c.json(Method::POST, &path, Some(body)).await?;
        super::preview::written(output, &v, &format!("{tenant}: parameters checked"));
        return Ok(());
    }
    let path = api_path(&["v1", "instances", tenant, "parameters"], &[]);
    let v = c.json(Method::PUT, &path, Some(body)).await?;
    let now: Vec<String> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, x)| format!("{k}={}", x.as_str().unwrap_or_default()))
        .collect();
    say(
        output,
        &v,
        format!("{tenant}: parameters {}", now.join(" ")),
    );
    Ok(())
}

/// Polls the instance's status until it runs (its status) or is invalid (an error), 5 min at
/// most, showing its phase, or an image pull's bytes, as it goes. The agent drives the passes
/// itself (file watch, engine events); this only watches.
async fn wait_running(c: &Client, tenant: &str) -> Result<Value> {
    let bar = progress::spinner(format!("{tenant}: waiting for the first pass"));
    let r = wait_running_with(c, tenant, &bar).await;
    bar.finish_and_clear();
    r
}

/// What the spinner says: the phase, or the image pull the tenant waits for.
fn progress_line(tenant: &str, v: &Value) -> String {
    let p = &v["pull"];
    if !p.is_null() {
        let bytes = |k: &str| super::table::human_bytes(p[k].as_u64().unwrap_or(0));
        return format!(
            "{tenant}: pulling {} ({} of {}, {}/{} layers)",
            p["image"].as_str().unwrap_or("?"),
            bytes("bytes"),
            bytes("bytes_total"),
            p["layers_done"],
            p["layers"]
        );
    }
    let phase = v["phase"].as_str().unwrap_or("waiting for the first pass");
    match v["error"].as_str() {
        Some(e) => format!("{tenant}: {phase} ({e})"),
        None => format!("{tenant}: {phase}"),
    }
}

async fn wait_running_with(
    c: &Client,
    tenant: &str,
    bar: &indicatif::ProgressBar,
) -> Result<Value> {
    for _ in 0..600 {
        // Until the first pass after the write, the board does not list the instance yet.
        let v = match c
            .json(
                Method::GET,
                &api_path(&["v1", "instances", tenant], &[]),
                None,
            )
            .await
        {
            Ok(v) => v,
            Err(e) if e.to_string().starts_with("no instance") => Value::Null,
            Err(e) => return Err(e),
        };
        bar.set_message(progress_line(tenant, &v));
        match v["phase"].as_str() {
            Some("running") => return Ok(v),
            Some("invalid") => bail!("{tenant}: {}", v["error"].as_str().unwrap_or("invalid")),
            _ => tokio::time::sleep(std::time::Duration::from_millis(500)).await,
        }
    }
    bail!("{tenant} did not reach running within 5 minutes; see `berth status {tenant}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_says_the_phase_or_the_pull_in_human_units() {
        assert_eq!(
            progress_line("acme", &Value::Null),
            "acme: waiting for the first pass"
        );
        let v = json!({"phase": "failing", "error": "db: unhealthy"});
        assert_eq!(progress_line("acme", &v), "acme: failing (db: unhealthy)");
        let v = json!({"phase": "pulling", "pull": {"image": "wordpress:6", "bytes": 1_572_864,
            "bytes_total": 10_485_760, "layers": 4, "layers_done": 1}});
        assert_eq!(
            progress_line("acme", &v),
            "acme: pulling wordpress:6 (1.5 MiB of 10.0 MiB, 1/4 layers)"
        );
    }
}
