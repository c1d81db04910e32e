//! The fleet's one selector as API query parameters (`GET /v1/instances`, the dashboard).

use super::ApiError;
use crate::desired;
use serde::Deserialize;

/// The fleet's one selector (`berth ls -l … --app … --plan … --version … --phase …`).
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
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
    pub fn selector(&self) -> Result<desired::selector::Selector, ApiError> {
        let fields = [&self.app, &self.plan, &self.version, &self.phase].map(|f| f.as_deref());
        desired::selector::Selector::parse(self.selector.as_deref(), fields)
            .map_err(|e| ApiError::BadRequest(format!("selector: {e}")))
    }
}
