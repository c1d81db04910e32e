//! Long operations from the command line: the request starts one on the agent and the
//! command follows it (`GET /v1/operations/{id}`) with a spinner until it ends; `--detach`
//! prints the operation and returns at once; `berth op ID [--wait]` looks at one later. The
//! operation belongs to the agent: a command interrupted (Ctrl-C, a dropped connection)
//! leaves it running to its end.

use super::{
    Output,
    client::{Client, api_path},
    print, progress,
};
use anyhow::{Result, bail};
use hyper::Method;
use serde_json::Value;
use std::time::Duration;

/// How long a follow keeps asking through an agent that does not answer (a restart).
const UNREACHABLE_FOR: Duration = Duration::from_secs(10);

/// Starts the operation and, unless `detach`, waits for it: its result (None when detached,
/// after printing the operation).
pub async fn run(
    c: &Client,
    (method, path, body): (Method, &str, Option<Value>),
    msg: String,
    detach: bool,
    output: Output,
) -> Result<Option<Value>> {
    let op = c.json(method, path, body).await?;
    let Some(id) = op["id"].as_str().filter(|i| i.starts_with("op_")) else {
        bail!("the agent did not answer with an operation: {op}");
    };
    if detach {
        print(output, &op, |op| {
            format!(
                "operation {} started ({}); follow it with `berth op {} --wait`\n",
                op["id"].as_str().unwrap_or("?"),
                op["kind"].as_str().unwrap_or("?"),
                op["id"].as_str().unwrap_or("?"),
            )
        });
        return Ok(None);
    }
    let id = id.to_string();
    let done = progress::during(msg, follow(c, &id)).await?;
    result(&done).map(Some)
}

/// The operation once it has ended, asking after 20 ms, then twice as long each time up to
/// every 250 ms (a small backup ends within the first few looks).
pub async fn follow(c: &Client, id: &str) -> Result<Value> {
    let path = api_path(&["v1", "operations", id], &[]);
    let mut unreachable_since = None;
    let pauses =
        crate::backoff::Doubling::new(Duration::from_millis(20), Duration::from_millis(250));
    let mut looks = 0u32;
    loop {
        match c.json(Method::GET, &path, None).await {
            Ok(op) if op["state"] != "running" => return Ok(op),
            Ok(_) => unreachable_since = None,
            // The agent restarting: its next start ends the operation as interrupted.
            Err(e) if e.to_string().contains("cannot reach") => {
                let since = *unreachable_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > UNREACHABLE_FOR {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        looks = looks.saturating_add(1);
        tokio::time::sleep(pauses.after(looks)).await;
    }
}

/// A succeeded operation's result; a failed one's error.
fn result(op: &Value) -> Result<Value> {
    match op["state"].as_str() {
        Some("succeeded") => Ok(op["result"].clone()),
        _ => bail!(
            "{} (operation {})",
            op["error"].as_str().unwrap_or("the operation failed"),
            op["id"].as_str().unwrap_or("?")
        ),
    }
}

/// `berth op ID [--wait]`.
pub async fn show(c: &Client, id: &str, wait: bool, output: Output) -> Result<i32> {
    let op = match wait {
        true => progress::during(format!("waiting for {id}"), follow(c, id)).await?,
        false => {
            c.json(Method::GET, &api_path(&["v1", "operations", id], &[]), None)
                .await?
        }
    };
    print(output, &op, summary);
    Ok(match op["state"].as_str() {
        Some("failed") => 1,
        _ => 0,
    })
}

fn summary(op: &Value) -> String {
    let s = |k: &str| op[k].as_str().unwrap_or("-").to_string();
    let mut out = format!("{} {} {} {}\n", s("id"), s("kind"), s("tenant"), s("state"));
    if let Some(e) = op["error"].as_str() {
        out.push_str(&format!("error: {e}\n"));
    }
    if !op["result"].is_null() {
        out.push_str(&format!(
            "result: {}\n",
            serde_json::to_string(&op["result"]).unwrap_or_default()
        ));
    }
    out
}
