//! The agent's side of the relay: accounts (from desired state), per-tenant windows, counts and
//! last errors, the SASL and milter answers, and what `berth mail` shows.

use super::{
    log::{Event, Outcome},
    policy::{self, Account, Refusal, Window},
    relay::Paths,
};
use crate::desired::mail::MailConfig;
use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
};
use serde::Serialize;
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    path::PathBuf,
    sync::{Mutex, RwLock, atomic::AtomicBool},
    time::SystemTime,
};
use subtle::ConstantTimeEq;

/// Last errors kept per tenant.
const LAST_ERRORS: usize = 10;
/// Queue ids remembered (a bound on memory if the log's `removed` lines are missed).
const MAX_QIDS: usize = 100_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ResultLabels {
    pub tenant: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct TenantLabels {
    pub tenant: String,
}

/// One refusal or failed delivery.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LastError {
    /// Seconds since the epoch.
    pub at: u64,
    /// `refused`, `deferred` or `bounced`.
    pub result: String,
    pub text: String,
}

/// A tenant's ledger.
#[derive(Debug, Default)]
pub(super) struct Book {
    /// The identity of the tenant these figures are of (`store::identity`); a later tenant of
    /// the same name starts with a book of its own.
    pub id: Option<String>,
    pub window: Window,
    pub counts: BTreeMap<&'static str, u64>,
    pub last_errors: VecDeque<LastError>,
    pub queued: BTreeSet<String>,
}

/// A tenant's sending window as saved across agent restarts.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub(super) enum SavedWindow {
    Of {
        id: Option<String>,
        times: Vec<u64>,
    },
    /// As written before identities.
    Legacy(Vec<u64>),
}

/// The relay's state in the agent.
pub struct Mail {
    pub(super) cfg: MailConfig,
    pub(super) namespace: String,
    pub(super) paths: Paths,
    /// Login → account and the file holding its password.
    pub(super) accounts: RwLock<BTreeMap<String, (Account, PathBuf)>>,
    pub(super) books: Mutex<BTreeMap<String, Book>>,
    /// Queue id → tenant.
    pub(super) qids: Mutex<HashMap<String, String>>,
    pub(super) messages: Family<ResultLabels, Counter>,
    pub(super) queue: Family<TenantLabels, Gauge>,
    /// Windows changed since they were saved.
    pub(super) dirty: AtomicBool,
    /// The last failure to bring the relay up, if any.
    pub(super) error: Mutex<Option<String>>,
    /// Tenants whose network the running relay is attached to.
    pub(super) attached: Mutex<BTreeSet<String>>,
    /// When the relay's default route was last pinned to the host network (it is again every
    /// `relay::PIN_EVERY`: the engine restarts the relay with whatever route it picks).
    pub(super) pinned: Mutex<Option<std::time::Instant>>,
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Mail {
    /// The relay of `cfg`, with the windows saved by the last agent.
    pub fn open(cfg: MailConfig, namespace: &str, layout: &crate::store::Layout) -> Mail {
        let paths = Paths::new(layout);
        let saved: BTreeMap<String, SavedWindow> = std::fs::read(paths.windows())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let books = saved
            .into_iter()
            .map(|(t, w)| {
                let (id, times) = match w {
                    SavedWindow::Legacy(times) => (None, times),
                    SavedWindow::Of { id, times } => (id, times),
                };
                let book = Book {
                    id,
                    window: Window::from_times(&times),
                    ..Book::default()
                };
                (t, book)
            })
            .collect();
        Mail {
            cfg,
            namespace: namespace.into(),
            paths,
            accounts: RwLock::default(),
            books: Mutex::new(books),
            qids: Mutex::default(),
            messages: Family::default(),
            queue: Family::default(),
            dirty: AtomicBool::new(false),
            error: Mutex::default(),
            attached: Mutex::default(),
            pinned: Mutex::default(),
        }
    }

    pub fn register(&self, registry: &mut prometheus_client::registry::Registry) {
        registry.register(
            "berth_mail_messages",
            "Messages through the shared mail relay by tenant and result: accepted and refused \
             at submission; sent, deferred and bounced per recipient delivery attempt",
            self.messages.clone(),
        );
        registry.register(
            "berth_mail_queue_messages",
            "A tenant's messages in the relay's queue",
            self.queue.clone(),
        );
    }

    /// Counts `result` for `tenant`, with an error text for the failures.
    pub(super) fn count(&self, tenant: &str, result: &'static str, error: Option<&str>) {
        self.messages
            .get_or_create(&ResultLabels {
                tenant: tenant.into(),
                result: result.into(),
            })
            .inc();
        let mut books = self.books.lock().expect("mail books");
        let book = books.entry(tenant.to_string()).or_default();
        *book.counts.entry(result).or_default() += 1;
        if let Some(text) = error {
            if book.last_errors.len() == LAST_ERRORS {
                book.last_errors.pop_front();
            }
            book.last_errors.push_back(LastError {
                at: epoch(SystemTime::now()),
                result: result.into(),
                text: text.into(),
            });
        }
    }

    fn set_queued(&self, tenant: &str, n: usize) {
        self.queue
            .get_or_create(&TenantLabels {
                tenant: tenant.into(),
            })
            .set(n as i64);
    }

    /// Applies one line of the relay's log.
    pub(super) fn on_event(&self, e: Event) {
        match e {
            // Whose a queue id is, for its results (also of messages accepted before the agent
            // restarted); only messages the milter accepted count as queued.
            Event::Queued { qid, login } => {
                if self.accounts.read().expect("accounts").contains_key(&login) {
                    let mut qids = self.qids.lock().expect("qids");
                    if qids.len() >= MAX_QIDS {
                        qids.clear();
                    }
                    qids.insert(qid, login);
                }
            }
            Event::Status {
                qid,
                result,
                reason,
            } => {
                let tenant = self.qids.lock().expect("qids").get(&qid).cloned();
                if let Some(t) = tenant {
                    let error = (result != Outcome::Sent).then_some(reason.as_str());
                    self.count(&t, result.name(), error);
                }
            }
            Event::Removed { qid } => {
                let tenant = self.qids.lock().expect("qids").remove(&qid);
                if let Some(t) = tenant {
                    let n = {
                        let mut books = self.books.lock().expect("mail books");
                        let book = books.entry(t.clone()).or_default();
                        book.queued.remove(&qid);
                        book.queued.len()
                    };
                    self.set_queued(&t, n);
                }
            }
        }
    }

    /// A message the milter accepted: in the tenant's queue until the log says `removed`.
    fn remember(&self, qid: &str, tenant: &str) {
        let mut qids = self.qids.lock().expect("qids");
        if qids.len() >= MAX_QIDS {
            qids.clear();
        }
        qids.insert(qid.into(), tenant.into());
        drop(qids);
        let n = {
            let mut books = self.books.lock().expect("mail books");
            let book = books.entry(tenant.to_string()).or_default();
            book.queued.insert(qid.into());
            book.queued.len()
        };
        self.set_queued(tenant, n);
    }

    /// What `berth mail T` shows; None when the tenant has no relay account.
    pub fn report(&self, tenant: &str) -> Option<MailReport> {
        let (acct, _) = self.accounts.read().expect("accounts").get(tenant)?.clone();
        let mut books = self.books.lock().expect("mail books");
        let book = books.entry(tenant.to_string()).or_default();
        let (last_hour, last_day) = book.window.counts(SystemTime::now());
        let n = |k: &str| book.counts.get(k).copied().unwrap_or_default();
        Some(MailReport {
            tenant: tenant.into(),
            login: tenant.into(),
            host: crate::desired::mail::relay_alias(&self.namespace),
            port: crate::desired::mail::RELAY_PORT,
            domains: acct.domains.clone(),
            suspended: acct.suspended,
            per_hour: acct.limits.per_hour,
            per_day: acct.limits.per_day,
            recipients: acct.limits.recipients,
            max_size: acct.limits.max_size,
            last_hour,
            last_day,
            accepted: n("accepted"),
            sent: n("sent"),
            deferred: n("deferred"),
            bounced: n("bounced"),
            refused: n("refused"),
            queued: book.queued.len(),
            last_errors: book.last_errors.iter().cloned().collect(),
            relay_error: self.error.lock().expect("mail error").clone(),
        })
    }

    /// The DNS records the tenant publishes: one DKIM TXT per domain.
    pub fn dns(&self, tenant: &str) -> Option<Vec<DnsRecord>> {
        let (acct, _) = self.accounts.read().expect("accounts").get(tenant)?.clone();
        let sel = &self.cfg.dkim_selector;
        Some(
            acct.domains
                .iter()
                .map(|d| DnsRecord {
                    domain: d.clone(),
                    name: format!("{sel}._domainkey.{d}"),
                    kind: "TXT".into(),
                    value: std::fs::read_to_string(
                        self.paths.records(tenant).join(format!("{d}.txt")),
                    )
                    .ok(),
                })
                .collect(),
        )
    }
}

/// A tenant's mail as `berth mail T` and `GET /v1/instances/{t}/mail` show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MailReport {
    pub tenant: String,
    /// The SASL login (the tenant's name); the password is the template's secret file.
    pub login: String,
    /// The relay as the tenant's containers reach it.
    pub host: String,
    pub port: u16,
    /// Domains the tenant may send from (subdomain and verified custom domains).
    pub domains: Vec<String>,
    pub suspended: bool,
    pub per_hour: u32,
    pub per_day: u32,
    pub recipients: u32,
    pub max_size: u64,
    /// Messages accepted in the last rolling hour and day.
    pub last_hour: u32,
    pub last_day: u32,
    /// Counts since the agent started (`refused` and `accepted` at submission; `sent`,
    /// `deferred`, `bounced` per recipient delivery attempt).
    pub accepted: u64,
    pub sent: u64,
    pub deferred: u64,
    pub bounced: u64,
    pub refused: u64,
    /// Messages of the tenant still in the relay's queue.
    pub queued: usize,
    pub last_errors: Vec<LastError>,
    /// Why the relay is not up, if it is not.
    pub relay_error: Option<String>,
}

/// A DNS record a tenant publishes for its mail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DnsRecord {
    pub domain: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// None until the relay has made the domain's key.
    pub value: Option<String>,
}

impl super::milter::Ledger for Mail {
    fn account(&self, login: &str) -> Option<Account> {
        let accounts = self.accounts.read().expect("accounts");
        accounts.get(login).map(|(a, _)| a.clone())
    }

    fn mail_from(&self, acct: &Account, from: &str, now: SystemTime) -> Result<(), Refusal> {
        let mut books = self.books.lock().expect("mail books");
        let book = books.entry(acct.tenant.clone()).or_default();
        policy::mail_from(acct, from, &mut book.window, now)
    }

    fn accept(&self, acct: &Account, qid: Option<&str>, now: SystemTime) -> Result<(), Refusal> {
        {
            let mut books = self.books.lock().expect("mail books");
            let book = books.entry(acct.tenant.clone()).or_default();
            policy::within_rate(acct, &mut book.window, now)?;
            book.window.record(now);
        }
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        self.count(&acct.tenant, "accepted", None);
        if let Some(q) = qid.filter(|q| !q.is_empty()) {
            self.remember(q, &acct.tenant);
        }
        Ok(())
    }

    fn refused(&self, tenant: Option<&str>, r: &Refusal) {
        match tenant {
            Some(t) => self.count(t, "refused", Some(&r.reply())),
            None => {
                tracing::info!(reply = %r.reply(), "mail relay refused a client without a login")
            }
        }
    }
}

impl super::auth::Verifier for Mail {
    fn verify(&self, login: &str, password: &[u8]) -> bool {
        let path = match self.accounts.read().expect("accounts").get(login) {
            Some((_, p)) => p.clone(),
            None => return false,
        };
        std::fs::read(&path).is_ok_and(|pw| pw.trim_ascii().ct_eq(password).into())
    }

    fn failed(&self, login: &str) {
        if self.accounts.read().expect("accounts").contains_key(login) {
            self.count(login, "refused", Some("535 5.7.8 authentication failed"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::{auth::Verifier, milter::Ledger};

    fn mail() -> (Mail, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let layout = crate::store::Layout::new(dir.path().to_path_buf());
        let f: crate::spec::host::MailFile = serde_yaml::from_str("{}").unwrap();
        let cfg = crate::desired::mail::build(&f, None, &|p| p.to_path_buf()).unwrap();
        let m = Mail::open(cfg, "bt", &layout);
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        let acct = Account {
            tenant: "acme".into(),
            domains: vec!["acme.test".into()],
            limits: Default::default(),
            suspended: false,
        };
        m.accounts
            .write()
            .unwrap()
            .insert("acme".into(), (acct, pw));
        (m, dir)
    }

    #[test]
    fn logins_check_the_tenant_s_secret_file_and_failures_count_against_it() {
        let (m, dir) = mail();
        assert!(m.verify("acme", b"s3cret"));
        assert!(!m.verify("acme", b"s3cre"));
        assert!(!m.verify("globex", b"s3cret"));
        m.failed("acme");
        m.failed("globex");
        assert_eq!(m.report("acme").unwrap().refused, 1);
        std::fs::remove_file(dir.path().join("pw")).unwrap();
        assert!(
            !m.verify("acme", b"s3cret"),
            "a purged secret logs in no more"
        );
    }

    #[test]
    fn accepted_messages_are_followed_through_the_log_to_their_results() {
        let (m, _dir) = mail();
        let acct = m.account("acme").unwrap();
        m.accept(&acct, Some("ABC1"), SystemTime::now()).unwrap();
        assert_eq!(m.report("acme").unwrap().queued, 1);
        m.on_event(Event::Status {
            qid: "ABC1".into(),
            result: Outcome::Deferred,
            reason: "connect refused".into(),
        });
        m.on_event(Event::Status {
            qid: "ABC1".into(),
            result: Outcome::Sent,
            reason: "250 OK".into(),
        });
        m.on_event(Event::Removed { qid: "ABC1".into() });
        m.on_event(Event::Status {
            qid: "UNKNOWN".into(),
            result: Outcome::Sent,
            reason: String::new(),
        });
        let r = m.report("acme").unwrap();
        assert_eq!((r.accepted, r.sent, r.deferred, r.queued), (1, 1, 1, 0));
        assert_eq!(r.last_hour, 1);
        assert_eq!(r.last_errors[0].text, "connect refused");
    }

    #[test]
    fn a_tenant_purged_and_added_again_starts_with_its_own_book() {
        let (m, dir) = mail();
        let layout = crate::store::Layout::new(dir.path().to_path_buf());
        crate::store::identity::ensure(&layout, "acme", None).unwrap();
        let acct = m.account("acme").unwrap();
        m.bind_books(dir.path(), std::slice::from_ref(&acct));
        m.accept(&acct, Some("Q1"), SystemTime::now()).unwrap();
        m.failed("acme");
        m.bind_books(dir.path(), std::slice::from_ref(&acct));
        assert_eq!(
            m.report("acme").unwrap().last_hour,
            1,
            "same identity, same book"
        );
        std::fs::remove_dir_all(layout.tenant("acme")).unwrap();
        crate::store::identity::ensure(&layout, "acme", None).unwrap();
        m.bind_books(dir.path(), std::slice::from_ref(&acct));
        let r = m.report("acme").unwrap();
        assert_eq!((r.last_hour, r.accepted, r.refused), (0, 0, 0));
    }
}
