//! `berth images`: the images tenants use or berth pulled, with size, digest and tenants; and
//! which of them `berth images prune` may remove (pulled by berth, used by no tenant).

use super::{ledger::Ledger, reference::normalize};
use crate::{desired::Desired, runtime::ImageInfo};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ImageRow {
    pub reference: String,
    pub id: String,
    pub size: u64,
    pub digest: Option<String>,
    /// Tenants whose desired (or last valid) state names this image.
    pub tenants: Vec<String>,
    pub pulled_by_berth: bool,
    /// The registry digest every tenant naming this reference runs (see `pins`).
    pub pinned: Option<String>,
}

/// Image (normalized) → the tenants naming it, from every desired and last valid instance.
pub fn users(d: &Desired) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (t, i) in d.instances.iter().chain(&d.last_valid) {
        for s in &i.services {
            out.entry(normalize(&s.image))
                .or_default()
                .insert(t.clone());
        }
    }
    out
}

/// One row per name the engine has that a tenant uses or berth pulled.
pub fn rows(d: &Desired, ledger: &Ledger, engine: &[ImageInfo]) -> Vec<ImageRow> {
    let users = users(d);
    let pulled: BTreeSet<String> = ledger.keys().map(|r| normalize(r)).collect();
    let mut out = Vec::new();
    for img in engine {
        for tag in &img.tags {
            if !users.contains_key(tag) && !pulled.contains(tag) {
                continue;
            }
            let repo = tag.rsplit_once(':').map_or(tag.as_str(), |x| x.0);
            out.push(ImageRow {
                reference: tag.clone(),
                id: img
                    .id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect(),
                size: img.size,
                digest: img
                    .digests
                    .iter()
                    .find(|d| d.starts_with(&format!("{repo}@")))
                    .and_then(|d| d.split_once('@'))
                    .map(|x| x.1.to_string()),
                tenants: users.get(tag).into_iter().flatten().cloned().collect(),
                pulled_by_berth: pulled.contains(tag),
                pinned: None,
            });
        }
    }
    out.sort_by(|a, b| a.reference.cmp(&b.reference));
    out
}

/// Marks each row with the pin of its reference, if any.
pub fn mark_pins(rows: &mut [ImageRow], pins: &super::pins::Pins) {
    for r in rows {
        r.pinned = pins
            .iter()
            .find(|(image, _)| normalize(image) == r.reference)
            .map(|(_, p)| p.digest.clone());
    }
}

/// What prune may remove: pulled by berth and named by no tenant, desired or frozen at its
/// last valid state. None while a frozen tenant's images are unknown (no last valid state).
pub fn prunable(d: &Desired, ledger: &Ledger) -> Option<Vec<String>> {
    if d.frozen.keys().any(|t| !d.last_valid.contains_key(t)) {
        return None;
    }
    let users = users(d);
    Some(
        ledger
            .keys()
            .filter(|r| !users.contains_key(&normalize(r)))
            .cloned()
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::demo_instance;

    fn desired() -> Desired {
        let mut d = Desired::default();
        d.instances.insert("acme".into(), demo_instance("acme"));
        d
    }

    fn ledger(refs: &[&str]) -> Ledger {
        refs.iter()
            .map(|r| (r.to_string(), Default::default()))
            .collect()
    }

    #[test]
    fn only_images_berth_pulled_and_nobody_uses_are_prunable() {
        let d = desired();
        let used = d.instances["acme"].services[0].image.clone();
        let l = ledger(&[&used, "old/app:1"]);
        assert_eq!(prunable(&d, &l), Some(vec!["old/app:1".to_string()]));
        let mut frozen = d.clone();
        frozen.frozen.insert("broken".into(), "bad file".into());
        assert_eq!(
            prunable(&frozen, &l),
            None,
            "a frozen tenant's images are unknown"
        );
    }

    #[test]
    fn rows_name_the_tenants_and_whether_berth_pulled_the_image() {
        let d = desired();
        let used = normalize(&d.instances["acme"].services[0].image);
        let engine = vec![
            ImageInfo {
                id: "sha256:0123456789abcdef".into(),
                size: 42,
                tags: vec![used.clone()],
                digests: vec![],
            },
            ImageInfo {
                id: "sha256:ffff".into(),
                size: 1,
                tags: vec!["unrelated:1".into()],
                digests: vec![],
            },
        ];
        let r = rows(&d, &ledger(&[]), &engine);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].reference, used);
        assert_eq!(r[0].id, "0123456789ab");
        assert_eq!(r[0].tenants, vec!["acme".to_string()]);
        assert!(!r[0].pulled_by_berth);
    }
}
