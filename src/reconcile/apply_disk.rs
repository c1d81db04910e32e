//! The disk steps of an apply: per-tenant filesystems made, grown and filled with the
//! volumes they take over. File work runs off the async threads.

use super::{
    apply::{Applier, ApplyError},
    plan::MovedVolume,
};
use crate::{desired::Instance, runtime::spec};

impl Applier<'_> {
    pub(super) async fn check_volumes_fit(
        &self,
        t: &str,
        moves: &[MovedVolume],
    ) -> Result<(), ApplyError> {
        let d = self.disks_for(t, &moves[0].volume)?;
        let (tenant, moves) = (t.to_string(), moves.to_vec());
        self.blocking(t, "volume size check", move || {
            let from: Vec<&std::path::Path> = moves
                .iter()
                .map(|m| std::path::Path::new(&m.from))
                .collect();
            d.check_fit(&tenant, &from)
        })
        .await
    }

    pub(super) async fn grow_disk(&self, t: &str, inst: &Instance) -> Result<(), ApplyError> {
        let d = self.disks_for(t, "its disk")?;
        let Some(bytes) = inst.quota.disk else {
            return Ok(());
        };
        let tenant = t.to_string();
        self.blocking(t, "disk growth", move || d.grow_stopped(&tenant, bytes))
            .await
    }

    pub(super) async fn move_volume(&self, t: &str, m: &MovedVolume) -> Result<(), ApplyError> {
        let ns = &self.host.namespace;
        let d = self.disks_for(t, &m.volume)?;
        let (tenant, mv) = (t.to_string(), m.clone());
        let to = self
            .blocking(t, "volume copy", move || {
                d.move_in(&tenant, &mv.volume, std::path::Path::new(&mv.from))
            })
            .await?;
        // The copy is whole before the engine's volume goes; a crash between the two leaves
        // no volume, and the next pass creates the bind onto the copy.
        let name = spec::volume_name(ns, t, &m.volume);
        self.rt
            .remove_volume(&name)
            .await
            .map_err(Self::rt_err(t))?;
        let device = Some(to.to_string_lossy().into_owned());
        self.rt
            .create_volume(&spec::volume_spec(ns, t, &m.volume, device))
            .await
            .map_err(Self::rt_err(t))
    }

    pub(super) async fn create_volume(
        &self,
        t: &str,
        inst: &Instance,
        v: &str,
    ) -> Result<(), ApplyError> {
        let device = match &self.disks {
            Some(d) if inst.quota.disk.is_some() => {
                Some(d.prepare_volume(t, v)?.to_string_lossy().into_owned())
            }
            _ => None,
        };
        self.rt
            .create_volume(&spec::volume_spec(&self.host.namespace, t, v, device))
            .await
            .map_err(Self::rt_err(t))
    }

    pub(super) fn disks_for(
        &self,
        t: &str,
        what: &str,
    ) -> Result<std::sync::Arc<crate::disk::Disks>, ApplyError> {
        self.disks.clone().ok_or_else(|| ApplyError::NoDisks {
            tenant: t.into(),
            what: what.into(),
        })
    }

    /// Runs file work (copies, tree walks) off the async threads.
    pub(super) async fn blocking<T: Send + 'static>(
        &self,
        t: &str,
        what: &'static str,
        f: impl FnOnce() -> Result<T, crate::disk::DiskError> + Send + 'static,
    ) -> Result<T, ApplyError> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ApplyError::Blocking {
                tenant: t.into(),
                what,
            }),
        }
    }
}
