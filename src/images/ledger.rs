//! The images berth pulled itself (`<state>/images.json`, written atomically): only these are
//! ever removed by `berth images prune`; images an operator built or loaded are never touched.

use crate::store::atomic;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Pulled {
    /// Unix seconds of the pull.
    pub at: u64,
    /// The engine's image id it got.
    pub id: String,
}

/// Image reference (as the template names it) → its pull.
pub type Ledger = BTreeMap<String, Pulled>;

pub fn load(path: &Path) -> Ledger {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(path: &Path, ledger: &Ledger) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(ledger).expect("ledger serializes");
    atomic::write(path, &json, 0o600)
}

/// Adds (or refreshes) one pull.
pub fn record(path: &Path, image: &str, id: &str) -> std::io::Result<()> {
    let mut l = load(path);
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    l.insert(image.into(), Pulled { at, id: id.into() });
    save(path, &l)
}
