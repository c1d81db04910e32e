//! Off-host backup repositories (`backup_repositories:`), validated: where each is, its key's
//! password file, and which tenants it serves.

use super::{Invalid, host::is_dns_label, instance::is_tenant_name};
use crate::spec::{repository::RepositoryFile, units};
use serde::Serialize;
use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    time::Duration,
};

/// How long one copy may take when the repository says nothing.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Repository {
    pub name: String,
    /// restic's repository string, as written (it may hold a REST server's credentials: show
    /// `shown()` instead).
    #[serde(skip)]
    pub url: String,
    #[serde(skip)]
    pub password_file: PathBuf,
    #[serde(skip)]
    pub env_file: Option<PathBuf>,
    pub plans: BTreeSet<String>,
    pub tenants: BTreeSet<String>,
    #[serde(skip)]
    pub timeout: Duration,
    /// Make it at the first copy when none is there (`create: true`).
    pub create: bool,
    /// Scheduled `restic check`: (cron, `--read-data-subset`).
    pub check: Option<(String, String)>,
}

/// What a check reads when its repository says nothing.
pub const DEFAULT_READ_DATA: &str = "5%";

/// restic's `--read-data-subset`: `N%` (0 < N <= 100) or `n/t` (1 <= n <= t <= 10000).
pub fn check_read_data(s: &str) -> Result<(), String> {
    let ok = match (s.strip_suffix('%'), s.split_once('/')) {
        (Some(p), _) => p.parse::<f64>().is_ok_and(|p| p > 0.0 && p <= 100.0),
        (None, Some((n, t))) => match (n.parse::<u32>(), t.parse::<u32>()) {
            (Ok(n), Ok(t)) => n >= 1 && n <= t && t <= 10_000,
            _ => false,
        },
        _ => false,
    };
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{s:?} is not N% (0 < N <= 100) or n/t (1 <= n <= t <= 10000)"
        )),
    }
}

impl Repository {
    /// Whether `tenant` (on `plan`) has its backups copied here.
    pub fn serves(&self, tenant: &str, plan: Option<&str>) -> bool {
        (self.plans.is_empty() && self.tenants.is_empty())
            || self.tenants.contains(tenant)
            || plan.is_some_and(|p| self.plans.contains(p))
    }

    /// The repository string without a password, for messages and listings.
    pub fn shown(&self) -> String {
        shown(&self.url)
    }
}

/// Where the password of `url`'s `scheme://user:password@host` stands, read as text (so a URL
/// that does not even parse, the one an error message shows, is covered too).
fn password_span(url: &str) -> Option<std::ops::Range<usize>> {
    let auth_start = url.find("://")? + 3;
    let auth_end = url[auth_start..]
        .find('/')
        .map_or(url.len(), |i| auth_start + i);
    let at = url[auth_start..auth_end].rfind('@')? + auth_start;
    let colon = url[auth_start..at].find(':')? + auth_start;
    Some(colon + 1..at)
}

/// `url` with any `user:password@` reduced to `user@`.
pub fn shown(url: &str) -> String {
    match password_span(url) {
        Some(r) => format!("{}{}", &url[..r.start - 1], &url[r.end..]),
        None => url.to_string(),
    }
}

/// The password in `url`, as written and percent-decoded, for taking out of messages.
pub fn secrets(url: &str) -> Vec<String> {
    let Some(p) = password_span(url)
        .map(|r| url[r].to_string())
        .filter(|p| !p.is_empty())
    else {
        return vec![];
    };
    let decoded = url::form_urlencoded::parse(format!("p={p}").as_bytes())
        .next()
        .map(|(_, v)| v.to_string());
    let mut v = vec![p];
    v.extend(decoded.filter(|d| !d.is_empty() && !v.contains(d)));
    v
}

/// A restic repository string berth supports, or why not.
/// A restic snapshot id or its prefix: 8 to 64 lowercase hex digits (never an option, a path
/// or one of restic's names such as `latest`).
pub fn check_snapshot_id(id: &str) -> Result<(), Invalid> {
    let hex = id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    match hex && (8..=64).contains(&id.len()) {
        true => Ok(()),
        false => Err(Invalid::NotSnapshotId(id.into())),
    }
}

pub fn check_url(url: &str) -> Result<(), Invalid> {
    let bad = |why| {
        Err(Invalid::NotRepository {
            text: shown(url),
            why,
        })
    };
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) || url.len() > 1024 {
        return bad("has spaces or control characters, or is longer than 1024");
    }
    if url.starts_with('/') {
        return match Path::new(url).components().any(|c| c.as_os_str() == "..") {
            true => bad("is a path with `..` in it"),
            false => Ok(()),
        };
    }
    let web = |rest: &str, need_path: bool| match url::Url::parse(rest) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
            match need_path && u.path().trim_matches('/').is_empty() {
                true => bad("names no bucket"),
                false => Ok(()),
            }
        }
        _ => bad("is not an http(s) URL after its scheme"),
    };
    match url.split_once(':') {
        Some(("rest", rest)) => web(rest, false),
        Some(("s3", rest)) if rest.starts_with("http") => web(rest, true),
        Some(("s3", rest)) => match rest.split_once('/') {
            Some((host, bucket)) if !host.is_empty() && !bucket.is_empty() => Ok(()),
            _ => bad("is not s3:HOST/BUCKET or s3:http(s)://HOST/BUCKET"),
        },
        Some(("sftp", rest)) => match rest.split_once(':') {
            // Neither the login nor the host after its `@` may read as an ssh option.
            Some((login, path))
                if !path.is_empty()
                    && !login.starts_with('-')
                    && login
                        .rsplit('@')
                        .next()
                        .is_some_and(|h| !h.is_empty() && !h.starts_with('-')) =>
            {
                Ok(())
            }
            _ => bad("is not sftp:[USER@]HOST:PATH"),
        },
        _ => bad("is not an absolute path, rest:, s3: or sftp:"),
    }
}

/// Every entry of `backup_repositories:`, each error by its field.
pub(super) fn build(
    files: &std::collections::BTreeMap<String, RepositoryFile>,
    plans: &dyn Fn(&str) -> bool,
    resolve: &dyn Fn(&Path) -> PathBuf,
    err: &mut dyn FnMut(&str, String),
) -> Vec<Repository> {
    let mut out = Vec::new();
    for (name, f) in files {
        let field = |k: &str| format!("backup_repositories.{name}.{k}");
        if !is_dns_label(name) || name.len() > 40 {
            let why = "must be a DNS label of at most 40 characters";
            err(&format!("backup_repositories.{name}"), why.into());
        }
        if let Err(why) = check_url(&f.url) {
            err(&field("url"), why.to_string());
        }
        for p in f.plans.iter().filter(|p| !plans(p)) {
            err(&field("plans"), format!("{p:?} is not a plan of this host"));
        }
        for t in f.tenants.iter().filter(|t| !is_tenant_name(t)) {
            err(&field("tenants"), Invalid::NotTenant(t.clone()).to_string());
        }
        let timeout = match f.timeout.as_deref().map(units::parse_duration) {
            None => DEFAULT_TIMEOUT,
            Some(Ok(d)) if d >= Duration::from_secs(10) && d <= Duration::from_secs(7 * 86400) => d,
            Some(Ok(_)) => {
                err(&field("timeout"), "is out of range (10s..=7d)".into());
                DEFAULT_TIMEOUT
            }
            Some(Err(e)) => {
                err(&field("timeout"), e.to_string());
                DEFAULT_TIMEOUT
            }
        };
        out.push(Repository {
            name: name.clone(),
            url: f.url.clone(),
            password_file: resolve(&f.password_file),
            env_file: f.env_file.as_deref().map(resolve),
            plans: f.plans.iter().cloned().collect(),
            tenants: f.tenants.iter().cloned().collect(),
            timeout,
            create: f.create,
            check: f.check.as_ref().map(|c| {
                if let Err(why) = super::schedule::parse(&c.schedule) {
                    err(&field("check.schedule"), why.to_string());
                }
                let read = c
                    .read_data
                    .clone()
                    .unwrap_or_else(|| DEFAULT_READ_DATA.into());
                if let Err(why) = check_read_data(&read) {
                    err(&field("check.read_data"), why);
                }
                (c.schedule.clone(), read)
            }),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_repository_kinds_berth_supports_pass_and_each_refusal_says_why() {
        for ok in [
            "/srv/backups/restic",
            "rest:http://127.0.0.1:8000/",
            "rest:https://user:secret@backup.example.com/host1",
            "s3:http://127.0.0.1:5000/bucket",
            "s3:s3.amazonaws.com/bucket/prefix",
            "sftp:backup@host.example.com:/srv/restic",
        ] {
            assert_eq!(check_url(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("relative/path", "absolute path"),
            ("/srv/../etc", "`..`"),
            ("rest:ftp://h/", "http(s) URL"),
            ("s3:http://127.0.0.1:5000/", "bucket"),
            ("s3:nobucket", "s3:HOST/BUCKET"),
            ("sftp:-oProxyCommand=x:/p", "sftp:"),
            ("sftp:u@-oProxyCommand=x:/p", "sftp:"),
            ("rclone:remote:path", "absolute path"),
            ("/srv/a b", "spaces"),
            ("/srv/a\nb", "control"),
        ] {
            let e = check_url(bad).expect_err(bad).to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_checks_read_data_is_a_share_or_a_part_of_parts() {
        for ok in ["5%", "100%", "0.5%", "1/10", "10/10"] {
            assert_eq!(check_read_data(ok), Ok(()), "{ok}");
        }
        for bad in [
            "0%", "101%", "5", "0/10", "11/10", "1/0", "x%", "-1/2", "1/20000",
        ] {
            assert!(check_read_data(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_shown_repository_never_carries_its_password() {
        assert_eq!(
            shown("rest:https://user:secret@backup.example.com/host1"),
            "rest:https://user@backup.example.com/host1"
        );
        assert_eq!(shown("/srv/restic"), "/srv/restic");
        // One that does not parse (a bad port) is the one an error shows: covered too.
        assert_eq!(shown("rest:http://u:hunter2@h:x/"), "rest:http://u@h:x/");
        assert_eq!(
            secrets("rest:http://u:hunter2@h:x/"),
            ["hunter2".to_string()]
        );
        assert_eq!(
            shown("rest:http://h/u:p@x"),
            "rest:http://h/u:p@x",
            "a path is not a login"
        );
        assert_eq!(
            secrets("rest:https://u:s%40cret@h/"),
            ["s%40cret".to_string(), "s@cret".to_string()]
        );
        assert!(secrets("/srv/restic").is_empty());
    }

    #[test]
    fn a_repository_serves_its_tenants_and_plans_or_everyone_when_it_names_none() {
        let mut r = Repository {
            name: "off".into(),
            url: "/srv/r".into(),
            password_file: "/k".into(),
            env_file: None,
            plans: BTreeSet::new(),
            tenants: BTreeSet::new(),
            timeout: DEFAULT_TIMEOUT,
            create: false,
            check: None,
        };
        assert!(r.serves("acme", None));
        r.plans.insert("gold".into());
        r.tenants.insert("vip".into());
        assert!(r.serves("acme", Some("gold")));
        assert!(r.serves("vip", None));
        assert!(!r.serves("acme", Some("small")));
        assert!(!r.serves("acme", None));
    }
}
