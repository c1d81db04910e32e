//! ACME end to end against Pebble and pebble-challtestsrv (Debian's `pebble` package) on
//! loopback: issue, renew, failed validation with backoff, chain verified against Pebble's
//! root, certificates hot-swapped into the live TLS listener; domain proofs over DNS.

mod common;

use berth::{
    certs::{
        CertManager,
        acme::AcmeIssuer,
        ca::InternalCa,
        http01::Http01Tokens,
        issuer::{Issuer, SystemClock},
        manager::Budgets,
        store::CertStore,
    },
    desired::edge::{AcmeConfig, ProxyConfig, ProxyTimeouts},
    domains::verify,
    proxy::Proxy,
};
use common::challtest::ChallTest;
use std::{
    collections::BTreeMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

const ACME: u16 = 19400;
const ACME_MGMT: u16 = 19401;
const DNS: u16 = 19402;
const CHALL_MGMT: u16 = 19403;
const HTTP: u16 = 19404;
const HTTPS: u16 = 19405;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn require_pebble() -> bool {
    let found = Command::new("pebble")
        .arg("-h")
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found && std::env::var("BERTH_REQUIRE_DOCKER").as_deref() == Ok("1") {
        panic!("pebble is not installed (apt-get install pebble) and BERTH_REQUIRE_DOCKER=1");
    }
    found
}

/// Pebble's own HTTPS certificate, from a throwaway CA the test trusts.
fn pebble_tls(dir: &std::path::Path) -> std::path::PathBuf {
    let ca = InternalCa::load_or_create(&dir.join("pebble-ca")).unwrap();
    let (chain, key) = ca.issue("localhost", Duration::from_secs(86400)).unwrap();
    std::fs::write(dir.join("pebble.pem"), chain).unwrap();
    std::fs::write(dir.join("pebble.key"), key).unwrap();
    dir.join("pebble-ca/ca.pem")
}

/// Pebble on loopback: its ACME directory on `acme`, management on `mgmt`, HTTP-01 validated
/// on `http`, names resolved by challtestsrv on `dns`; certificates valid `validity` seconds
/// (None: Pebble's default). Its own TLS from a CA in `dir`, whose root is returned.
fn start_pebble(
    dir: &std::path::Path,
    (acme, mgmt, http, tls, dns): (u16, u16, u16, u16, u16),
    validity: Option<u64>,
) -> (Kill, std::path::PathBuf) {
    let trust = pebble_tls(dir);
    let mut cfg = serde_json::json!({
        "listenAddress": format!("127.0.0.1:{acme}"), "managementListenAddress": format!("127.0.0.1:{mgmt}"),
        "certificate": dir.join("pebble.pem"), "privateKey": dir.join("pebble.key"),
        "httpPort": http, "tlsPort": tls, "ocspResponderURL": "", "externalAccountBindingRequired": false });
    if let Some(v) = validity {
        cfg["certificateValidityPeriod"] = v.into();
    }
    let cfg = serde_json::json!({ "pebble": cfg });
    std::fs::write(dir.join("pebble.json"), cfg.to_string()).unwrap();
    let child = Command::new("pebble")
        .arg("-config")
        .arg(dir.join("pebble.json"))
        .args(["-dnsserver", &format!("127.0.0.1:{dns}")])
        .env("PEBBLE_VA_NOSLEEP", "1")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    (Kill(child), trust)
}

/// Whether the edge on `https` serves `domain` a chain that verifies against Pebble's root
/// (fetched from its management port `mgmt`): curl's verify result ("0") and its errors.
fn verified_by_pebble_root(
    dir: &std::path::Path,
    trust: &std::path::Path,
    mgmt: u16,
    (domain, https): (&str, u16),
) -> (String, String) {
    let root = Command::new("curl")
        .args(["-sSf", "--cacert"])
        .arg(trust)
        .arg(format!("https://localhost:{mgmt}/roots/0"))
        .output()
        .unwrap();
    assert!(root.status.success(), "{root:?}");
    std::fs::write(dir.join("pebble-root.pem"), &root.stdout).unwrap();
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{ssl_verify_result}",
            "--cacert",
        ])
        .arg(dir.join("pebble-root.pem"))
        .args([
            "--resolve",
            &format!("{domain}:{https}:127.0.0.1"),
            &format!("https://{domain}:{https}/"),
        ])
        .output()
        .unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    (text(&out.stdout), text(&out.stderr))
}

async fn wait_port(port: u16) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("nothing listens on {port}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_issued_renewed_and_retried_against_a_real_acme_server() {
    if !require_pebble() {
        eprintln!("skipping: pebble not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let chall = ChallTest::start(DNS, CHALL_MGMT);
    let ports = (ACME, ACME_MGMT, HTTP, 19499, DNS);
    let (_pebble, trust) = start_pebble(dir.path(), ports, None);
    wait_port(ACME).await;

    // berth's edge: the proxy answers HTTP-01 on the port Pebble validates.
    let http01 = Arc::new(Http01Tokens::default());
    let store = CertStore::new(dir.path().join("certs"));
    let acme = AcmeConfig {
        directory: format!("https://localhost:{ACME}/dir"),
        email: Some("ops@example.test".into()),
        ca_bundle: Some(trust.clone()),
        orders_per_minute: 10,
        orders_per_tenant_per_day: 20,
        check_interval: Duration::from_secs(600),
    };
    let issuer: Arc<dyn Issuer> = Arc::new(AcmeIssuer::new(&acme, store.root(), http01.clone()));
    let ca = InternalCa::load_or_create(&dir.path().join("ca")).unwrap();
    let budgets = Budgets::of(Some(&acme));
    let certs = CertManager::new(store, ca, Some(issuer), Arc::new(SystemClock), budgets);
    let pcfg = ProxyConfig {
        http: format!("127.0.0.1:{HTTP}").parse().unwrap(),
        https: format!("127.0.0.1:{HTTPS}").parse().unwrap(),
        redirect_port: HTTPS,
        shared_domains: vec![],
        trusted_proxies: vec![],
        timeouts: ProxyTimeouts::default(),
        max_header_bytes: 65536,
        max_body: 1 << 20,
        access_log: false,
        max_wakes: 4,
        client_wakes_per_minute: 10,
        wake_gap: std::time::Duration::ZERO,
    };
    let proxy = Proxy::new(pcfg, certs.table(), http01);
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _serving = proxy.clone().serve(rx).await.unwrap();

    let mut wanted = BTreeMap::new();
    wanted.insert("acme.berth.test".to_string(), "acme".to_string());
    certs.set_domains(wanted.clone());
    assert_eq!(
        certs.rows()[0].issuer,
        "internal",
        "served at once by the internal CA"
    );

    // Issue.
    certs
        .renew("acme.berth.test")
        .await
        .expect("Pebble issues a certificate");
    let row = certs
        .rows()
        .into_iter()
        .find(|r| r.domain == "acme.berth.test")
        .unwrap();
    assert_eq!(row.issuer, "acme");
    let served = served_chain(dir.path(), "acme.berth.test");

    // Chain verified against Pebble's root (fetched from its management API).
    let (result, errors) =
        verified_by_pebble_root(dir.path(), &trust, ACME_MGMT, ("acme.berth.test", HTTPS));
    assert_eq!(
        result, "0",
        "the live listener serves a chain that verifies: {errors}"
    );

    // Renew: a different certificate, swapped in without a restart.
    certs.renew("acme.berth.test").await.expect("renewal");
    assert_ne!(
        served_chain(dir.path(), "acme.berth.test"),
        served,
        "renewal installs a new certificate"
    );

    // A name that resolves where berth is not listening fails validation and backs off.
    chall.call(
        "/add-a",
        serde_json::json!({"host": "bad.berth.test.", "addresses": ["127.0.0.2"]}),
    );
    wanted.insert("bad.berth.test".to_string(), "globex".to_string());
    certs.set_domains(wanted);
    let err = certs
        .renew("bad.berth.test")
        .await
        .expect_err("validation must fail");
    assert!(err.to_string().contains("bad.berth.test"), "{err}");
    let bad = certs
        .rows()
        .into_iter()
        .find(|r| r.domain == "bad.berth.test")
        .unwrap();
    assert_eq!(
        bad.issuer, "internal",
        "the last valid certificate keeps serving"
    );
    assert!(bad.last_error.is_some());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let wait = bad.retry_at.expect("a retry is scheduled") - now;
    assert!(
        (50..=61).contains(&wait),
        "first backoff is a minute, got {wait}s"
    );
    certs.maintain();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !certs.rows().iter().any(|r| r.ordering),
        "no order inside the backoff"
    );

    // Domain proof over DNS through challtestsrv's resolver.
    let dns = Some(format!("127.0.0.1:{DNS}").parse().unwrap());
    chall.call(
        "/set-txt",
        serde_json::json!({"host": "_berth.shop.example.test.", "value": "berth-verify=right"}),
    );
    verify::check_dns(dns, "shop.example.test", "berth-verify=right")
        .await
        .expect("right token accepted");
    let wrong = verify::check_dns(dns, "shop.example.test", "berth-verify=wrong")
        .await
        .unwrap_err();
    assert!(wrong.to_string().contains("none is the token"), "{wrong}");
}

fn served_chain(dir: &std::path::Path, domain: &str) -> String {
    let scope = berth::certs::store::acme_scope(&format!("https://localhost:{ACME}/dir"));
    std::fs::read_to_string(dir.join("certs").join(scope).join(domain).join("cert.pem")).unwrap()
}

const E2E_SLOT: u16 = 75;
const E2E_ACME: u16 = 19424;
const E2E_ACME_MGMT: u16 = 19425;
const E2E_DNS: u16 = 19426;
const E2E_CHALL_MGMT: u16 = 19427;

fn cert_rows(h: &common::Harness) -> Vec<serde_json::Value> {
    let o = h.cli(&["cert", "ls", "-o", "json"]);
    serde_json::from_slice::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

fn cert_row(h: &common::Harness, domain: &str) -> serde_json::Value {
    cert_rows(h)
        .into_iter()
        .find(|r| r["domain"] == domain)
        .unwrap_or_default()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// As users run it: `berth serve` with `tls.acme` against Pebble (certificates valid 30 s).
/// A tenant's name gets a public certificate that verifies against Pebble's root and is renewed
/// before it expires; a name Pebble cannot validate keeps its internal certificate, backs off
/// a minute, shows why in `berth cert ls` and the metrics, and is issued on the retry after
/// its DNS is fixed.
#[test]
fn berth_serve_orders_renews_and_retries_a_tenants_certificate_from_pebble() {
    let Some(_g) = common::docker_test() else {
        return;
    };
    assert!(require_pebble(), "pebble is installed by scripts/test.sh");
    let mut h = common::Harness::new(E2E_SLOT);
    let (http, https) = h.with_proxy(E2E_SLOT);
    let chall = ChallTest::start(E2E_DNS, E2E_CHALL_MGMT);
    // pb's name points where nothing listens: Pebble's validation fails until it is fixed.
    chall.call(
        "/add-a",
        serde_json::json!({"host": "pb.apps.test.", "addresses": ["127.0.0.2"]}),
    );
    let pdir = h.path("pebble");
    std::fs::create_dir_all(&pdir).unwrap();
    let ports = (E2E_ACME, E2E_ACME_MGMT, http, 19428, E2E_DNS);
    let (_pebble, trust) = start_pebble(&pdir, ports, Some(30));
    common::wait_for(
        Duration::from_secs(10),
        || std::net::TcpStream::connect(("127.0.0.1", E2E_ACME)).is_ok(),
        "pebble listening",
    );
    let mut host = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    host.push_str(&format!(
        "tls:\n  acme:\n    directory: https://localhost:{E2E_ACME}/dir\n    email: ops@apps.test\n    \
         ca_bundle: {}\n    orders_per_minute: 60\n    check_interval: 5s\n",
        trust.display()
    ));
    std::fs::write(h.path("berth.yaml"), host).unwrap();
    for t in ["pa", "pb"] {
        common::write_instance(
            &h,
            t,
            &format!(
                "template: demo\nversion: \"1\"\nplan: small\nparameters:\n  site_title: {t}\n  \
                 admin_email: ops@{t}.test\n  brand_color: \"#336699\"\n"
            ),
        );
    }
    h.start();
    h.wait_running(&["pa", "pb"]);

    // Issued: pa's name is served a chain that verifies against Pebble's root.
    common::wait_for(
        Duration::from_secs(60),
        || cert_row(&h, "pa.apps.test")["issuer"] == "acme",
        "pa.apps.test's certificate from Pebble",
    );
    let first = cert_row(&h, "pa.apps.test")["not_after"].as_u64().unwrap();
    let (result, errors) =
        verified_by_pebble_root(&pdir, &trust, E2E_ACME_MGMT, ("pa.apps.test", https));
    assert_eq!(result, "0", "{errors}");

    // Refused: pb keeps its internal certificate, backs off a minute, and says why.
    common::wait_for(
        Duration::from_secs(60),
        || cert_row(&h, "pb.apps.test")["last_error"].is_string(),
        "pb.apps.test's failed order",
    );
    let pb = cert_row(&h, "pb.apps.test");
    assert_eq!(pb["issuer"], "internal", "{pb}");
    let wait = pb["retry_at"].as_u64().unwrap().saturating_sub(unix_now());
    assert!((30..=61).contains(&wait), "first backoff ~1 min: {pb}");
    let ok = |m: &str, d: &str| {
        common::sample(m, &format!("berth_certificate_renewal_ok{{domain=\"{d}\""))
    };
    assert_eq!(ok(&h.metrics(), "pb.apps.test"), Some(0.0));
    assert_eq!(ok(&h.metrics(), "pa.apps.test"), Some(1.0));
    chall.call("/clear-a", serde_json::json!({"host": "pb.apps.test."}));

    // Renewed before expiry (30 s certificates, renewed at half), and pb issued on its retry.
    common::wait_for(
        Duration::from_secs(100),
        || {
            let (pa, pb) = (cert_row(&h, "pa.apps.test"), cert_row(&h, "pb.apps.test"));
            pa["not_after"].as_u64() > Some(first)
                && pa["issuer"] == "acme"
                && pb["issuer"] == "acme"
                && pb["last_error"].is_null()
        },
        "pa renewed and pb issued after its backoff",
    );
    let m = h.metrics();
    assert_eq!(ok(&m, "pb.apps.test"), Some(1.0), "{m}");
    let expiry = common::sample(
        &m,
        "berth_certificate_expiry_timestamp_seconds{domain=\"pa.apps.test\"",
    )
    .unwrap();
    assert!(expiry > first as f64, "{m}");
}
