//! The real repository: Debian's `restic`, run with a cleared environment (the repository's
//! location, password file and backend variables only), its cache under the state directory,
//! its stdin the archive file itself (so the agent never holds an archive in memory), and a
//! time limit after which it is killed.

use super::{
    Copied, OffsiteError, Repo, Snapshot, Tags, file_name, held_of, inventory::Inventory,
    retention::Held, snapshot_of,
};
use crate::desired::repository::Repository;
use std::{
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Stdio,
};
use tokio::process::Command;

/// The restic binary berth runs (`BERTH_RESTIC` overrides, for a build of one's own).
fn binary() -> PathBuf {
    std::env::var_os("BERTH_RESTIC")
        .map(PathBuf::from)
        .unwrap_or_else(|| "restic".into())
}

/// Keys an env file may not set: they would change what runs or which repository and key
/// are used, not how the backend is reached (restic's own `RESTIC_*` are refused as a prefix).
const REFUSED_KEYS: [&str; 3] = ["PATH", "HOME", "TMPDIR"];

/// restic processes at once on this host, every repository and purpose together: a listing
/// asked for again and again waits its turn instead of starting one more.
pub(super) static RUNNING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// restic's hint when a repository's config cannot be read (missing, or not reachable).
const NO_REPOSITORY: &str = "Is there a repository at the following location?";

pub struct Restic {
    repo: Repository,
    cache: PathBuf,
    host: String,
    made: tokio::sync::OnceCell<()>,
}

impl Restic {
    /// `cache` is restic's cache directory for this repository; `host` the hostname snapshots
    /// carry (the agent's namespace).
    pub fn new(repo: Repository, cache: PathBuf, host: &str) -> Restic {
        Restic {
            repo,
            cache,
            host: host.into(),
            made: tokio::sync::OnceCell::new(),
        }
    }

    pub(super) fn cache(&self) -> &Path {
        &self.cache
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }

    pub(super) fn fail(&self, what: &'static str, why: impl Into<String>) -> OffsiteError {
        OffsiteError::Failed {
            repo: self.repo.name.clone(),
            what,
            why: why.into(),
        }
    }

    pub(super) fn file_error(&self, path: &Path, why: impl ToString) -> OffsiteError {
        OffsiteError::File {
            repo: self.repo.name.clone(),
            path: path.display().to_string(),
            why: why.to_string(),
        }
    }

    /// A file only its owner may read, or why not.
    fn private(&self, path: &Path) -> Result<(), OffsiteError> {
        let meta = std::fs::metadata(path).map_err(|e| self.file_error(path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(OffsiteError::KeyMode {
                repo: self.repo.name.clone(),
                path: path.display().to_string(),
                mode,
            });
        }
        Ok(())
    }

    /// The env file's `KEY=VALUE` lines (blank lines and `#` comments skipped).
    fn env_pairs(&self) -> Result<Vec<(String, String)>, OffsiteError> {
        let Some(path) = &self.repo.env_file else {
            return Ok(vec![]);
        };
        self.private(path)?;
        let text = std::fs::read_to_string(path).map_err(|e| self.file_error(path, e))?;
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| self.file_error(path, format!("line {}: {why}", n + 1));
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| bad("is not KEY=VALUE"))?;
            let key_ok = !k.is_empty()
                && k.bytes()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == b'_');
            if !key_ok
                || REFUSED_KEYS.contains(&k)
                || k.starts_with("LD_")
                || k.starts_with("RESTIC_")
            {
                return Err(bad(&format!("{k:?} may not be set here")));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(out)
    }

    pub(super) fn command(&self, args: &[&str]) -> Result<Command, OffsiteError> {
        self.private(&self.repo.password_file)?;
        let env = self.env_pairs()?;
        crate::store::atomic::create_dir(&self.cache, 0o700)
            .map_err(|e| self.file_error(&self.cache, e))?;
        let mut c = Command::new(binary());
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.cache)
            .env("RESTIC_REPOSITORY", &self.repo.url)
            .env("RESTIC_PASSWORD_FILE", &self.repo.password_file)
            .envs(env)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        Ok(c)
    }

    /// Runs `c` to its end (or the repository's time limit); its stdout when it succeeds.
    pub(super) async fn run(
        &self,
        what: &'static str,
        mut c: Command,
    ) -> Result<Vec<u8>, OffsiteError> {
        // A listing is waited on by a person or a dashboard: never as long as a copy. A prune
        // (run by hand, elsewhere) is not cut short: killed, it would leave restic's
        // exclusive lock behind. The wait for one of the host's restic turns counts too.
        let limit = match what {
            "backup" | "restore" | "init" | "check" => self.repo.timeout,
            "forget" | "prune" => std::time::Duration::from_secs(30 * 86_400),
            _ => self.repo.timeout.min(std::time::Duration::from_secs(60)),
        };
        let run = async {
            let _turn = RUNNING.acquire().await.expect("never closed");
            let child = c
                .spawn()
                .map_err(|e| self.fail(what, format!("cannot run {}: {e}", binary().display())))?;
            child
                .wait_with_output()
                .await
                .map_err(|e| self.fail(what, e.to_string()))
        };
        let out = tokio::time::timeout(limit, run)
            .await
            .map_err(|_| OffsiteError::Timeout {
                repo: self.repo.name.clone(),
                what,
                secs: limit.as_secs(),
            })??;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(self.fail(what, self.said(&out.stderr)))
    }

    /// restic's complaint on one line: its messages without Go's stack frames, the first of
    /// them kept when it is long (that is where the server's answer is), without the
    /// repository's password (as written or percent-decoded, wherever it appears).
    pub(super) fn said(&self, stderr: &[u8]) -> String {
        let text = String::from_utf8_lossy(stderr);
        let mut seen = std::collections::BTreeSet::new();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !is_stack_frame(l))
            // Retries repeat one message with another delay: once is enough.
            .filter(|l| seen.insert(l.split(", retrying").next().unwrap_or(l).to_string()))
            .collect();
        let mut text = lines.join(" ");
        for secret in crate::desired::repository::secrets(&self.repo.url) {
            text = text.replace(&secret, "***");
        }
        if text.len() > 600 {
            let end = (0..=600)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(0);
            text = format!("{} …", &text[..end]);
        }
        text
    }

    /// Before a copy: the repository is there, or is made when the config says `create:
    /// true` (never over a path on the state directory's own filesystem). A listing never
    /// makes one.
    pub(super) async fn made(&self) -> Result<(), OffsiteError> {
        if self.made.initialized() {
            return Ok(());
        }
        let probe = self.run("open", self.command(&["cat", "config"])?).await;
        match probe {
            Ok(_) => {}
            Err(OffsiteError::Failed { why, .. }) if why.contains(NO_REPOSITORY) => {
                if !self.repo.create {
                    return Err(self.fail(
                        "open",
                        format!("no repository at {} ({why}); make it with `restic init`, or set create: true", self.repo.shown()),
                    ));
                }
                self.refuse_local_disk()?;
                self.run("init", self.command(&["init"])?).await?;
                tracing::info!(repository = self.repo.name, "restic repository made");
            }
            Err(e) => return Err(e),
        }
        let _ = self.made.set(());
        Ok(())
    }

    /// A path repository on the filesystem of berth's own state, or of `/`, is not off the
    /// host (an unmounted backup disk leaves exactly that): refused rather than made.
    fn refuse_local_disk(&self) -> Result<(), OffsiteError> {
        use std::os::unix::fs::MetadataExt;
        if !self.repo.url.starts_with('/') {
            return Ok(());
        }
        let nearest = Path::new(&self.repo.url)
            .ancestors()
            .find_map(|a| std::fs::metadata(a).ok());
        let hosts: Vec<u64> = [self.cache.as_path(), Path::new("/")]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok().map(|m| m.dev()))
            .collect();
        match nearest {
            Some(a) if hosts.contains(&a.dev()) => Err(self.fail(
                "init",
                format!(
                    "{} is on the same filesystem as berth's state or /: not made (is the backup disk mounted?); make it with `restic init` if that is meant",
                    self.repo.url
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Restic {
    /// The snapshots carrying tag `tag` (restic's JSON listing, read without a lock). A
    /// listing never makes the repository.
    pub(super) async fn listed(&self, tag: &str) -> Result<Vec<Listed>, OffsiteError> {
        self.listed_on(tag, &[]).await
    }

    /// `listed` with more of `restic snapshots`' filters (`--host H`).
    pub(super) async fn listed_on(
        &self,
        tag: &str,
        more: &[&str],
    ) -> Result<Vec<Listed>, OffsiteError> {
        let mut args = vec!["--no-lock", "snapshots", "--json", "--tag", tag];
        args.extend(more);
        let out = self.run("list", self.command(&args)?).await?;
        serde_json::from_slice(&out)
            .map_err(|e| self.fail("list", format!("restic's listing is not JSON: {e}")))
    }
}

/// A line of a Go stack trace (`pkg.Func(...)`, `\tfile.go:12`, `goroutine 1 [running]:`).
fn is_stack_frame(line: &str) -> bool {
    line.contains(".go:")
        || line.starts_with("goroutine ")
        || line.starts_with("main.")
        || line.starts_with("runtime.")
        || (line.starts_with("github.com/") || line.starts_with("golang.org/"))
}

#[derive(serde::Deserialize)]
pub(super) struct Summary {
    message_type: String,
    #[serde(default)]
    data_added: u64,
    #[serde(default)]
    total_duration: f64,
    #[serde(default)]
    pub(super) snapshot_id: String,
}

/// The summary line of `restic backup --json`'s output, if it made a snapshot.
pub(super) fn summary(out: &[u8]) -> Option<Summary> {
    String::from_utf8_lossy(out)
        .lines()
        .filter_map(|l| serde_json::from_str::<Summary>(l).ok())
        .find(|s| s.message_type == "summary" && !s.snapshot_id.is_empty())
}

#[derive(serde::Deserialize)]
pub(super) struct Listed {
    pub(super) id: String,
    #[serde(default)]
    tags: Vec<String>,
    /// RFC 3339.
    #[serde(default)]
    pub(super) time: String,
}

#[async_trait::async_trait]
impl Repo for Restic {
    fn name(&self) -> &str {
        &self.repo.name
    }

    async fn send(&self, archive: &Path, tags: &Tags) -> Result<Copied, OffsiteError> {
        self.made().await?;
        let input = std::fs::File::open(archive).map_err(|e| self.file_error(archive, e))?;
        let name = file_name(&tags.tenant);
        let mut args = vec![
            "backup",
            "--json",
            "--quiet",
            "--stdin",
            "--stdin-filename",
            &name,
        ];
        args.extend(["--host", &self.host]);
        let tags = tags.to_args();
        for t in &tags {
            args.extend(["--tag", t.as_str()]);
        }
        let mut c = self.command(&args)?;
        c.stdin(Stdio::from(input));
        let out = self.run("backup", c).await?;
        let summary =
            summary(&out).ok_or_else(|| self.fail("backup", "restic reported no snapshot"))?;
        Ok(Copied {
            repository: self.repo.name.clone(),
            snapshot: summary.snapshot_id,
            bytes_added: summary.data_added,
            seconds: summary.total_duration,
        })
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<Snapshot>, OffsiteError> {
        let listed = self.listed(&format!("tenant-id={tenant_id}")).await?;
        let mut v: Vec<Snapshot> = listed
            .iter()
            .filter_map(|l| snapshot_of(&self.repo.name, &l.id, &l.tags, tenant_id))
            .collect();
        v.sort_by_key(|s| s.created);
        Ok(v)
    }

    async fn list_all(&self) -> Result<Vec<Held>, OffsiteError> {
        let listed = self.listed("berth").await?;
        Ok(listed
            .iter()
            .filter_map(|l| held_of(&l.id, &l.tags))
            .collect())
    }

    async fn forget_and_prune(&self, ids: &[String]) -> Result<(), OffsiteError> {
        for chunk in ids.chunks(200) {
            let mut args = vec!["forget"];
            args.extend(chunk.iter().map(String::as_str));
            self.run("forget", self.command(&args)?).await?;
        }
        self.run("prune", self.command(&["prune"])?).await?;
        Ok(())
    }

    async fn put_inventory(&self, inv: &Inventory) -> Result<String, OffsiteError> {
        Restic::put_inventory(self, inv).await
    }

    async fn inventory(
        &self,
        want: Option<&str>,
    ) -> Result<Option<(String, Inventory)>, OffsiteError> {
        Restic::inventory(self, want).await
    }

    async fn check(&self, read_data: &str) -> Result<(), OffsiteError> {
        let subset = format!("--read-data-subset={read_data}");
        self.run("check", self.command(&["--no-lock", "check", &subset])?)
            .await
            .map(|_| ())
    }

    async fn fetch(&self, snap: &Snapshot, out: &Path) -> Result<(), OffsiteError> {
        // Named as the store's temp files are, so a crash's leftover is cleaned at start.
        let name = out.file_name().map(|n| n.to_string_lossy().to_string());
        let part = out.with_file_name(format!(".{}.tmp-fetch", name.unwrap_or_default()));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| self.file_error(&part, e))?;
        let inside = format!("/{}", file_name(&snap.tenant));
        let mut c = self.command(&["--no-lock", "dump", &snap.snapshot, &inside])?;
        c.stdout(Stdio::from(file));
        let r = self.run("restore", c).await.and_then(|_| {
            std::fs::File::open(&part)
                .and_then(|f| f.sync_all())
                .map_err(|e| self.file_error(&part, e))
        });
        if let Err(e) = r {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, out).map_err(|e| self.file_error(out, e))
    }
}

#[cfg(test)]
#[path = "restic_tests.rs"]
mod tests;
