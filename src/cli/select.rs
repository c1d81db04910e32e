//! The fleet selector on the command line (`-l tier=gold,!legacy --app wordpress --plan small
//! --version 6.4 --phase running`), and one operation run on each tenant it takes.

use super::client::{Client, api_path};
use crate::desired::selector::Selector;
use anyhow::Result;
use clap::Args;
use hyper::Method;

#[derive(Args, Debug, Default, Clone)]
pub struct Select {
    /// Tenants whose labels meet every requirement: `tier=gold`, `region!=eu`, `beta` (has
    /// it), `!legacy` (lacks it), comma-separated.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
    /// Tenants of this app (template).
    #[arg(long)]
    pub app: Option<String>,
    /// Tenants on this plan.
    #[arg(long)]
    pub plan: Option<String>,
    /// Tenants at this version.
    #[arg(long)]
    pub version: Option<String>,
    /// Tenants in this phase now (running, asleep, failing, invalid …).
    #[arg(long)]
    pub phase: Option<String>,
}

impl Select {
    fn fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("selector", self.selector.as_deref()),
            ("app", self.app.as_deref()),
            ("plan", self.plan.as_deref()),
            ("version", self.version.as_deref()),
            ("phase", self.phase.as_deref()),
        ]
    }

    pub fn is_empty(&self) -> bool {
        self.fields().iter().all(|(_, v)| v.is_none())
    }

    /// Checked here first, so a typo is named before anything is asked of the agent. A flag
    /// given blank (`-l "$UNSET"`) is refused: it would select every tenant.
    pub fn check(&self) -> Result<()> {
        for (flag, v) in self.fields() {
            if v.is_some_and(|v| v.trim().is_empty()) {
                anyhow::bail!("--{flag} is empty: it would select every tenant");
            }
        }
        let fields = [&self.app, &self.plan, &self.version, &self.phase].map(|f| f.as_deref());
        Selector::parse(self.selector.as_deref(), fields)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("--selector: {e}"))
    }

    /// `/v1/instances` with this selector as its query.
    pub fn list_path(&self) -> String {
        let query: Vec<(&str, &str)> = self
            .fields()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        api_path(&["v1", "instances"], &query)
    }

    /// The tenants it takes, as the API lists them (a tenant token: only its own).
    pub async fn tenants(&self, c: &Client) -> Result<Vec<String>> {
        self.check()?;
        let v = c.json(Method::GET, &self.list_path(), None).await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["tenant"].as_str().map(String::from))
            .collect())
    }
}

/// A tenant named, or a selector: exactly one of the two.
pub async fn targets(c: &Client, tenant: Option<String>, sel: &Select) -> Result<Vec<String>> {
    match (tenant, sel.is_empty()) {
        (Some(t), true) => Ok(vec![t]),
        (Some(t), false) => anyhow::bail!(
            "name a tenant ({t}) or select tenants (-l, --app, --plan, --version, --phase), not both"
        ),
        (None, true) => anyhow::bail!(
            "name a tenant, or select tenants with -l, --app, --plan, --version or --phase"
        ),
        (None, false) => {
            let ts = sel.tenants(c).await?;
            if ts.is_empty() {
                anyhow::bail!("no tenant matches the selection");
            }
            Ok(ts)
        }
    }
}

/// Runs `op` on each tenant in turn; every tenant is tried, failures are reported with the
/// tenant's name, and the exit code is 1 when any failed.
pub async fn each<F, Fut>(tenants: Vec<String>, mut op: F) -> Result<i32>
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    if tenants.len() == 1 {
        op(tenants[0].clone()).await?;
        return Ok(0);
    }
    let mut failed = 0;
    for t in tenants {
        if let Err(e) = op(t.clone()).await {
            eprintln!("{t}: {e:#}");
            failed += 1;
        }
    }
    Ok(i32::from(failed > 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selection_goes_to_the_list_as_its_query_and_a_typo_is_named() {
        let s = Select {
            selector: Some("tier=gold,!legacy".into()),
            app: Some("wordpress".into()),
            ..Select::default()
        };
        assert_eq!(
            s.list_path(),
            "/v1/instances?selector=tier%3Dgold%2C%21legacy&app=wordpress"
        );
        let bad = Select {
            selector: Some("tier=gold,".into()),
            ..Select::default()
        };
        assert!(
            bad.check()
                .unwrap_err()
                .to_string()
                .starts_with("--selector: ")
        );
        let blank = Select {
            app: Some(" ".into()),
            ..Select::default()
        };
        let e = blank.check().unwrap_err().to_string();
        assert_eq!(e, "--app is empty: it would select every tenant");
        assert!(Select::default().is_empty() && !s.is_empty());
    }
}
