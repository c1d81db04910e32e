//! Restoring a backup in place without losing anything: the tenant is held from the
//! reconciler, a safety backup of what it holds now is taken, a journal names both, and the
//! members are put in place (`swap.rs`: made ready beside what the tenant uses, then
//! switched). A failure that changed something puts the safety backup back. An agent killed mid-restore finds the journal at
//! its next start and finishes the restore (or, failing that, puts the safety backup back):
//! the tenant ends on its old data or on the restored data, never on a mix.

use super::{BackupError, Backups, Spool, archive::Manifest, io};
use crate::store::atomic;
use serde::{Deserialize, Serialize};
use std::{collections::BTreeMap, path::PathBuf};

/// What an unfinished restore was doing, in `<backups>/<tenant>/restoring.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Journal {
    /// The backup being restored.
    id: String,
    /// The backup of what the tenant held before, in `safety/`; empty when none was taken
    /// (the operator asked for none).
    safety: String,
    /// The backup was fetched from off the host for this restore: its archive goes when the
    /// restore is finished (here or by a resume after a crash).
    #[serde(default)]
    fetched: bool,
}

/// Who keeps the reconciler away from the tenant while a restore runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// The restore takes the tenant itself, and only if no other operation holds it (an
    /// upgrade's turn, a move, another restore): otherwise it is refused, never run inside
    /// that operation nor ending its hold.
    Restore,
    /// The caller already holds the tenant (an upgrade rolling its own turn back).
    Caller,
}

impl Backups {
    fn journal_path(&self, tenant: &str) -> PathBuf {
        self.dir(tenant).join("restoring.json")
    }

    fn safety_dir(&self, tenant: &str) -> PathBuf {
        self.dir(tenant).join("safety")
    }

    /// Restores `tenant`'s database and volumes from backup `id` in place. Secrets and rendered
    /// files stay as they are: the running containers already use them. `safety`: what the
    /// tenant holds is backed up first and put back if the restore fails; without it (a move's
    /// catch-up on a tenant that holds only an earlier copy from the same repository) a failed
    /// restore leaves the tenant as it failed.
    pub async fn restore(
        &self,
        tenant: &str,
        id: &str,
        safety: bool,
        holder: Holder,
    ) -> Result<Manifest, BackupError> {
        self.restore_with(tenant, id, safety, holder, || ()).await
    }

    /// `restore`, with `held` called once the tenant is held for it (and its result kept
    /// until the restore ends): what must start only then, such as holding the tenant's
    /// requests at the edge, never happens for a restore that is refused.
    pub async fn restore_with<G>(
        &self,
        tenant: &str,
        id: &str,
        safety: bool,
        holder: Holder,
        held: impl FnOnce() -> G,
    ) -> Result<Manifest, BackupError> {
        let _claim = self.claim(tenant)?;
        self.refuse_held(tenant, holder)?;
        let _turn = self.turn().await;
        self.instance(tenant)?;
        let (_awake, _hold) = self.hold_for_restore(tenant, holder).await?;
        // Read once held: a pass waited out by the hold may have applied a changed file.
        let inst = self.instance(tenant)?;
        let _held = held();
        // A backup no longer on this host comes back from an off-host repository first, and
        // goes again when the restore ends, whichever way.
        let mut fetched = self.fetch_offsite(tenant, id).await?;
        let (_spool, manifest, members) = self.open(tenant, id)?;
        let r = self
            .restore_safely(&inst, id, &members, (fetched.is_armed(), safety))
            .await;
        // A journal left behind (the safety backup could not be put back) is finished at the
        // next start, which needs the fetched archive: it removes it then.
        if self.journal_path(tenant).exists() {
            fetched.disarm();
        }
        r?;
        tracing::info!(tenant, id, "backup restored");
        Ok(manifest)
    }

    /// A restore of its own wakes a sleeping tenant (its database loads into a running
    /// server), then takes it from the reconciler in one step against any other holder;
    /// both are given back on every way out (a panic or a dropped future included).
    async fn hold_for_restore(
        &self,
        tenant: &str,
        holder: Holder,
    ) -> Result<
        (
            Option<crate::store::sleep::Busy>,
            Option<crate::services::Held<'_>>,
        ),
        BackupError,
    > {
        if holder == Holder::Caller {
            return Ok((None, None));
        }
        let awake = crate::sleep::wake_for(&self.cx, tenant, "restore", crate::sleep::WAKE_LIMIT)
            .await
            .map_err(|why| BackupError::NotReady {
                tenant: tenant.into(),
                why: why.to_string(),
            })?;
        let hold = self
            .cx
            .passes
            .try_hold_guard(tenant)
            .await
            .ok_or_else(|| held_elsewhere(tenant))?;
        Ok((Some(awake), Some(hold)))
    }

    /// A restore of its own refused at once while another operation holds the tenant (it
    /// would only wait in the host's turn to be refused then).
    fn refuse_held(&self, tenant: &str, holder: Holder) -> Result<(), BackupError> {
        match holder == Holder::Restore && self.cx.passes.is_held(tenant) {
            true => Err(held_elsewhere(tenant)),
            false => Ok(()),
        }
    }

    async fn restore_safely(
        &self,
        inst: &crate::desired::Instance,
        id: &str,
        members: &BTreeMap<String, PathBuf>,
        (fetched, take_safety): (bool, bool),
    ) -> Result<(), BackupError> {
        let tenant = inst.tenant.as_str();
        let safety_dir = self.safety_dir(tenant);
        // The safety backup is not counted against the plan's budget (it goes when the
        // restore ends), only against the filesystem's room.
        let safety = match take_safety {
            true => {
                let room = self.room(inst, false)?;
                self.write(inst, &safety_dir, &room).await?.id
            }
            false => String::new(),
        };
        let journal = Journal {
            id: id.into(),
            safety: safety.clone(),
            fetched,
        };
        let path = self.journal_path(tenant);
        let json = serde_json::to_vec(&journal).expect("journal serializes");
        atomic::write(&path, &json, 0o600).map_err(io(&path))?;
        let r = self.restore_members(tenant, members).await;
        if let Err(e) = &r {
            if matches!(e, BackupError::Unchanged(_)) {
                tracing::error!(tenant, id, error = %e, "restore failed before it changed anything");
            } else if safety.is_empty() {
                tracing::error!(tenant, id, error = %e, "restore failed; no safety backup was asked for");
            } else {
                tracing::error!(tenant, id, error = %e, "restore failed; putting the safety backup back");
                self.put_back(tenant, &journal.safety).await?;
            }
        }
        self.finish(tenant, &safety);
        r
    }

    /// Loads the safety backup `safety` back into `tenant`.
    async fn put_back(&self, tenant: &str, safety: &str) -> Result<(), BackupError> {
        let path = self.safety_dir(tenant).join(format!("{safety}.tar"));
        let spool = Spool::new(&self.dir(tenant))?;
        let (_, members) = super::archive::unpack(&path, spool.path())?;
        self.restore_members(tenant, &members).await
    }

    /// The restore is over: the journal goes, and every safety backup but `keep_id`.
    fn finish(&self, tenant: &str, keep_id: &str) {
        let journal = std::fs::read(self.journal_path(tenant))
            .ok()
            .and_then(|b| serde_json::from_slice::<Journal>(&b).ok());
        if let Some(j) = journal.filter(|j| j.fetched && !j.id.contains('/')) {
            let _ = std::fs::remove_file(self.dir(tenant).join(format!("{}.tar", j.id)));
        }
        let _ = std::fs::remove_file(self.journal_path(tenant));
        let Ok(rd) = std::fs::read_dir(self.safety_dir(tenant)) else {
            return;
        };
        for e in rd.filter_map(|e| e.ok()) {
            if e.file_name().to_string_lossy() != format!("{keep_id}.tar") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Tenants with an unfinished restore (a journal), held from the reconciler at once: the
    /// agent's first pass must not restart them half restored. `resume` then finishes them.
    pub fn hold_unfinished(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.cx.svc.host().backup_dir) else {
            return vec![];
        };
        let mut out = vec![];
        for e in rd.filter_map(|e| e.ok()) {
            let t = e.file_name().to_string_lossy().to_string();
            if self.journal_path(&t).exists() {
                self.cx.passes.hold(&t);
                out.push(t);
            }
        }
        out
    }

    /// Finishes the restores a killed agent left: the backup is restored again from the start
    /// (every step replaces, so repeating is safe); if that fails, the safety backup goes back.
    pub async fn resume(&self, tenants: Vec<String>) {
        for t in tenants {
            let r = self.resume_one(&t).await;
            if let Err(e) = &r {
                tracing::error!(tenant = t, error = %e, "unfinished restore could not be finished");
            }
            self.cx.passes.release(&t);
        }
    }

    async fn resume_one(&self, tenant: &str) -> Result<(), BackupError> {
        let path = self.journal_path(tenant);
        let data = std::fs::read(&path).map_err(io(&path))?;
        let j: Journal = serde_json::from_slice(&data).map_err(|e| BackupError::Corrupt {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        tracing::warn!(
            tenant,
            id = j.id,
            "finishing a restore the agent was stopped in"
        );
        let r = match self.open(tenant, &j.id) {
            Ok((_spool, _, members)) => self.restore_members(tenant, &members).await,
            Err(e) => Err(e),
        };
        match r {
            Err(e) if j.safety.is_empty() => {
                tracing::error!(tenant, error = %e, "no safety backup to put back (none was asked for)");
                self.finish(tenant, "");
                return Err(e);
            }
            Err(e) => {
                tracing::error!(tenant, error = %e, "putting the safety backup back");
                self.put_back(tenant, &j.safety).await?;
            }
            Ok(()) => {}
        }
        self.finish(tenant, &j.safety);
        Ok(())
    }

    /// Checks archive `id` of `tenant` and unpacks its members into a spool of their own
    /// (removed when the returned `Spool` is dropped). Nothing is made for an unknown archive.
    pub(super) fn open(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(Spool, Manifest, BTreeMap<String, PathBuf>), BackupError> {
        let path = self.dir(tenant).join(format!("{id}.tar"));
        if id.contains('/') || id.contains("..") || !path.exists() {
            return Err(BackupError::NotFound {
                tenant: tenant.into(),
                id: id.into(),
            });
        }
        // Whose archive it is, from its manifest alone, before anything is unpacked: never
        // one made of another tenant, or of an earlier tenant that had this name.
        let m = super::archive::manifest(&path)?;
        if !self.owner(tenant).owns(&m) {
            return Err(BackupError::Foreign {
                tenant: tenant.into(),
                id: id.into(),
                of: m.tenant,
            });
        }
        let spool = Spool::new(&self.dir(tenant))?;
        let (manifest, members) = super::archive::unpack(&path, spool.path())?;
        if manifest != m {
            return Err(BackupError::Corrupt {
                path: path.display().to_string(),
                why: "its manifest changed while it was read".into(),
            });
        }
        Ok((spool, manifest, members))
    }
}

fn held_elsewhere(tenant: &str) -> BackupError {
    BackupError::NotReady {
        tenant: tenant.into(),
        why: "another operation holds it (an upgrade's turn, a move or a restore): restore when that ends".into(),
    }
}
