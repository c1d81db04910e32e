//! Before the first wave of a fleet upgrade, the target version's images are brought onto the
//! host (pulled through `images::Pulls` like a tenant's), so no wave starts on a version whose
//! images cannot be had; a pull that fails halts the upgrade with the registry's reason. Each
//! image is pinned (id and registry digest) before the first wave.

use super::Upgrader;
use crate::{
    images::{Checked, reference::normalize},
    runtime::RuntimeError,
};
use std::{collections::BTreeSet, sync::Arc, time::Duration};

impl Upgrader {
    /// The target version's images, from its first pending tenant's instance at that version.
    fn target_images(&self) -> BTreeSet<String> {
        let (tenant, to) = {
            let cur = self.state.lock().expect("upgrade lock");
            let Some(s) = cur.as_ref() else {
                return BTreeSet::new();
            };
            let first = s.waves.iter().flatten().next().cloned();
            (first, s.to.clone())
        };
        let Some(t) = tenant else {
            return BTreeSet::new();
        };
        // A tenant that cannot be built at the version fails on its own in its wave.
        let Ok(inst) = self.instance_at(&t, &to) else {
            return BTreeSet::new();
        };
        inst.services.iter().map(|s| s.image.clone()).collect()
    }

    /// Waits until every target image is on the host; the first failed pull's reason.
    pub(super) async fn fetch_images(self: &Arc<Self>) -> Result<(), RuntimeError> {
        let images = self.target_images();
        let (rt, ns) = (self.cx.svc.runtime(), &self.cx.svc.host().namespace);
        let pulls = self.cx.svc.pulls();
        for image in images {
            loop {
                let mut inv = rt.inventory(ns).await?;
                // Pinned now if it came from a registry: every wave runs this very image.
                pulls.pin_and_check(&mut inv, std::iter::once(image.as_str()));
                // Not observed (a runtime without an image list) counts as present.
                if inv
                    .images
                    .is_none_or(|have| have.contains(&normalize(&image)))
                {
                    break;
                }
                if let Checked::Failed(reason) = pulls.check(&image, || {}) {
                    return Err(RuntimeError::Pull { image, reason });
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        Ok(())
    }
}
