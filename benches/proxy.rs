//! The edge proxy alone, for scripts/bench-proxy.sh: routes `bench.test` (plus 999 more tenant
//! domains, each with its own certificate) to BACKEND, on HTTPS_PORT (TLS) and PLAIN_PORT (the
//! same proxy path without TLS, to separate proxying cost from TLS cost). Writes the CA to
//! OUT_DIR/ca.pem and a bench.test cert/key for nginx and haproxy to use.

use berth::{
    certs::{
        CertManager, ca::InternalCa, http01::Http01Tokens, issuer::SystemClock, manager::Budgets,
        store::CertStore,
    },
    desired::edge::{ProxyConfig, ProxyTimeouts},
    proxy::{Proxy, TenantRoutes, conn},
};
use std::{collections::BTreeMap, sync::Arc, time::Duration};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--bench" || a == "--test")
        && std::env::var("BACKEND").is_err()
    {
        return; // `cargo bench` without the script: nothing to measure against.
    }
    let out = std::path::PathBuf::from(env("OUT_DIR", "/tmp/berth-bench"));
    let backend = env("BACKEND", "127.0.0.1:18080").parse().unwrap();
    let tenants: usize = env("TENANTS", "1000").parse().unwrap();
    let access_log = env("ACCESS_LOG", "0") == "1";
    // RATE=n: every tenant gets a token bucket of n req/s (bursts of n) and an in-flight
    // limit, set so high nothing is refused: the limiter's own cost.
    let quota = match env("RATE", "0").parse::<u32>().unwrap() {
        0 => Default::default(),
        r => berth::desired::quota::EdgeQuota {
            rate: Some(r),
            burst: Some(r),
            connections: Some(100_000),
            max_body: None,
        },
    };
    std::fs::create_dir_all(&out).unwrap();
    if access_log {
        // One line per request written to a file, formatted as `berth serve` formats its log.
        let file = std::fs::File::create(out.join("access.log")).unwrap();
        tracing_subscriber::fmt()
            .with_writer(std::sync::Mutex::new(file))
            .init();
    }
    let ca = InternalCa::load_or_create(&out.join("ca")).unwrap();
    let (chain, key) = ca.issue("bench.test", Duration::from_secs(86400)).unwrap();
    std::fs::write(out.join("bench.pem"), &chain).unwrap();
    std::fs::write(out.join("bench.key"), &key).unwrap();
    std::fs::write(out.join("bench-combined.pem"), format!("{chain}{key}")).unwrap();
    std::fs::copy(out.join("ca/ca.pem"), out.join("ca.pem")).unwrap();
    let budgets = Budgets::of(None);
    let _ = std::fs::remove_dir_all(out.join("certs"));
    let certs = CertManager::new(
        CertStore::new(out.join("certs")),
        ca,
        None,
        Arc::new(SystemClock),
        budgets,
    );
    let mut routes = vec![];
    let mut domains = BTreeMap::new();
    for n in 0..tenants {
        let host = if n == 0 {
            "bench.test".to_string()
        } else {
            format!("t{n}.bench.test")
        };
        domains.insert(host.clone(), format!("t{n}"));
        routes.push(TenantRoutes {
            tenant: format!("t{n}"),
            target: Some(backend),
            maintenance: false,
            hosts: vec![host],
            aliases: vec![],
            mounts: vec![],
            pinned: false,
            quota,
        });
    }
    let started = std::time::Instant::now();
    certs.set_domains(domains);
    eprintln!(
        "loaded {} tenant certificates in {:?}",
        certs.table().len(),
        started.elapsed()
    );
    let cfg = ProxyConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        redirect_port: 443,
        shared_domains: vec![],
        trusted_proxies: vec![],
        timeouts: ProxyTimeouts::default(),
        max_header_bytes: 65536,
        max_body: 100 << 20,
        access_log,
        max_wakes: 4,
        client_wakes_per_minute: 10,
        wake_gap: std::time::Duration::ZERO,
    };
    let proxy = Proxy::new(cfg, certs.table(), Arc::new(Http01Tokens::default()));
    proxy.apply(&routes);
    let https = tokio::net::TcpListener::bind((
        "127.0.0.1",
        env("HTTPS_PORT", "18446").parse::<u16>().unwrap(),
    ))
    .await
    .unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain = tokio::net::TcpListener::bind((
        "127.0.0.1",
        env("PLAIN_PORT", "18083").parse::<u16>().unwrap(),
    ))
    .await
    .unwrap();
    let (_stop, rx) = tokio::sync::watch::channel(false);
    let _tasks = proxy.clone().serve_listeners(http, https, rx.clone());
    eprintln!("berth proxy ready");
    loop {
        let (s, peer) = plain.accept().await.unwrap();
        let _ = s.set_nodelay(true);
        let (p, rx) = (proxy.clone(), rx.clone());
        tokio::spawn(conn::serve(
            p,
            s,
            conn::ConnInfo::new(peer, true, Some("bench.test".into())),
            rx,
        ));
    }
}
