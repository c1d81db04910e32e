//! Certificate manager behaviour against a fake issuer and clock.

use super::{
    CertError,
    ca::InternalCa,
    issuer::{Clock, Issued, Issuer},
    manager::{Budgets, CertManager},
    store::CertStore,
};
use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, SystemTime},
};

struct FakeClock(Mutex<SystemTime>);
impl Clock for FakeClock {
    fn now(&self) -> SystemTime {
        *self.0.lock().unwrap()
    }
}
impl FakeClock {
    fn advance(&self, d: Duration) {
        *self.0.lock().unwrap() += d;
    }
}

struct FakeIssuer {
    ca: InternalCa,
    fail: AtomicBool,
    calls: AtomicUsize,
    slow: tokio::sync::Semaphore,
    /// The renewal window the fake CA suggests (ARI), and how often it was asked.
    ari: Mutex<Option<(SystemTime, SystemTime)>>,
    ari_calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Issuer for FakeIssuer {
    fn scope(&self) -> String {
        "acme-fake".into()
    }
    async fn issue(&self, domain: &str, _: Option<&str>) -> Result<Issued, CertError> {
        self.calls.fetch_add(1, SeqCst);
        let _permit = self.slow.acquire().await;
        if self.fail.load(SeqCst) {
            return Err(CertError::Acme(format!("validation of {domain} failed")));
        }
        let (chain_pem, key_pem) = self.ca.issue(domain, Duration::from_secs(6 * 86400))?;
        Ok(Issued { chain_pem, key_pem })
    }
    async fn renewal_window(&self, _: &str) -> Option<(SystemTime, SystemTime)> {
        self.ari_calls.fetch_add(1, SeqCst);
        *self.ari.lock().unwrap()
    }
}

struct Fixture {
    mgr: Arc<CertManager>,
    issuer: Arc<FakeIssuer>,
    clock: Arc<FakeClock>,
    _dir: tempfile::TempDir,
}

fn fixture(per_tenant: u32) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let ca = InternalCa::load_or_create(&dir.path().join("ca")).unwrap();
    let issuer = Arc::new(FakeIssuer {
        ca: InternalCa::load_or_create(&dir.path().join("public-ca")).unwrap(),
        fail: AtomicBool::new(false),
        calls: AtomicUsize::new(0),
        slow: tokio::sync::Semaphore::new(1000),
        ari: Mutex::new(None),
        ari_calls: AtomicUsize::new(0),
    });
    let clock = Arc::new(FakeClock(Mutex::new(SystemTime::now())));
    let budgets = Budgets {
        orders_per_minute: 10,
        orders_per_tenant_per_day: per_tenant,
        check_interval: Duration::from_secs(600),
    };
    let mgr = CertManager::new(
        CertStore::new(dir.path().join("certs")),
        ca,
        Some(issuer.clone()),
        clock.clone(),
        budgets,
    );
    Fixture {
        mgr,
        issuer,
        clock,
        _dir: dir,
    }
}

fn domains(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(d, t)| (d.to_string(), t.to_string()))
        .collect()
}

fn issuer_of(f: &Fixture, domain: &str) -> String {
    f.mgr
        .rows()
        .into_iter()
        .find(|r| r.domain == domain)
        .map(|r| r.issuer)
        .unwrap_or_default()
}

async fn settle(f: &Fixture) {
    for _ in 0..200 {
        if f.mgr.rows().iter().all(|r| !r.ordering) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_new_domain_is_served_at_once_and_gets_a_public_certificate_soon_after() {
    let f = fixture(20);
    f.mgr.set_domains(domains(&[("a.example.com", "a")]));
    assert!(f.mgr.table().get("a.example.com").is_some());
    assert_eq!(issuer_of(&f, "a.example.com"), "internal");
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(issuer_of(&f, "a.example.com"), "acme");
    assert_eq!(f.issuer.calls.load(SeqCst), 1);
}

#[tokio::test]
async fn a_failed_order_keeps_the_current_certificate_and_backs_off() {
    let f = fixture(20);
    f.issuer.fail.store(true, SeqCst);
    f.mgr.set_domains(domains(&[("a.example.com", "a")]));
    f.mgr.maintain();
    settle(&f).await;
    let row = f.mgr.rows().pop().unwrap();
    assert_eq!(row.issuer, "internal");
    assert!(
        row.last_error
            .unwrap()
            .contains("validation of a.example.com failed")
    );
    assert!(f.mgr.table().get("a.example.com").is_some(), "still served");
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(
        f.issuer.calls.load(SeqCst),
        1,
        "no retry inside the backoff"
    );
    f.clock.advance(Duration::from_secs(61));
    f.issuer.fail.store(false, SeqCst);
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(issuer_of(&f, "a.example.com"), "acme");
}

#[tokio::test]
async fn public_certificates_are_renewed_when_their_renewal_time_comes() {
    let f = fixture(20);
    f.mgr.set_domains(domains(&[("a.example.com", "a")]));
    f.mgr.maintain();
    settle(&f).await;
    f.clock.advance(Duration::from_secs(2 * 86400));
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(
        f.issuer.calls.load(SeqCst),
        1,
        "6-day cert is renewed at half its life"
    );
    f.clock.advance(Duration::from_secs(86400 + 60));
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(f.issuer.calls.load(SeqCst), 2);
}

#[tokio::test]
async fn only_one_order_per_domain_runs_at_a_time() {
    let f = fixture(20);
    f.mgr.set_domains(domains(&[("a.example.com", "a")]));
    let permits = f.issuer.slow.acquire_many(1000).await.unwrap();
    let m = f.mgr.clone();
    let first = tokio::spawn(async move { m.renew("a.example.com").await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(matches!(
        f.mgr.renew("a.example.com").await,
        Err(CertError::Busy(_))
    ));
    drop(permits);
    first.await.unwrap().unwrap();
    assert_eq!(f.issuer.calls.load(SeqCst), 1);
}

#[tokio::test]
async fn a_tenant_over_its_order_quota_is_refused_without_touching_others() {
    let f = fixture(1);
    f.mgr.set_domains(domains(&[
        ("a.example.com", "a"),
        ("a2.example.com", "a"),
        ("b.example.com", "b"),
    ]));
    f.mgr.renew("a.example.com").await.unwrap();
    assert!(matches!(
        f.mgr.renew("a2.example.com").await,
        Err(CertError::RateLimited(_))
    ));
    f.mgr.renew("b.example.com").await.unwrap();
}

#[tokio::test]
async fn removing_a_domain_stops_serving_it_at_once() {
    let f = fixture(20);
    f.mgr
        .set_domains(domains(&[("a.example.com", "a"), ("b.example.com", "b")]));
    f.mgr.set_domains(domains(&[("b.example.com", "b")]));
    assert!(f.mgr.table().get("a.example.com").is_none());
    assert!(f.mgr.table().get("b.example.com").is_some());
}

#[tokio::test]
async fn certificates_survive_a_restart_from_disk() {
    let f = fixture(20);
    f.mgr.set_domains(domains(&[("a.example.com", "a")]));
    f.mgr.maintain();
    settle(&f).await;
    let dir = f._dir.path();
    let again = CertManager::new(
        CertStore::new(dir.join("certs")),
        InternalCa::load_or_create(&dir.join("ca")).unwrap(),
        Some(f.issuer.clone()),
        f.clock.clone(),
        Budgets {
            orders_per_minute: 10,
            orders_per_tenant_per_day: 20,
            check_interval: Duration::from_secs(600),
        },
    );
    again.set_domains(domains(&[("a.example.com", "a")]));
    assert_eq!(again.rows()[0].issuer, "acme");
    again.maintain();
    assert_eq!(
        f.issuer.calls.load(SeqCst),
        1,
        "no new order after a restart"
    );
}

#[tokio::test]
async fn a_renewal_window_pulled_forward_by_the_ca_is_followed_within_hours() {
    let f = fixture(20);
    f.mgr.set_domains(domains(&[("a.example.com", "a")]));
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(
        f.issuer.ari_calls.load(SeqCst),
        1,
        "asked once at issue time"
    );
    f.clock.advance(Duration::from_secs(3600));
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(
        f.issuer.ari_calls.load(SeqCst),
        1,
        "not asked again within hours"
    );

    // The CA now wants the certificate replaced within the next hour (say, a revocation).
    let now = f.clock.now();
    *f.issuer.ari.lock().unwrap() = Some((now, now + Duration::from_secs(3600)));
    f.clock.advance(super::manager::ARI_REFRESH);
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(f.issuer.ari_calls.load(SeqCst), 2, "window read again");
    assert_eq!(f.issuer.calls.load(SeqCst), 1);
    f.clock.advance(Duration::from_secs(3600));
    f.mgr.maintain();
    settle(&f).await;
    assert_eq!(
        f.issuer.calls.load(SeqCst),
        2,
        "renewed inside the new window, days before the 1/2-life rule would have"
    );
}
