//! The `probes:` section of the host config as written (validated in `desired::probes`).

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbesFile {
    /// Steady state: each healthy target once per interval (jittered ±10 %); default 30s.
    pub interval: Option<String>,
    /// While a target starts, is suspect or its tenant is being upgraded; default 1s.
    pub fast_interval: Option<String>,
    /// One probe's time limit; default 3s.
    pub timeout: Option<String>,
    /// Failures in a row that make a healthy target unhealthy; default 3.
    pub failures: Option<u32>,
    /// Successes in a row that make a target healthy; default 1.
    pub successes: Option<u32>,
    /// A target that never answered is shown unhealthy (not starting) after this; default 2m.
    pub start_period: Option<String>,
    /// Probes in flight at once across every tenant; default 32.
    pub concurrency: Option<usize>,
}
