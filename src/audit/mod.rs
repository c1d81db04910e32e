//! The audit log: one JSON line per change made through the API (and per refusal), and per
//! automatic action (upgrade waves, scheduled backups, sleeps and wakes), appended to
//! `<state>/audit/audit.log` (0600) and rotated by size. Refusals go to `refused.log`, counted
//! per client (`refusals`), so anonymous traffic never rotates a change's row away. Never a
//! secret or a token: actors are named by their token's name and display prefix.

mod refusals;
mod stream;

use serde::{Deserialize, Serialize};
use std::{path::Path, sync::Mutex};
use stream::Stream;

/// Rotated past this size: `audit.log` → `audit.log.1` → … → `audit.log.{KEEP}` (dropped).
pub const MAX_BYTES: u64 = 8 << 20;
pub const KEEP: usize = 4;
/// The refusal stream: `refused.log` and two older files of this size.
pub const REFUSED_MAX_BYTES: u64 = 2 << 20;
pub const REFUSED_KEEP: usize = 2;

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
    /// The client's address, for calls over TCP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// On a summary of refusals: how many more like the first were refused since `since`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// On a summary of refusals: when its tally began (Unix milliseconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<u64>,
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
            client: None,
            count: None,
            since: None,
        }
    }

    pub fn target(mut self, t: impl Into<String>) -> Event {
        self.target = Some(t.into());
        self
    }
}

/// A client as refusals and wakes are counted: an IPv4 address as it is, an IPv6 one by its
/// /64 (what one host is usually given).
pub fn client_network(client: &str) -> String {
    match client.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(a)) => ipnet::Ipv6Net::new(a, 64)
            .map_or_else(|_| client.to_string(), |n| n.trunc().to_string()),
        _ => client.to_string(),
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
    rows: Stream,
    refused: Stream,
    tally: Mutex<refusals::Tally>,
    /// Where tenants' identities are read to stamp rows (None: rows carry none).
    identities: Option<crate::store::Layout>,
}

impl Audit {
    pub fn open(dir: &Path) -> Audit {
        Audit::with_limit(dir, MAX_BYTES)
    }

    pub fn with_limit(dir: &Path, max_bytes: u64) -> Audit {
        Audit {
            rows: Stream::new(dir.join("audit.log"), max_bytes, KEEP),
            refused: Stream::new(
                dir.join("refused.log"),
                REFUSED_MAX_BYTES.min(max_bytes),
                REFUSED_KEEP,
            ),
            tally: Mutex::default(),
            identities: None,
        }
    }

    /// Rows about a tenant are stamped with its identity, read from `layout`.
    pub fn with_identities(mut self, layout: crate::store::Layout) -> Audit {
        self.identities = Some(layout);
        self
    }

    /// Appends `e` (a refusal to the refusal stream, counted); a log that cannot be written is
    /// reported in the agent's log, and the action it records is not undone.
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
        let now = now_ms();
        if e.result == "denied" {
            let rows = self.tally.lock().expect("tally lock").add(e, now);
            self.write(&self.refused, &rows);
        } else {
            self.write(&self.rows, std::slice::from_ref(e));
            self.flush(now, false);
        }
    }

    /// Writes the summaries of refusal tallies that have ended (of all with `all`, as the
    /// agent stops).
    pub fn flush(&self, now: u64, all: bool) {
        let rows = self.tally.lock().expect("tally lock").sweep(now, all);
        self.write(&self.refused, &rows);
    }

    fn write(&self, stream: &Stream, rows: &[Event]) {
        if rows.is_empty() {
            return;
        }
        if let Err(err) = stream.append(rows) {
            tracing::error!(error = %err, "cannot write the audit log");
        }
    }

    /// The rows `f` keeps (changes and refusals together), oldest first; lines that do not
    /// parse are skipped. Never holds a lock a writer needs while reading.
    pub fn query(&self, f: &Filter) -> Vec<Event> {
        self.flush(now_ms(), false);
        let (rows, refused) = (self.rows.snapshot(), self.refused.snapshot());
        let mut out = Stream::rows(rows, |e| f.keeps(e));
        out.extend(Stream::rows(refused, |e| f.keeps(e)));
        out.sort_by_key(|e| e.time);
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
    use std::io::Write;

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

    fn refusal(client: &str) -> Event {
        let mut e = Event::system("x", None, "auth.login", Err("wrong token".into()));
        e.result = "denied".into();
        e.client = Some(client.into());
        e
    }

    #[test]
    fn a_flood_of_refusals_never_rotates_a_change_away() {
        let dir = tempfile::tempdir().unwrap();
        let a = Audit::with_limit(dir.path(), 4096);
        a.record(&ev("acme", "backup.create"));
        let live = dir.path().join("audit.log");
        let before = std::fs::metadata(&live).unwrap().len();
        for i in 0..20_000u32 {
            a.record(&refusal(&std::net::Ipv4Addr::from(i % 3000).to_string()));
        }
        assert_eq!(std::fs::metadata(&live).unwrap().len(), before);
        assert!(!dir.path().join("audit.log.1").exists());
        let rows = a.query(&Filter::default());
        assert_eq!(rows[0].action, "backup.create", "kept: {}", rows.len());
        assert!(dir.path().join("refused.log").exists());
        assert!(
            !dir.path()
                .join(format!("refused.log.{}", REFUSED_KEEP + 1))
                .exists()
        );
    }

    #[test]
    fn a_reader_holding_a_snapshot_does_not_stop_writers() {
        let dir = tempfile::tempdir().unwrap();
        let a = std::sync::Arc::new(Audit::with_limit(dir.path(), 2048));
        for i in 0..50 {
            a.record(&ev("acme", &format!("a.{i}")));
        }
        // A reader between opening the files and reading them, like a slow viewer.
        let held = a.rows.snapshot();
        let writer = {
            let a = a.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    a.record(&ev("globex", &format!("b.{i}")));
                }
            })
        };
        writer.join().unwrap();
        let old = Stream::rows(held, |_| true);
        assert!(
            old.iter().any(|e| e.action == "a.0"),
            "the snapshot reads what it opened"
        );
        let now = a.query(&Filter::default());
        assert_eq!(now.last().unwrap().action, "b.199");
    }
}
