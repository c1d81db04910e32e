//! `berth backup prune --repo R [--url U] [--dry-run]`: forgets the off-host snapshots each
//! tenant's plan does not keep (`backups.offsite_keep`), then lets restic remove the data only
//! they used. It runs here, not in the agent: on another machine for an append-only repository
//! (whose host may add snapshots but never remove one), with `--url` reaching the storage
//! itself. Tenants are told apart by identity, so a purged tenant's snapshots and those of a
//! later tenant of its name are pruned each on their own.

use super::{Output, table};
use crate::{
    desired::repository::check_url,
    offsite::{Repo, restic::Restic, retention},
};
use anyhow::{Context, Result};
use std::{collections::BTreeMap, path::Path};

/// This host's newest inventories a prune keeps (a recovery reads the newest).
const KEEP_INVENTORIES: usize = 30;

pub async fn run(
    config: &Path,
    repo: &str,
    url: Option<String>,
    dry_run: bool,
    output: Output,
) -> Result<i32> {
    let host = crate::desired::host::load(config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("host config {}", config.display()))?;
    let mut r = host
        .backup_repositories
        .iter()
        .find(|r| r.name == repo)
        .cloned()
        .with_context(|| {
            let known: Vec<&str> = host
                .backup_repositories
                .iter()
                .map(|r| r.name.as_str())
                .collect();
            format!(
                "--repo {repo:?}: no such repository in backup_repositories (known: {})",
                known.join(", ")
            )
        })?;
    if let Some(u) = url {
        check_url(&u).context("--url")?;
        r.url = u;
    }
    let cache = host
        .state_dir
        .join("restic-cache")
        .join(format!("{}-prune", r.name));
    let client = Restic::new(r.clone(), cache, &host.namespace);
    let held = client.list_all().await?;
    let keep_for = |plan: &str| {
        host.plans
            .get(plan)
            .map(|p| p.backups.offsite_keep)
            .unwrap_or_default()
    };
    let gone = retention::to_forget(&held, &keep_for);
    // This host's inventories (what a recovery reads): the newest KEEP_INVENTORIES stay.
    let mut inventories = client.inventories().await?;
    let kept = inventories.len().saturating_sub(KEEP_INVENTORIES);
    let old_inventories: Vec<String> = inventories.drain(..kept).collect();
    let nothing = gone.is_empty() && old_inventories.is_empty();
    if !dry_run && !nothing {
        let mut ids: Vec<String> = gone.iter().map(|h| h.snapshot.clone()).collect();
        ids.extend(old_inventories.iter().cloned());
        client.forget_and_prune(&ids).await?;
    }
    let v = serde_json::json!({
        "repository": r.name,
        "url": r.shown(),
        "snapshots": held.len(),
        "forgotten": gone.iter().map(|h| &h.snapshot).collect::<Vec<_>>(),
        "inventories_forgotten": old_inventories,
        "dry_run": dry_run,
    });
    super::print(output, &v, |_| {
        let verb = if dry_run { "would forget" } else { "forgot" };
        format!(
            "{}this host's inventories: {} kept, {verb} {}\n",
            summary(&held, &gone, dry_run),
            inventories.len(),
            old_inventories.len()
        )
    });
    Ok(0)
}

/// One row per tenant identity: its name, snapshots held, kept and forgotten.
fn summary(held: &[retention::Held], gone: &[retention::Held], dry_run: bool) -> String {
    let mut by: BTreeMap<(&str, &str), (usize, usize)> = BTreeMap::new();
    for h in held {
        by.entry((&h.tenant, &h.tenant_id)).or_default().0 += 1;
    }
    for g in gone {
        by.entry((&g.tenant, &g.tenant_id)).or_default().1 += 1;
    }
    let rows: Vec<Vec<String>> = by
        .iter()
        .map(|((t, id), (n, g))| {
            let short = id.get(..8).unwrap_or(id);
            vec![
                t.to_string(),
                short.to_string(),
                n.to_string(),
                (n - g).to_string(),
                g.to_string(),
            ]
        })
        .collect();
    let verb = if dry_run { "WOULD FORGET" } else { "FORGOTTEN" };
    table::render(&["TENANT", "IDENTITY", "SNAPSHOTS", "KEPT", verb], &rows)
}
