//! A backup's members put in place of what a tenant holds, so that no failure leaves it with
//! a mix: leftovers of a restore cut short go first; then everything is made ready beside
//! what the tenant uses (the database staged, every volume unpacked beside its content), each
//! with its room checked, so a failure or a full disk there drops what was made and changes
//! nothing (`Unchanged`); only then is it switched, by renames that need no room. A database
//! that loads in place (PostgreSQL, in one transaction; a MariaDB database with views or
//! triggers) is loaded before the volumes are made ready, as it always was.

use super::{
    BackupError, Backups,
    dump::{self, DbStage},
    replace::{self, Then},
};
use crate::{desired::Instance, runtime::Runtime, store::Layout};
use std::{collections::BTreeMap, path::PathBuf};

/// Where a restore works: the engine, the host's namespace, the layout, the tenant.
struct At<'a> {
    rt: &'a dyn Runtime,
    ns: &'a str,
    layout: &'a Layout,
    inst: &'a Instance,
}

impl Backups {
    /// Puts the database dump and volume archives in place of `tenant`'s, in its running
    /// containers (see the module's text).
    pub(super) async fn restore_members(
        &self,
        tenant: &str,
        members: &BTreeMap<String, PathBuf>,
    ) -> Result<(), BackupError> {
        let inst = self.instance(tenant)?;
        let at = At {
            rt: self.cx.svc.runtime().as_ref(),
            ns: &self.cx.svc.host().namespace,
            layout: self.cx.svc.layout(),
            inst: &inst,
        };
        let vols: Vec<(&str, &PathBuf)> = members
            .iter()
            .filter_map(|(name, data)| volume_member(name).map(|v| (v, data)))
            .collect();
        let unchanged = |e: BackupError| BackupError::Unchanged(Box::new(e));
        at.discard_volumes(&vols).await.map_err(unchanged)?;
        let sql = members.get("database.sql");
        let db = match sql {
            Some(sql) => dump::stage_database(at.rt, at.layout, at.ns, at.inst, sql)
                .await
                .map_err(unchanged)?,
            None => DbStage::None,
        };
        let loaded_in_place = matches!(db, DbStage::InPlace);
        if let (true, Some(sql)) = (loaded_in_place, sql) {
            dump::switch_database(at.rt, at.layout, at.ns, at.inst, (&db, sql)).await?;
        }
        if let Err(e) = at.stage_volumes(&vols).await {
            dump::discard_database(at.rt, at.layout, at.ns, at.inst, &db).await;
            let _ = at.discard_volumes(&vols).await;
            return Err(match loaded_in_place {
                true => e,
                false => unchanged(e),
            });
        }
        if let (false, Some(sql)) = (loaded_in_place, sql) {
            let switched = dump::switch_database(at.rt, at.layout, at.ns, at.inst, (&db, sql));
            if let Err(e) = switched.await {
                let _ = at.discard_volumes(&vols).await;
                return Err(e);
            }
        }
        at.switch_volumes(&vols).await
    }
}

impl At<'_> {
    /// Room for each volume's unpacked copy, measured after what was made ready so far, then
    /// the copy made.
    async fn stage_volumes(&self, vols: &[(&str, &PathBuf)]) -> Result<(), BackupError> {
        for (volume, data) in vols {
            replace::room(self.rt, self.ns, self.inst, volume, data).await?;
            replace::stage(self.rt, self.ns, self.inst, volume, data).await?;
        }
        Ok(())
    }

    async fn discard_volumes(&self, vols: &[(&str, &PathBuf)]) -> Result<(), BackupError> {
        for (volume, _) in vols {
            replace::finish(self.rt, self.ns, self.inst, volume, Then::Discard).await?;
        }
        Ok(())
    }

    /// Each volume switched in turn; on a failure, the copies not yet switched go (the one
    /// whose switch failed keeps what it set aside, for the safety backup's put-back).
    async fn switch_volumes(&self, vols: &[(&str, &PathBuf)]) -> Result<(), BackupError> {
        for (i, (volume, _)) in vols.iter().enumerate() {
            let r = replace::finish(self.rt, self.ns, self.inst, volume, Then::Switch).await;
            if let Err(e) = r {
                for (v, _) in &vols[i + 1..] {
                    let _ = replace::finish(self.rt, self.ns, self.inst, v, Then::Discard).await;
                }
                return Err(e);
            }
        }
        Ok(())
    }
}

/// The volume an archive member holds (`volumes/<name>.tar`).
fn volume_member(name: &str) -> Option<&str> {
    name.strip_prefix("volumes/")
        .and_then(|n| n.strip_suffix(".tar"))
}
