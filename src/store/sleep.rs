//! Which tenants are asleep (kept in `<state>/sleep.json`, so a restarted agent leaves them
//! asleep), which are waking, and why a wake failed.

use serde::{Deserialize, Serialize};
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    sync::Mutex,
};

#[derive(Default, Serialize, Deserialize)]
struct File {
    /// Tenant → since when it has been asleep (Unix seconds): when it fell asleep, or, if it
    /// was woken since only for work that changes nothing (a backup), when it first did.
    asleep: BTreeMap<String, u64>,
    /// Tenants awake for such work only → when they first fell asleep.
    #[serde(default)]
    quiet: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    asleep: BTreeMap<String, u64>,
    quiet: BTreeMap<String, u64>,
    waking: BTreeSet<String>,
    wake_errors: BTreeMap<String, String>,
    /// Operations under way in the tenant's containers (backups, jobs): it may not sleep.
    busy: BTreeMap<String, usize>,
}

/// Keeps a tenant from falling asleep while it lives (a backup or job in its containers).
pub struct Busy {
    set: std::sync::Arc<SleepSet>,
    tenant: String,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut i = self.set.lock();
        if let Some(n) = i.busy.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                i.busy.remove(&self.tenant);
            }
        }
    }
}

/// The host has no room to wake a tenant now: admission's words for why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoRoom(pub String);

pub struct SleepSet {
    path: PathBuf,
    inner: Mutex<Inner>,
    /// Held while a wake's memory is checked and the wake recorded (every waker: a request,
    /// a job, a backup, an upgrade), so two wakes never both fit in the same room.
    room: Mutex<()>,
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SleepSet {
    /// The recorded set; an unreadable file counts as nobody asleep (every tenant runs).
    pub fn open(path: PathBuf) -> SleepSet {
        let f = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<File>(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable sleep record; every tenant wakes");
                File::default()
            }),
            Err(_) => File::default(),
        };
        SleepSet {
            path,
            room: Mutex::new(()),
            inner: Mutex::new(Inner {
                asleep: f.asleep,
                quiet: f.quiet,
                ..Default::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("sleep set lock")
    }

    fn save(&self, i: &Inner) -> std::io::Result<()> {
        let f = File {
            asleep: i.asleep.clone(),
            quiet: i.quiet.clone(),
        };
        let json = serde_json::to_vec_pretty(&f).map_err(std::io::Error::other)?;
        crate::store::atomic::write(&self.path, &json, 0o600)
    }

    /// Marks `t` busy until the guard drops.
    pub fn busy(self: &std::sync::Arc<Self>, t: &str) -> Busy {
        *self.lock().busy.entry(t.into()).or_default() += 1;
        Busy {
            set: self.clone(),
            tenant: t.into(),
        }
    }

    pub fn is_busy(&self, t: &str) -> bool {
        self.lock().busy.contains_key(t)
    }

    /// Since when `t` has been asleep (Unix seconds), if it is: nothing in it changed since.
    pub fn since(&self, t: &str) -> Option<u64> {
        self.lock().asleep.get(t).copied()
    }

    pub fn asleep(&self) -> BTreeSet<String> {
        self.lock().asleep.keys().cloned().collect()
    }

    pub fn is_asleep(&self, t: &str) -> bool {
        self.lock().asleep.contains_key(t)
    }

    /// Asleep or on its way up: the sleeper, not the route sync, owns its gate.
    pub fn is_dozing(&self, t: &str) -> bool {
        let i = self.lock();
        i.asleep.contains_key(t) || i.waking.contains(t)
    }

    /// Records `t` asleep (written before its containers are stopped). `last_request` (Unix
    /// seconds) is when its edge last let a request through: when none came since it was woken
    /// only for a backup, it has been asleep since it first fell asleep.
    pub fn put(&self, t: &str, last_request: u64) -> std::io::Result<()> {
        let mut i = self.lock();
        let quiet = i.quiet.remove(t);
        let since = quiet
            .filter(|s| last_request <= *s)
            .unwrap_or_else(unix_now);
        i.asleep.insert(t.into(), since);
        self.save(&i).inspect_err(|_| {
            i.asleep.remove(t);
            if let Some(q) = quiet {
                i.quiet.insert(t.into(), q);
            }
        })
    }

    /// Takes `t` out of the asleep set and marks it waking; false when it was not asleep (a
    /// wake is already under way, or it never slept). `changes`: the wake is for work that may
    /// change the tenant's data (a request, a job, an upgrade, a restore), not a backup.
    /// `start_wake` when `no_room` (asked under the room lock, while `t` is asleep) finds the
    /// host has room for it. Err: why it has none.
    pub fn admit_wake(
        &self,
        t: &str,
        changes: bool,
        no_room: impl FnOnce() -> Option<String>,
    ) -> Result<std::io::Result<bool>, NoRoom> {
        let _room = self.room.lock().expect("wake room lock");
        if self.is_asleep(t)
            && let Some(why) = no_room()
        {
            return Err(NoRoom(why));
        }
        Ok(self.start_wake(t, changes))
    }

    pub fn start_wake(&self, t: &str, changes: bool) -> std::io::Result<bool> {
        let mut i = self.lock();
        let Some(since) = i.asleep.remove(t) else {
            if changes {
                i.quiet.remove(t);
            }
            return Ok(false);
        };
        let quiet_before = i.quiet.remove(t);
        if !changes {
            i.quiet.insert(t.into(), since);
        }
        if let Err(e) = self.save(&i) {
            i.asleep.insert(t.into(), since);
            i.quiet.remove(t);
            if let Some(q) = quiet_before {
                i.quiet.insert(t.into(), q);
            }
            return Err(e);
        }
        i.waking.insert(t.into());
        Ok(true)
    }

    pub fn end_wake(&self, t: &str) {
        let mut i = self.lock();
        i.waking.remove(t);
        i.wake_errors.remove(t);
    }

    pub fn set_wake_error(&self, t: &str, e: String) {
        self.lock().wake_errors.insert(t.into(), e);
    }

    pub fn wake_errors(&self) -> BTreeMap<String, String> {
        self.lock().wake_errors.clone()
    }

    /// Forgets tenants that no longer exist (or may no longer sleep).
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        let mut i = self.lock();
        let before = i.asleep.len();
        i.asleep.retain(|t, _| keep(t));
        i.quiet.retain(|t, _| keep(t));
        if i.asleep.len() != before
            && let Err(e) = self.save(&i)
        {
            tracing::warn!(error = %e, "cannot record the sleep set");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_survives_a_reopen_and_a_corrupt_file_wakes_everyone() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sleep.json");
        let s = SleepSet::open(p.clone());
        s.put("acme", 0).unwrap();
        s.put("beta", 0).unwrap();
        assert!(s.start_wake("beta", true).unwrap());
        assert!(!s.start_wake("beta", true).unwrap(), "one wake per sleep");
        assert!(s.is_dozing("beta") && !s.is_asleep("beta"));
        let again = SleepSet::open(p.clone());
        assert_eq!(again.asleep(), BTreeSet::from(["acme".to_string()]));
        std::fs::write(&p, b"{not json").unwrap();
        assert!(SleepSet::open(p).asleep().is_empty());
    }

    #[test]
    fn a_tenant_woken_only_for_a_backup_stays_asleep_since_it_first_fell_asleep() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sleep.json");
        let s = SleepSet::open(p.clone());
        let now = unix_now();
        s.put("acme", now - 100).unwrap();
        let first = s.since("acme").unwrap();
        assert!(first >= now);
        // A backup wakes it and it falls asleep again with no request: still asleep since first.
        assert!(s.start_wake("acme", false).unwrap());
        s.end_wake("acme");
        s.put("acme", now - 100).unwrap();
        assert_eq!(s.since("acme"), Some(first));
        assert_eq!(SleepSet::open(p.clone()).since("acme"), Some(first));
        // Woken for a backup, then a request came in: asleep since the new sleep.
        assert!(s.start_wake("acme", false).unwrap());
        std::thread::sleep(std::time::Duration::from_millis(1100));
        s.put("acme", unix_now()).unwrap();
        assert!(s.since("acme").unwrap() > first);
        // A job, upgrade or restore changes the data: no carrying over either.
        let second = s.since("acme").unwrap();
        assert!(s.start_wake("acme", false).unwrap());
        assert!(!s.start_wake("acme", true).unwrap(), "already waking");
        std::thread::sleep(std::time::Duration::from_millis(1100));
        s.put("acme", 0).unwrap();
        assert!(s.since("acme").unwrap() > second);
    }
}
