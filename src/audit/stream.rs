//! One rotated JSON-lines file of audit rows. Writers hold its lock to append or rotate; a
//! reader holds it only while opening the files, then reads from the open descriptors, so a
//! viewer reading 40 MiB never makes a writer wait (a rotation renames files, which the open
//! descriptors do not notice).

use super::Event;
use std::{
    io::{Read, Write},
    path::PathBuf,
    sync::Mutex,
};

pub struct Stream {
    path: PathBuf,
    max_bytes: u64,
    /// Files kept besides the live one: `name.1` … `name.{keep}`.
    keep: usize,
    lock: Mutex<()>,
}

impl Stream {
    pub fn new(path: PathBuf, max_bytes: u64, keep: usize) -> Stream {
        Stream {
            path,
            max_bytes,
            keep,
            lock: Mutex::new(()),
        }
    }

    /// Appends `rows` as one write (rotating first when the live file is full).
    pub fn append(&self, rows: &[Event]) -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut bytes = Vec::new();
        for e in rows {
            serde_json::to_writer(&mut bytes, e).map_err(std::io::Error::other)?;
            bytes.push(b'\n');
        }
        let _g = self.lock.lock().expect("audit lock");
        if let Some(dir) = self.path.parent() {
            crate::store::atomic::create_dir(dir, 0o700)?;
        }
        if std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= self.max_bytes) {
            self.rotate()?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.path)?;
        f.write_all(&bytes)
    }

    fn rotated(&self, n: usize) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(format!(".{n}"));
        p.into()
    }

    fn rotate(&self) -> std::io::Result<()> {
        for n in (1..self.keep).rev() {
            let from = self.rotated(n);
            if from.exists() {
                std::fs::rename(&from, self.rotated(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))
    }

    /// The files as they are now, oldest first, opened under the lock and read after it.
    pub fn snapshot(&self) -> Vec<std::fs::File> {
        let _g = self.lock.lock().expect("audit lock");
        (1..=self.keep)
            .rev()
            .map(|n| self.rotated(n))
            .chain([self.path.clone()])
            .filter_map(|p| std::fs::File::open(p).ok())
            .collect()
    }

    /// Every row of a snapshot, oldest first; lines that do not parse are skipped.
    pub fn rows(files: Vec<std::fs::File>, keep: impl Fn(&Event) -> bool) -> Vec<Event> {
        let mut out = Vec::new();
        for mut f in files {
            let mut bytes = Vec::new();
            if f.read_to_end(&mut bytes).is_err() {
                continue;
            }
            out.extend(
                String::from_utf8_lossy(&bytes)
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Event>(l).ok())
                    .filter(|e| keep(e)),
            );
        }
        out
    }
}
