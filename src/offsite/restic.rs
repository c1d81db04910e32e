//! The real repository: Debian's `restic`, run with a cleared environment (the repository's
//! location, password file and backend variables only), its cache under the state directory,
//! its stdin the archive file itself (so the agent never holds an archive in memory), and a
//! time limit after which it is killed.

use super::{Copied, OffsiteError, Repo, Snapshot, Tags, file_name, snapshot_of};
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

/// Keys an env file may not set: they would change what runs, not where it connects.
const REFUSED_KEYS: [&str; 5] = [
    "PATH",
    "HOME",
    "RESTIC_REPOSITORY",
    "RESTIC_PASSWORD_FILE",
    "RESTIC_PASSWORD_COMMAND",
];

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

    fn fail(&self, what: &'static str, why: impl Into<String>) -> OffsiteError {
        OffsiteError::Failed {
            repo: self.repo.name.clone(),
            what,
            why: why.into(),
        }
    }

    fn file_error(&self, path: &Path, why: impl ToString) -> OffsiteError {
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
            if !key_ok || REFUSED_KEYS.contains(&k) || k.starts_with("LD_") {
                return Err(bad(&format!("{k:?} may not be set here")));
            }
            out.push((k.to_string(), v.to_string()));
        }
        Ok(out)
    }

    fn command(&self, args: &[&str]) -> Result<Command, OffsiteError> {
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
    async fn run(&self, what: &'static str, mut c: Command) -> Result<Vec<u8>, OffsiteError> {
        let child = c
            .spawn()
            .map_err(|e| self.fail(what, format!("cannot run {}: {e}", binary().display())))?;
        // A listing is waited on by a person or a dashboard: never as long as a copy.
        let limit = match what {
            "backup" | "restore" | "init" => self.repo.timeout,
            _ => self.repo.timeout.min(std::time::Duration::from_secs(60)),
        };
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| OffsiteError::Timeout {
                repo: self.repo.name.clone(),
                what,
                secs: limit.as_secs(),
            })?
            .map_err(|e| self.fail(what, e.to_string()))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(self.fail(what, self.said(&out.stderr)))
    }

    /// The end of restic's complaint, on one line, without the repository's password.
    fn said(&self, stderr: &[u8]) -> String {
        let text = String::from_utf8_lossy(stderr);
        let mut text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if self.repo.url != self.repo.shown() {
            text = text.replace(&self.repo.url, &self.repo.shown());
        }
        let start = text.len().saturating_sub(600);
        let start = (start..=text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text[start..].to_string()
    }

    /// Makes the repository at its first use if nothing is there yet (an existing one, or one
    /// whose key does not open, is never made again).
    async fn made(&self) -> Result<(), OffsiteError> {
        self.made
            .get_or_try_init(|| async {
                let probe = self.run("open", self.command(&["cat", "config"])?).await;
                match probe {
                    Ok(_) => Ok(()),
                    Err(OffsiteError::Failed { why, .. })
                        if why.contains("Is there a repository at the following location?") =>
                    {
                        self.run("init", self.command(&["init"])?).await.map(|_| {
                            tracing::info!(repository = self.repo.name, "restic repository made");
                        })
                    }
                    Err(e) => Err(e),
                }
            })
            .await
            .copied()
    }
}

#[derive(serde::Deserialize)]
struct Summary {
    message_type: String,
    #[serde(default)]
    data_added: u64,
    #[serde(default)]
    total_duration: f64,
    #[serde(default)]
    snapshot_id: String,
}

#[derive(serde::Deserialize)]
struct Listed {
    short_id: String,
    #[serde(default)]
    tags: Vec<String>,
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
        let summary = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| serde_json::from_str::<Summary>(l).ok())
            .find(|s| s.message_type == "summary" && !s.snapshot_id.is_empty())
            .ok_or_else(|| self.fail("backup", "restic reported no snapshot"))?;
        Ok(Copied {
            repository: self.repo.name.clone(),
            snapshot: summary.snapshot_id,
            bytes_added: summary.data_added,
            seconds: summary.total_duration,
        })
    }

    async fn list(&self, tenant_id: &str) -> Result<Vec<Snapshot>, OffsiteError> {
        self.made().await?;
        let tag = format!("tenant-id={tenant_id}");
        let out = self
            .run(
                "list",
                self.command(&["snapshots", "--json", "--tag", &tag])?,
            )
            .await?;
        let listed: Vec<Listed> = serde_json::from_slice(&out)
            .map_err(|e| self.fail("list", format!("restic's listing is not JSON: {e}")))?;
        let mut v: Vec<Snapshot> = listed
            .iter()
            .filter_map(|l| snapshot_of(&self.repo.name, &l.short_id, &l.tags, tenant_id))
            .collect();
        v.sort_by_key(|s| s.created);
        Ok(v)
    }

    async fn fetch(&self, snap: &Snapshot, out: &Path) -> Result<(), OffsiteError> {
        let part = out.with_extension("part");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| self.file_error(&part, e))?;
        let inside = format!("/{}", file_name(&snap.tenant));
        let mut c = self.command(&["dump", &snap.snapshot, &inside])?;
        c.stdout(Stdio::from(file));
        let r = self.run("restore", c).await;
        if let Err(e) = r {
            let _ = std::fs::remove_file(&part);
            return Err(e);
        }
        std::fs::rename(&part, out).map_err(|e| self.file_error(out, e))
    }
}
