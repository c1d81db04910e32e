//! The audit log: one JSON line per change made through the API (and per refusal), and per
//! automatic action (upgrade waves, scheduled backups, sleeps and wakes), appended to
//! `<state>/audit/audit.log` (0600) and rotated by size. Never a secret or a token: actors
//! are named by their token's name and display prefix.

use serde::{Deserialize, Serialize};
use std::{
    io::Write,
    path::{Path, PathBuf},
    sync::Mutex,
};

/// Rotated past this size: `audit.log` → `audit.log.1` → … → `audit.log.{KEEP}` (dropped).
pub const MAX_BYTES: u64 = 8 << 20;
pub const KEEP: usize = 4;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Actor {
    /// `operator` (the Unix socket or the host's operator token), `token`, or `system`.
    pub kind: String,
    /// The token's name, or for the system the part that acted (`upgrader`, `scheduler`,
    /// `sleeper`); `socket` for the Unix socket.
    pub name: String,
    /// The token's display prefix (`bth_1a2b3c4d`), never the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Actor {
    pub fn system(part: &str) -> Actor {
        Actor {
            kind: "system".into(),
            name: part.into(),
            prefix: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Unix milliseconds.
    pub time: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub actor: Actor,
    /// `cli`, `api`, `ui` or `system`.
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The tenant's identity when the row was written (`store::identity`), filled in by the
    /// log: a tenant token reads only its own tenants' rows of their present identities, never
    /// those of an earlier tenant of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// What was done, e.g. `backup.create`, `upgrade.wave`, `tenant.wake`.
    pub action: String,
    /// What it was done to beyond the tenant (a backup id, a domain, a token prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// `ok`, `denied` or `error`.
    pub result: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Event {
    /// An automatic action of `part` on `tenant`.
    pub fn system(
        part: &str,
        tenant: Option<&str>,
        action: &str,
        result: Result<(), String>,
    ) -> Event {
        Event {
            time: now_ms(),
            request_id: None,
            actor: Actor::system(part),
            source: "system".into(),
            tenant: tenant.map(String::from),
            tenant_id: None,
            action: action.into(),
            target: None,
            result: if result.is_ok() { "ok" } else { "error" }.into(),
            status: None,
            error: result.err(),
        }
    }

    pub fn target(mut self, t: impl Into<String>) -> Event {
        self.target = Some(t.into());
        self
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Which rows a reader wants (and may see).
#[derive(Debug, Default)]
pub struct Filter {
    /// Only these tenants' rows (a tenant token's own); None: every row.
    pub tenants: Option<std::collections::BTreeSet<String>>,
    /// With `tenants`: only rows written for these identities of them (tenant → id).
    pub ids: Option<std::collections::BTreeMap<String, String>>,
    pub since_ms: Option<u64>,
    /// The newest this many.
    pub limit: Option<usize>,
}

impl Filter {
    fn keeps(&self, e: &Event) -> bool {
        let tenant_ok = match &self.tenants {
            None => true,
            Some(set) => e.tenant.as_ref().is_some_and(|t| set.contains(t)),
        };
        let id_ok = match (&self.ids, &e.tenant) {
            (Some(ids), Some(t)) => ids
                .get(t)
                .is_some_and(|id| e.tenant_id.as_ref() == Some(id)),
            _ => true,
        };
        let tenant_ok = tenant_ok && id_ok;
        tenant_ok && self.since_ms.is_none_or(|s| e.time >= s)
    }
}

pub struct Audit {
    path: PathBuf,
    max_bytes: u64,
    lock: Mutex<()>,
    /// Where tenants' identities are read to stamp rows (None: rows carry none).
    identities: Option<crate::store::Layout>,
}

impl Audit {
    pub fn open(dir: &Path) -> Audit {
        Audit::with_limit(dir, MAX_BYTES)
    }

    pub fn with_limit(dir: &Path, max_bytes: u64) -> Audit {
        Audit {
            path: dir.join("audit.log"),
            max_bytes,
            lock: Mutex::new(()),
            identities: None,
        }
    }

    /// Rows about a tenant are stamped with its identity, read from `layout`.
    pub fn with_identities(mut self, layout: crate::store::Layout) -> Audit {
        self.identities = Some(layout);
        self
    }

    /// Appends `e`; a log that cannot be written is reported in the agent's log, and the
    /// action it records is not undone.
    pub fn record(&self, e: &Event) {
        let stamped;
        let e = match (&self.identities, &e.tenant, &e.tenant_id) {
            (Some(layout), Some(t), None) => {
                stamped = Event {
                    tenant_id: crate::store::identity::current(layout, t),
                    ..e.clone()
                };
                &stamped
            }
            _ => e,
        };
        let _g = self.lock.lock().expect("audit lock");
        if let Err(err) = self.append(e) {
            tracing::error!(error = %err, path = %self.path.display(), "cannot write the audit log");
        }
    }

    fn append(&self, e: &Event) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = self.path.parent() {
            crate::store::atomic::create_dir(dir, 0o700)?;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max_bytes) {
            self.rotate()?;
        }
        let mut line = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(&line)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    fn rotate(&self) -> std::io::Result<()> {
        for n in (1..KEEP).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }

    /// The rows `f` keeps, oldest first; lines that do not parse are skipped.
    pub fn query(&self, f: &Filter) -> Vec<Event> {
        let _g = self.lock.lock().expect("audit lock");
        let files = (1..=KEEP)
            .rev()
            .map(|n| self.rotated(n))
            .chain([self.path.clone()]);
        let mut out: Vec<Event> = files
            .filter_map(|p| std::fs::read(p).ok())
            .flat_map(|bytes| {
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                    .collect::<Vec<_>>()
            })
            .filter(|e| f.keeps(e))
            .collect();
        if let Some(n) = f.limit {
            let skip = out.len().saturating_sub(n);
            out.drain(..skip);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(tenant: &str, action: &str) -> Event {
        Event::system("scheduler", Some(tenant), action, Ok(()))
    }

    #[test]
    fn rows_append_rotate_by_size_and_read_back_filtered_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::with_limit(dir.path(), 600);
        for i in 0..40 {
            let t = if i % 2 == 0 { "acme" } else { "globex" };
            a.record(&ev(t, &format!("backup.scheduled.{i}")));
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("audit.log"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
        assert!(dir.path().join("audit.log.1").exists(), "rotated");
        assert!(!dir.path().join(format!("audit.log.{}", KEEP + 1)).exists());
        let all = a.query(&Filter::default());
        assert!(all.len() < 40, "the oldest rotated away");
        assert_eq!(all.last().unwrap().action, "backup.scheduled.39");
        assert!(all.windows(2).all(|w| w[0].time <= w[1].time));
        let acme = a.query(&Filter {
            tenants: Some(["acme".to_string()].into()),
            limit: Some(3),
            ..Default::default()
        });
        assert_eq!(acme.len(), 3);
        assert!(acme.iter().all(|e| e.tenant.as_deref() == Some("acme")));
        assert_eq!(acme[2].action, "backup.scheduled.38");
    }

    #[test]
    fn a_torn_or_foreign_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::open(dir.path());
        a.record(&ev("acme", "tenant.sleep"));
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join("audit.log"))
            .unwrap();
        f.write_all(b"{\"time\": 1, \"act\n\xff\xfe garbage\n")
            .unwrap();
        a.record(&ev("acme", "tenant.wake"));
        let rows = a.query(&Filter::default());
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].action, "tenant.wake");
    }

    #[test]
    fn rows_are_stamped_with_the_tenants_identity_and_read_back_by_it() {
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::store::Layout::new(dir.path().join("state"));
        let a = Audit::open(dir.path()).with_identities(layout.clone());
        let first = crate::store::identity::ensure(&layout, "chkpg", None).unwrap();
        a.record(&ev("chkpg", "backup.create"));
        std::fs::remove_dir_all(layout.tenant("chkpg")).unwrap();
        let second = crate::store::identity::ensure(&layout, "chkpg", None).unwrap();
        a.record(&ev("chkpg", "instance.state"));
        let of = |id: &str| {
            a.query(&Filter {
                tenants: Some(["chkpg".to_string()].into()),
                ids: Some([("chkpg".to_string(), id.to_string())].into()),
                ..Default::default()
            })
        };
        let new_rows = of(&second);
        assert_eq!(new_rows.len(), 1);
        assert_eq!(new_rows[0].action, "instance.state");
        assert_eq!(of(&first)[0].action, "backup.create");
        assert_eq!(
            a.query(&Filter::default()).len(),
            2,
            "the operator sees both"
        );
    }
}
