//! The overview's filter: the fleet's selector (app, plan, phase, labels) and a search box.

use super::pages::Row;
use crate::desired::selector::{Selector, SelectorError, Subject};
use serde::Deserialize;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    #[serde(default)]
    pub(super) app: String,
    #[serde(default)]
    pub(super) phase: String,
    #[serde(default)]
    pub(super) q: String,
    /// The fleet's selector: label requirements (`tier=gold,!legacy`).
    #[serde(default)]
    pub(super) labels: String,
    #[serde(default)]
    pub(super) plan: String,
}

impl Filter {
    /// The same selector as `berth ls` (the search box beside it).
    pub(super) fn selector(&self) -> Result<Selector, SelectorError> {
        let fields = [
            Some(&*self.app),
            Some(&*self.plan),
            None,
            Some(&*self.phase),
        ];
        Selector::parse(Some(&self.labels), fields)
    }

    pub(super) fn keeps(&self, sel: &Selector, r: &Row) -> bool {
        let subject = Subject {
            app: Some(&r.app),
            plan: Some(&r.plan),
            version: Some(&r.version),
            phase: Some(&r.phase),
            labels: &r.labels,
        };
        sel.matches(&subject)
            && (self.q.is_empty() || r.tenant.contains(&self.q) || r.app.contains(&self.q))
    }
}

pub(super) const PHASES: &[&str] = &[
    "running",
    "pulling",
    "starting",
    "asleep",
    "unhealthy",
    "provisioning",
    "stopped",
    "suspended",
    "failing",
    "invalid",
    "removing",
];
