//! The fleet's one selector as API query parameters (`GET /v1/instances`, the dashboard).

use super::ApiError;
use crate::desired;
use serde::Deserialize;

/// The fleet's one selector (`berth ls -l … --app … --plan … --version … --phase …`).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SelectQuery {
    /// Label requirements, comma-separated: `tier=gold`, `region!=eu`, `beta` (has),
    /// `!legacy` (lacks).
    pub selector: Option<String>,
    /// The app (template).
    pub app: Option<String>,
    pub plan: Option<String>,
    pub version: Option<String>,
    /// The phase now (`running`, `asleep`, `failing` …).
    pub phase: Option<String>,
}

impl SelectQuery {
    /// The selector; label requirements only for the operator (labels are the operator's own
    /// notes on tenants: a tenant token neither sees its labels nor probes them).
    pub fn selector(&self, operator: bool) -> Result<desired::selector::Selector, ApiError> {
        let fields = [&self.app, &self.plan, &self.version, &self.phase].map(|f| f.as_deref());
        let sel = desired::selector::Selector::parse(self.selector.as_deref(), fields)
            .map_err(|e| ApiError::BadRequest(format!("selector: {e}")))?;
        if !operator && !sel.labels.is_empty() {
            return Err(ApiError::Forbidden(
                "selector: labels are the operator's; select your tenants by app, plan, version or phase".into(),
            ));
        }
        Ok(sel)
    }
}
