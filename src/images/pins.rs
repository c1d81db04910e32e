//! Digest pinning (`<state>/image-pins.json`, written atomically): the first time a tenant runs
//! an image that came from a registry, the engine's image id and the registry digest are
//! recorded for the name the template gives it. From then on every tenant naming it runs that
//! image: when the name comes to point at other content (a tag moved upstream and someone
//! pulled it, or the image was removed), a pass sees the name as missing and the pull puts the
//! pinned image back under it (re-tagged if the engine still has it, else pulled by digest),
//! so a moved tag never silently splits a fleet.

use super::ImageError;
use crate::{runtime::Inventory, store::atomic};
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::Path};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Pin {
    /// The engine's image id (`sha256:` of its config): the content every tenant runs.
    pub id: String,
    /// `<repository>@sha256:…` in the image's own repository (a mirror serves it too).
    pub digest: String,
    /// Unix seconds when it was pinned.
    pub at: u64,
}

/// Image reference, as templates name it → its pin.
pub type Pins = BTreeMap<String, Pin>;

pub fn load(path: &Path) -> Pins {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub fn save(path: &Path, pins: &Pins) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(pins).expect("pins serialize");
    atomic::write(path, &json, 0o644)
}

/// The repository part of a normalized reference (`wordpress:6` → `wordpress`).
fn repository(normalized: &str) -> &str {
    let name = normalized.split('@').next().unwrap_or(normalized);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.rfind(':') {
        Some(at) => &name[..name.len() - last.len() + at],
        None => name,
    }
}

/// A pin for `image` from what the engine has under its name: None when the engine does not
/// have it, or has it from no registry (built or loaded here: nothing to pin to).
pub fn pin_of(image: &str, inv: &Inventory, at: u64) -> Option<Pin> {
    let name = super::reference::normalize(image);
    let id = inv.image_ids.get(&name)?;
    let sha = inv
        .image_ids
        .iter()
        .filter(|(n, i)| *i == id && n.contains('@'))
        .filter_map(|(n, _)| n.split_once('@').map(|x| x.1.to_string()))
        .next()?;
    Some(Pin {
        id: id.clone(),
        digest: format!("{}@{sha}", repository(&name)),
        at,
    })
}

/// Hides from `inv` every pinned name whose engine image is not the pinned one, so a pass
/// plans its pull; the names hidden.
pub fn hide_moved(inv: &mut Inventory, pins: &Pins) -> Vec<String> {
    let mut moved = vec![];
    for (image, pin) in pins {
        let name = super::reference::normalize(image);
        if inv.image_ids.get(&name).is_some_and(|id| *id != pin.id) {
            if let Some(names) = &mut inv.images {
                names.remove(&name);
            }
            moved.push(image.clone());
        }
    }
    moved
}

impl super::Pulls {
    /// `image`'s pin, if it has one.
    pub(super) fn pin(&self, image: &str) -> Option<Pin> {
        self.pins.lock().expect("pins lock").get(image).cloned()
    }

    /// All pins (for `berth images`).
    pub fn pins(&self) -> Pins {
        self.pins.lock().expect("pins lock").clone()
    }

    /// Before a pass plans: pins every image a tenant names that the engine has from a
    /// registry and that has no pin yet, and hides from `inv` the pinned names that point at
    /// other content now (the pass then pulls them, and `restore_pin` puts the pin back).
    pub fn enforce_pins(&self, inv: &mut Inventory, desired: &crate::desired::Desired) {
        let images = desired
            .instances
            .values()
            .flat_map(|i| i.services.iter().map(|s| s.image.as_str()));
        self.pin_and_check(inv, images);
    }

    /// `enforce_pins` for a preview: hides pinned names that point at other content, and
    /// records nothing (no new pin, no warning).
    pub fn check_pins(&self, inv: &mut Inventory) {
        let pins = self.pins.lock().expect("pins lock");
        let _ = hide_moved(inv, &pins);
    }

    /// Pins those of `images` the engine has from a registry and that have no pin yet, and
    /// hides from `inv` every pinned name that points at other content.
    pub fn pin_and_check<'a>(&self, inv: &mut Inventory, images: impl Iterator<Item = &'a str>) {
        let Some(path) = &self.pins_path else { return };
        let mut pins = self.pins.lock().expect("pins lock");
        let before = pins.len();
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        for image in images {
            if !pins.contains_key(image)
                && let Some(p) = pin_of(image, inv, at)
            {
                tracing::info!(image, id = p.id, digest = p.digest, "image pinned");
                pins.insert(image.to_string(), p);
            }
        }
        if pins.len() != before
            && let Err(e) = save(path, &pins)
        {
            tracing::error!(error = %e, "image pins not saved");
        }
        for image in hide_moved(inv, &pins) {
            tracing::warn!(
                image,
                "the name points at other content than its pin; putting the pin back"
            );
        }
    }

    /// Puts `pin`'s image back under the name `image`: re-tagged when the engine still has it,
    /// else pulled by digest (from the mirror when one is configured) and tagged.
    pub(super) async fn restore_pin(&self, image: &str, pin: &Pin) -> Result<(), ImageError> {
        let rt = &self.rt;
        let have = rt.list_images().await?;
        if !have.iter().any(|i| i.id == pin.id) {
            let source = self.source(&pin.digest);
            let auth = self.credentials(&source)?;
            let on = |e: &crate::runtime::PullEvent| self.progress(image, e);
            rt.pull_image(&source, auth, &on)
                .await
                .map_err(|source| ImageError::PinnedPull {
                    digest: pin.digest.clone(),
                    source,
                })?;
        }
        rt.tag_image(&pin.id, image).await?;
        let now = rt.list_images().await?;
        let name = super::reference::normalize(image);
        match now.iter().find(|i| i.tags.contains(&name)) {
            Some(i) if i.id == pin.id => Ok(()),
            _ => Err(ImageError::PinMoved {
                image: image.into(),
                digest: pin.digest.clone(),
                id: pin.id.clone(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn inv(entries: &[(&str, &str)]) -> Inventory {
        let mut i = Inventory::default();
        i.image_ids = entries
            .iter()
            .map(|(n, id)| (n.to_string(), id.to_string()))
            .collect();
        i.images = Some(i.image_ids.keys().cloned().collect::<BTreeSet<_>>());
        i
    }

    #[test]
    fn an_image_from_a_registry_is_pinned_to_its_id_and_digest_in_its_own_repository() {
        let i = inv(&[
            ("wordpress:6.6-apache", "sha256:aaa"),
            ("127.0.0.1:5000/library/wordpress@sha256:d1", "sha256:aaa"),
            ("berth/demo:1", "sha256:bbb"),
        ]);
        let p = pin_of("wordpress:6.6-apache", &i, 7).unwrap();
        assert_eq!(p.id, "sha256:aaa");
        assert_eq!(p.digest, "wordpress@sha256:d1");
        assert!(
            pin_of("berth/demo:1", &i, 7).is_none(),
            "built here: no digest"
        );
        assert!(pin_of("nginx:1", &i, 7).is_none(), "not on the engine");
        let p = pin_of(
            "127.0.0.1:5000/app:2",
            &inv(&[
                ("127.0.0.1:5000/app:2", "x"),
                ("127.0.0.1:5000/app@sha256:e", "x"),
            ]),
            1,
        )
        .unwrap();
        assert_eq!(
            p.digest, "127.0.0.1:5000/app@sha256:e",
            "a registry's port is not a tag"
        );
    }

    #[test]
    fn a_name_moved_to_other_content_is_hidden_so_the_pass_pulls_the_pin_back() {
        let mut i = inv(&[
            ("wordpress:6.6-apache", "sha256:new"),
            ("mariadb:11.4", "sha256:m"),
        ]);
        let pins = Pins::from([
            (
                "wordpress:6.6-apache".to_string(),
                Pin {
                    id: "sha256:old".into(),
                    digest: "wordpress@sha256:d".into(),
                    at: 0,
                },
            ),
            (
                "docker.io/library/mariadb:11.4".to_string(),
                Pin {
                    id: "sha256:m".into(),
                    digest: "mariadb@sha256:e".into(),
                    at: 0,
                },
            ),
        ]);
        assert_eq!(
            hide_moved(&mut i, &pins),
            vec!["wordpress:6.6-apache".to_string()]
        );
        let names = i.images.unwrap();
        assert!(!names.contains("wordpress:6.6-apache"));
        assert!(names.contains("mariadb:11.4"), "unmoved names stay");
    }
}
