//! `berth export kubernetes [TENANT…] [-o DIR]`: offline, from the host config, templates and
//! instance files (and the tenants' secrets where this host has them).

use crate::{
    desired,
    export::kubernetes::{Input, Options, render},
    store::atomic,
};
use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand, Debug)]
pub enum ExportCmd {
    /// Each tenant as a namespace of Kubernetes objects (YAML), one file per tenant in DIR
    /// (0600: it holds the tenant's secrets), or all on stdout.
    Kubernetes {
        /// Tenants to export (default: every valid instance).
        tenants: Vec<String>,
        /// Directory for <tenant>.yaml files.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        #[arg(long, default_value = "nginx")]
        ingress_class: String,
        /// Only tenants whose labels meet these requirements (`tier=gold,!legacy`).
        #[arg(short = 'l', long = "selector")]
        selector: Option<String>,
        /// Only tenants of this app (template).
        #[arg(long)]
        app: Option<String>,
        /// Only tenants on this plan.
        #[arg(long)]
        plan: Option<String>,
        /// The namespace the ingress controller runs in.
        #[arg(long, default_value = "ingress-nginx")]
        ingress_namespace: String,
        /// cert-manager ClusterIssuer for the tenants' certificates.
        #[arg(long, default_value = "letsencrypt")]
        cluster_issuer: String,
    },
}

pub fn run(config: &Path, cmd: &ExportCmd) -> Result<i32> {
    let ExportCmd::Kubernetes {
        tenants,
        out,
        ingress_class,
        selector,
        app,
        plan,
        ingress_namespace,
        cluster_issuer,
    } = cmd;
    let sel = desired::selector::Selector::parse(
        selector.as_deref(),
        [app.as_deref(), plan.as_deref(), None, None],
    )
    .map_err(|e| anyhow::anyhow!("--selector: {e}"))?;
    let host = desired::host::load(config)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .with_context(|| format!("host config {}", config.display()))?;
    let loaded = desired::load(&host);
    let all = &loaded.desired.instances;
    let chosen: Vec<&String> = if tenants.is_empty() {
        all.keys().collect()
    } else {
        tenants.iter().collect()
    };
    for t in &chosen {
        if !all.contains_key(*t) {
            bail!("no valid instance {t:?} here (see `berth validate`)");
        }
    }
    let chosen: Vec<&String> = chosen
        .into_iter()
        .filter(|t| sel.matches(&all[*t].subject()))
        .collect();
    if chosen.is_empty() && !sel.is_empty() {
        bail!("no valid instance here matches the selection");
    }
    let opts = Options {
        ingress_class: ingress_class.clone(),
        ingress_namespace: ingress_namespace.clone(),
        cluster_issuer: cluster_issuer.clone(),
        ..Options::default()
    };
    let layout = crate::store::layout::Layout::new(host.state_dir.clone());
    if let Some(dir) = out {
        atomic::create_dir(dir, 0o700).with_context(|| dir.display().to_string())?;
    }
    for t in chosen {
        let inst = &all[t];
        let secret = |name: &str| {
            std::fs::read_to_string(layout.secret(t, name))
                .ok()
                .map(|s| s.trim_end().to_string())
        };
        let input = Input {
            host: &host,
            inst,
            secret: &secret,
            opts: &opts,
        };
        let yaml = render(&input)?;
        match out {
            Some(dir) => {
                let path = dir.join(format!("{t}.yaml"));
                atomic::write(&path, yaml.as_bytes(), 0o600)
                    .with_context(|| path.display().to_string())?;
                eprintln!("{t}: {}", path.display());
            }
            None => print!("---\n{yaml}"),
        }
    }
    Ok(0)
}
