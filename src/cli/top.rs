//! `berth top`: the per-tenant figures of `/metrics`, live in the terminal (CPU as a share
//! of one core between two stats sweeps).

use super::table::human_bytes;
use super::{client::Client, table};
use crate::metrics::top::Top;
use anyhow::Result;
use hyper::Method;
use std::{collections::BTreeMap, time::Duration};

pub async fn run(c: &Client, once: bool, json: bool, every: Duration) -> Result<()> {
    let mut prev: Option<Top> = None;
    loop {
        let v = c.json(Method::GET, "/v1/top", None).await?;
        if json {
            println!("{}", serde_json::to_string_pretty(&v)?);
            return Ok(());
        }
        let top: Top = serde_json::from_value(v)?;
        // A terminal is redrawn in place; a pipe or a file gets one frame after another.
        if !once {
            match std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                true => print!("\x1b[H\x1b[2J"),
                false if prev.is_some() => println!(),
                false => {}
            }
        }
        print!("{}", render(&top, prev.as_ref()));
        if once {
            return Ok(());
        }
        // Keep the older sweep until a newer one arrives, so CPU% always spans two sweeps.
        if prev.as_ref().is_none_or(|p| p.at != top.at) {
            prev = Some(top);
        }
        tokio::time::sleep(every).await;
    }
}

fn render(top: &Top, prev: Option<&Top>) -> String {
    let before: BTreeMap<&str, f64> = prev
        .filter(|p| p.at < top.at)
        .map(|p| {
            p.tenants
                .iter()
                .map(|t| (t.tenant.as_str(), t.cpu_seconds))
                .collect()
        })
        .unwrap_or_default();
    let span = prev.map_or(0, |p| top.at.saturating_sub(p.at)) as f64;
    let rows: Vec<Vec<String>> = top
        .tenants
        .iter()
        .map(|t| {
            let cpu = match before.get(t.tenant.as_str()) {
                Some(b) if span > 0.0 => format!("{:.1}", (t.cpu_seconds - b) / span * 100.0),
                _ => "-".into(),
            };
            let disk = match (t.disk_used, t.disk_quota) {
                (Some(u), Some(q)) => format!("{}/{}", human_bytes(u), human_bytes(q)),
                _ => "-".into(),
            };
            vec![
                t.tenant.clone(),
                format!("{}:{}", t.app, t.version),
                t.phase.clone(),
                cpu,
                format!("{}/{}", human_bytes(t.memory), human_bytes(t.memory_limit)),
                t.pids.to_string(),
                disk,
                format!("{}/{}", human_bytes(t.rx_bytes), human_bytes(t.tx_bytes)),
                t.restarts.to_string(),
                t.oom_kills.to_string(),
                t.requests.to_string(),
                t.active.to_string(),
                t.limited.to_string(),
            ]
        })
        .collect();
    let mut out = table::render(
        &[
            "TENANT",
            "APP",
            "PHASE",
            "CPU%",
            "MEMORY",
            "PIDS",
            "DISK",
            "NET RX/TX",
            "RESTARTS",
            "OOM",
            "REQUESTS",
            "ACTIVE",
            "429",
        ],
        &rows,
    );
    out.push_str(&format!(
        "stats swept at {} in {:.2} s; disk quotas: {}\n",
        utc(top.at),
        top.sweep_seconds,
        top.disk_quotas
    ));
    out
}

/// Unix seconds as `2026-12-07 07:41:03 UTC`.
fn utc(at: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(at as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::top::TenantTop;

    fn top(at: u64, cpu: f64) -> Top {
        Top {
            at,
            tenants: vec![TenantTop {
                tenant: "acme".into(),
                cpu_seconds: cpu,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn cpu_is_the_share_of_a_core_between_two_sweeps() {
        let out = render(&top(115, 13.0), Some(&top(100, 10.0)));
        assert!(out.contains("20.0"), "{out}");
        assert!(render(&top(100, 10.0), None).contains(" - "));
        assert!(
            out.contains("stats swept at 1970-01-01 00:01:55 UTC"),
            "{out}"
        );
    }
}
