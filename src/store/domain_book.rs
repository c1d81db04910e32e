//! The domain book's file (`<state>/domains.json`) as stored: proven bindings and claims
//! waiting for proof. `domains::DomainBook` keeps it; validation reads the bindings alone.

use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Binding {
    pub tenant: String,
    /// `dns` or `http`.
    pub method: String,
    pub verified_at: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pending {
    pub domain: String,
    pub tenant: String,
    pub token: String,
    pub created_at: u64,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Book {
    pub bindings: BTreeMap<String, Binding>,
    /// Keyed by `domain tenant`: several tenants may claim one domain; proof decides.
    pub pending: BTreeMap<String, Pending>,
}

/// Domain → tenant of every proven binding in the book's file at `path` (empty when there
/// is none or it cannot be read): what validation needs, without opening the book.
pub fn read_bindings(path: &Path) -> BTreeMap<String, String> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Book>(&b).ok())
        .map(|b| b.bindings.into_iter().map(|(d, b)| (d, b.tenant)).collect())
        .unwrap_or_default()
}
