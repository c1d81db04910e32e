//! `berth diff [T…]`, and what `berth add --dry-run` / `berth set --dry-run` print: the steps a
//! pass would take, without taking them.

use super::{Output, client::Client, print, table};
use anyhow::Result;
use hyper::Method;
use serde_json::Value;

/// What the next pass would do to each tenant (only `tenants`, when any are named); exit 1 when
/// there is anything to do, so scripts can ask "is the fleet converged?".
pub async fn diff(c: &Client, tenants: Vec<String>, output: Output) -> Result<i32> {
    let mut v = c.json(Method::GET, "/v1/diff", None).await?;
    if let (false, Some(all)) = (tenants.is_empty(), v.as_array_mut()) {
        all.retain(|p| tenants.iter().any(|t| p["tenant"] == t.as_str()));
    }
    let pending = v.as_array().is_some_and(|a| !a.is_empty());
    print(output, &v, plans);
    Ok(i32::from(pending))
}

/// `berth rm T [--purge] --dry-run`: what would be removed.
pub async fn rm(c: &Client, tenant: &str, purge: bool, output: Output) -> Result<()> {
    let body = serde_json::json!({ "tenant": tenant, "purge": purge });
    let v = c.json(Method::POST, "/v1/previews/rm", Some(body)).await?;
    print(output, &v, |v| {
        let kept = match purge {
            true => "",
            false => "; its volumes, secrets and files are kept (--purge removes them)",
        };
        format!(
            "removing {tenant} (dry run: nothing removed){kept}\n{}",
            plans(&Value::Array(vec![v.clone()]))
        )
    });
    Ok(())
}

/// A write's preview: the steps, then the file it would write.
pub fn written(output: Output, v: &Value, what: &str) {
    print(output, v, |v| {
        format!(
            "{what} (dry run: nothing written)\n{}\nthe instance file would be:\n{}",
            plans(&Value::Array(vec![v["plan"].clone()])),
            v["file"].as_str().unwrap_or("")
        )
    });
}

fn plans(v: &Value) -> String {
    let all = v.as_array().cloned().unwrap_or_default();
    if all.is_empty() {
        return "nothing to do: every tenant is as its file says\n".into();
    }
    let mut rows = Vec::new();
    let mut waits = String::new();
    for p in &all {
        let t = p["tenant"].as_str().unwrap_or("?");
        let steps = p["steps"].as_array().cloned().unwrap_or_default();
        if steps.is_empty() && p["waits"].is_null() {
            rows.push(vec![t.to_string(), "-".into(), "nothing to do".into()]);
        }
        for (i, s) in steps.iter().enumerate() {
            let n = (i + 1).to_string();
            let says = s["says"].as_str().unwrap_or("?").to_string();
            rows.push(vec![t.to_string(), n, says]);
        }
        if let Some(w) = p["waits"].as_str() {
            waits.push_str(&format!("{t}: waits: {w}\n"));
        }
    }
    format!("{}{waits}", table::render(&["TENANT", "#", "STEP"], &rows))
}
