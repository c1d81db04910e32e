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
    /// Tenant → when it fell asleep (Unix seconds).
    asleep: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Inner {
    asleep: BTreeMap<String, u64>,
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

pub struct SleepSet {
    path: PathBuf,
    inner: Mutex<Inner>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl SleepSet {
    /// The recorded set; an unreadable file counts as nobody asleep (every tenant runs).
    pub fn open(path: PathBuf) -> SleepSet {
        let asleep = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<File>(&b)
                .map(|f| f.asleep)
                .unwrap_or_else(|e| {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable sleep record; every tenant wakes");
                    BTreeMap::new()
                }),
            Err(_) => BTreeMap::new(),
        };
        SleepSet {
            path,
            inner: Mutex::new(Inner {
                asleep,
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

    /// When `t` fell asleep (Unix seconds), if it is asleep.
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

    /// Records `t` asleep (written before its containers are stopped).
    pub fn put(&self, t: &str) -> std::io::Result<()> {
        let mut i = self.lock();
        i.asleep.insert(t.into(), unix_now());
        self.save(&i).inspect_err(|_| {
            i.asleep.remove(t);
        })
    }

    /// Takes `t` out of the asleep set and marks it waking; false when it was not asleep (a
    /// wake is already under way, or it never slept).
    pub fn start_wake(&self, t: &str) -> std::io::Result<bool> {
        let mut i = self.lock();
        let Some(since) = i.asleep.remove(t) else {
            return Ok(false);
        };
        if let Err(e) = self.save(&i) {
            i.asleep.insert(t.into(), since);
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
        s.put("acme").unwrap();
        s.put("beta").unwrap();
        assert!(s.start_wake("beta").unwrap());
        assert!(!s.start_wake("beta").unwrap(), "one wake per sleep");
        assert!(s.is_dozing("beta") && !s.is_asleep("beta"));
        let again = SleepSet::open(p.clone());
        assert_eq!(again.asleep(), BTreeSet::from(["acme".to_string()]));
        std::fs::write(&p, b"{not json").unwrap();
        assert!(SleepSet::open(p).asleep().is_empty());
    }
}
