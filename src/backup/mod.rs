//! Per-tenant backups: the database dumped with its own tool inside its container, the
//! tenant's other volumes as tar streams from the containers that mount them, and its rendered
//! files and secrets — one archive with a manifest and checksums, written atomically, 0600.

pub mod archive;
pub mod check;
mod clone;
mod dump;
pub mod engine;
pub mod inventory;
pub mod offsite;
mod receive;
pub mod recover;
mod replace;
pub mod restore;
pub mod room;
pub mod schedule;
mod staged;
mod swap;
mod tokens;

/// The archive member holding the tenant's instance file.
pub const INSTANCE_MEMBER: &str = "instance.yaml";

use crate::{desired::Instance, services::Cx, store::atomic};
use archive::Manifest;
use serde::Serialize;
use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("tenant {0} has no instance")]
    UnknownTenant(String),
    #[error("tenant {tenant} has no backup {id}")]
    NotFound { tenant: String, id: String },
    #[error("tenant {tenant}: {step} failed: {output}")]
    Command {
        tenant: String,
        step: String,
        output: String,
    },
    #[error(
        "backup {id} in {tenant}'s directory was made of another tenant ({of}, or an earlier tenant of this name): refused"
    )]
    Foreign {
        tenant: String,
        id: String,
        of: String,
    },
    #[error("tenant {0} already exists (or is still being purged)")]
    Exists(String),
    #[error("tenant {tenant}: {why}")]
    Invalid { tenant: String, why: String },
    #[error("tenant {tenant} did not come up: {why}")]
    NotReady { tenant: String, why: String },
    #[error("tenant {0} already has a backup or restore running; wait for it")]
    Busy(String),
    #[error("tenant {tenant}: no room for its backup: {why}")]
    NoRoom { tenant: String, why: String },
    #[error(
        "tenant {tenant}: restoring {what} needs about {need} free {place}, and {free} is free; nothing was changed: free space or raise its disk quota"
    )]
    NoRoomToRestore {
        tenant: String,
        what: String,
        need: String,
        free: String,
        place: &'static str,
    },
    /// A restore step that failed before it changed anything of the tenant.
    #[error("{0} (the tenant's data was not changed)")]
    Unchanged(Box<BackupError>),
    #[error("backup {path} is damaged: {why}")]
    Corrupt { path: String, why: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "the host config has no backup repository {0:?} (see backup_repositories: in berth.yaml)"
    )]
    NoRepository(String),
    #[error("a whole-host recovery is already running on this host; wait for it")]
    RecoveryRunning,
    #[error("off-host repository: {0}")]
    Offsite(String),
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
}

/// One line of `berth backup ls`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct BackupInfo {
    pub id: String,
    pub tenant: String,
    pub version: String,
    pub created: u64,
    pub bytes: u64,
    /// The copies of a new backup in the off-host repositories serving its tenant.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offsite: Vec<crate::offsite::Copied>,
    /// The repositories a new backup did not reach, and why.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub offsite_failed: Vec<offsite::OffsiteFailure>,
}

pub struct Backups {
    cx: Cx,
    /// Backups, restores and verifies running at once (`room::CONCURRENT`).
    slots: Arc<tokio::sync::Semaphore>,
    /// Tenants with a backup or restore running (one at a time each, scheduled ones too).
    running: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    /// Each tenant's off-host listing, for a little while (`offsite::LISTED_FOR`).
    listed: offsite::Listings,
    /// This host's inventory in each repository (`inventory`).
    inventories: inventory::Inventories,
    /// Held by the one whole-host recovery running (`recover.rs`).
    recovering: tokio::sync::Mutex<()>,
    /// The API's token store, for a tenant's tokens to travel with it (`tokens.rs`).
    tokens: std::sync::OnceLock<Arc<dyn crate::offsite::tokens::TenantTokens>>,
    /// The off-host repositories (`backup_repositories:`) and their clients.
    pub(crate) repos: Vec<(
        crate::desired::repository::Repository,
        Arc<dyn crate::offsite::Repo>,
    )>,
}

/// A tenant's claim on its one backup or restore at a time, let go when dropped.
struct Running {
    set: Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>,
    tenant: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.set.lock().expect("running lock").remove(&self.tenant);
    }
}

fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.display().to_string(),
        source,
    }
}

impl Backups {
    pub fn new(cx: Cx) -> Backups {
        Backups {
            repos: offsite::repositories(cx.svc.host()),
            listed: Default::default(),
            inventories: inventory::Inventories::new(&cx.svc.host().state_dir),
            recovering: tokio::sync::Mutex::new(()),
            tokens: std::sync::OnceLock::new(),
            cx,
            slots: Arc::new(tokio::sync::Semaphore::new(room::CONCURRENT)),
            running: Arc::default(),
        }
    }

    /// Claims `tenant` for one backup or restore; a second at once is refused.
    fn claim(&self, tenant: &str) -> Result<Running, BackupError> {
        if !self
            .running
            .lock()
            .expect("running lock")
            .insert(tenant.into())
        {
            return Err(BackupError::Busy(tenant.into()));
        }
        Ok(Running {
            set: self.running.clone(),
            tenant: tenant.into(),
        })
    }

    /// A turn among the host's backups, restores and verifies (waits for one to end).
    async fn turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.slots
            .clone()
            .acquire_owned()
            .await
            .expect("the backup semaphore is never closed")
    }

    /// The room `tenant`'s new archive has: its plan's budget less the archives kept besides
    /// it (none for a safety backup), and the backup filesystem's free space.
    fn room(&self, inst: &Instance, budgeted: bool) -> Result<room::Room, BackupError> {
        let tenant = inst.tenant.as_str();
        let budget = inst.backups.budget.filter(|_| budgeted).map(|b| {
            let keep = (inst.backups.keep as usize).saturating_sub(1);
            let kept = self.list(tenant).iter().take(keep).map(|i| i.bytes).sum();
            (b, kept)
        });
        room::Room::new(
            tenant,
            &self.dir(tenant),
            (
                &self.cx.svc.layout().disks(),
                self.cx.svc.host().admission.disk_overcommit,
            ),
            budget,
        )
    }

    fn dir(&self, tenant: &str) -> PathBuf {
        self.cx.svc.host().backup_dir.join(tenant)
    }

    fn instance(&self, tenant: &str) -> Result<Instance, BackupError> {
        self.cx
            .passes
            .desired()
            .instances
            .get(tenant)
            .cloned()
            .ok_or_else(|| BackupError::UnknownTenant(tenant.into()))
    }

    /// Takes a consistent backup of `tenant` now and returns its id.
    pub async fn create(&self, tenant: &str) -> Result<BackupInfo, BackupError> {
        let inst = self.instance(tenant)?;
        // Moved to another host: its copy here is stale, and a backup of it would be newer
        // than the other host's in a repository both use.
        if self.cx.svc.layout().moved_record(tenant).exists() {
            return Err(BackupError::NotReady {
                tenant: tenant.into(),
                why: "it has moved to another host: back it up there".into(),
            });
        }
        let _claim = self.claim(tenant)?;
        let _turn = self.turn().await;
        let room = self.room(&inst, true)?;
        // A sleeping tenant is woken (its database dumps from a running server) and kept
        // awake until the archive is written.
        let _awake = crate::sleep::wake_for(&self.cx, tenant, "backup", crate::sleep::WAKE_LIMIT)
            .await
            .map_err(|why| BackupError::NotReady {
                tenant: tenant.into(),
                why: why.to_string(),
            })?;
        let mut info = self.write(&inst, &self.dir(tenant), &room).await?;
        // The copies off the host read only the archive: the tenant may sleep again, and the
        // host's backup turn goes to the next tenant (the claim stays, so this tenant's next
        // backup cannot prune the archive being copied).
        drop(_awake);
        drop(_turn);
        self.prune(tenant, inst.backups.keep as usize);
        let tenant_id = self.identity(tenant)?;
        self.copy_offsite(&inst, &mut info, &tenant_id).await;
        Ok(info)
    }

    /// Snapshots `inst` (database dump, volumes, instance file, rendered files and secrets)
    /// into a new archive in `dir`.
    async fn write(
        &self,
        inst: &Instance,
        dir: &std::path::Path,
        room: &room::Room,
    ) -> Result<BackupInfo, BackupError> {
        let tenant = inst.tenant.as_str();
        atomic::create_dir(dir, 0o700).map_err(io(dir))?;
        let spool = Spool::new(dir)?;
        let members = tokio::select! {
            m = self.spool_members(inst, spool.path(), room) => m,
            stalled = room.stalled(room::STALL) => Err(stalled),
        };
        // A stream cut because the room is full says only "broken pipe": say why.
        let members = members.map_err(|e| room.refused().unwrap_or(e))?;
        room.before_archive()?;
        let created = now();
        let id = new_id(created);
        let tenant_id = self.identity(tenant)?;
        let manifest = Manifest {
            format: archive::FORMAT,
            id: id.clone(),
            tenant: tenant.into(),
            tenant_id: Some(tenant_id),
            template: inst.template.clone(),
            version: inst.version.clone(),
            created,
            members: vec![],
        };
        let path = dir.join(format!("{id}.tar"));
        let bytes = archive::build_file(manifest, &members, &path).map_err(io(&path))?;
        if let Err(e) = room.take(bytes.saturating_sub(room.written())) {
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        tracing::info!(tenant, id, bytes, "backup written");
        Ok(BackupInfo {
            id,
            tenant: tenant.into(),
            version: inst.version.clone(),
            created,
            bytes,
            offsite: vec![],
            offsite_failed: vec![],
        })
    }

    /// Every member of `inst`'s backup as a file in `spool`: database dump and volume tars
    /// streamed from the containers, the instance file and the tenant's files copied.
    async fn spool_members(
        &self,
        inst: &Instance,
        spool: &std::path::Path,
        room: &room::Room,
    ) -> Result<BTreeMap<String, PathBuf>, BackupError> {
        let tenant = inst.tenant.as_str();
        let rt = self.cx.svc.runtime().as_ref();
        let ns = &self.cx.svc.host().namespace;
        let mut members = BTreeMap::new();
        let db = spool.join("database.sql");
        if dump::database(rt, self.cx.svc.layout(), ns, inst, &db, room).await? {
            members.insert("database.sql".to_string(), db);
        }
        for (volume, file) in dump::volumes(rt, ns, inst, spool, room).await? {
            members.insert(format!("volumes/{volume}.tar"), file);
        }
        // The instance file as it was, so a clone can start from the same template and values.
        let file = self
            .cx
            .svc
            .host()
            .instances_dir
            .join(format!("{tenant}.yaml"));
        let copy = spool.join("instance.yaml");
        if std::fs::copy(&file, &copy).is_ok() {
            members.insert(INSTANCE_MEMBER.to_string(), copy);
        }
        let root = self.cx.svc.layout().tenant(tenant);
        for (n, path) in files_under(&root).into_iter().enumerate() {
            let rel = path.strip_prefix(&root).expect("under root");
            let copy = spool.join(format!("file-{n}"));
            std::fs::copy(&path, &copy).map_err(io(&path))?;
            members.insert(format!("files/{}", rel.display()), copy);
        }
        // Its DKIM keys, so a recovered or moved tenant signs as its DNS records say.
        let mail = crate::mail::relay::Paths::new(self.cx.svc.layout());
        for (n, (name, path)) in crate::mail::dkim::members(&mail, tenant)
            .into_iter()
            .enumerate()
        {
            let copy = spool.join(format!("dkim-{n}"));
            std::fs::copy(&path, &copy).map_err(io(&path))?;
            members.insert(name, copy);
        }
        Ok(members)
    }

    /// `tenant`'s identity (made for a tenant from before identities); a tenant purged while
    /// its backup ran has none, and its backup is not written.
    fn identity(&self, tenant: &str) -> Result<String, BackupError> {
        crate::store::identity::of_existing(self.cx.svc.layout(), tenant)
            .ok_or_else(|| BackupError::UnknownTenant(tenant.into()))
    }

    /// Who `tenant` is now, read once for any number of archives.
    pub(crate) fn owner(&self, tenant: &str) -> Owner {
        let layout = self.cx.svc.layout();
        Owner {
            tenant: tenant.into(),
            id: crate::store::identity::current(layout, tenant),
            born: crate::store::identity::born(layout, tenant),
        }
    }

    /// Newest first; only archives made of this tenant (not of an earlier one of its name).
    pub fn list(&self, tenant: &str) -> Vec<BackupInfo> {
        let Ok(rd) = std::fs::read_dir(self.dir(tenant)) else {
            return vec![];
        };
        let owner = self.owner(tenant);
        let mut v: Vec<BackupInfo> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().to_string();
                let id = name.strip_suffix(".tar")?.to_string();
                // The manifest alone: listing reads no archive through.
                let m = archive::manifest(&e.path()).ok()?;
                if !owner.owns(&m) {
                    return None;
                }
                Some(BackupInfo {
                    id,
                    tenant: tenant.into(),
                    version: m.version,
                    created: m.created,
                    bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
                    offsite: vec![],
                    offsite_failed: vec![],
                })
            })
            .collect();
        v.sort_by(|a, b| b.id.cmp(&a.id));
        v
    }

    /// Deletes all but the newest `keep` archives (the tenant's plan says how many).
    fn prune(&self, tenant: &str, keep: usize) {
        for old in self.list(tenant).into_iter().skip(keep.max(1)) {
            let _ = std::fs::remove_file(self.dir(tenant).join(format!("{}.tar", old.id)));
        }
    }
}

/// The tenant that has a name now: its identity and when it came to be.
pub(crate) struct Owner {
    tenant: String,
    id: Option<String>,
    born: Option<u64>,
}

impl Owner {
    /// Whether archive `m` was made of this tenant: the same name and the same identity (an
    /// archive from before identities: the same name, and made after this tenant's first
    /// secret was).
    pub(crate) fn owns(&self, m: &Manifest) -> bool {
        m.tenant == self.tenant
            && match &m.tenant_id {
                None => self.born.is_some_and(|b| m.created >= b),
                Some(id) => self.id.as_ref() == Some(id),
            }
    }
}

/// A scratch directory (0700) beside the archives for members on their way into or out of one,
/// removed with everything in it when dropped.
pub(crate) struct Spool(PathBuf);

impl Spool {
    pub(crate) fn new(parent: &std::path::Path) -> Result<Spool, BackupError> {
        let mut r = [0u8; 6];
        let _ = getrandom::fill(&mut r);
        let path = parent.join(format!(".spool-{}", hex::encode(r)));
        atomic::create_dir(&path, 0o700).map_err(io(&path))?;
        Ok(Spool(path))
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// `20261123T024501Z-1a2b`: sorts by time; the suffix keeps two backups in one second apart.
fn new_id(created: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(created as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut r = [0u8; 2];
    let _ = getrandom::fill(&mut r);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        hex::encode(r)
    )
}

/// Every regular file below `dir`, sorted.
fn files_under(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.filter_map(|e| e.ok()) {
        let p = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&p)),
            Ok(t) if t.is_file() => out.push(p),
            _ => {}
        }
    }
    out.sort();
    out
}
