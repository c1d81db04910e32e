//! The proxy against real sockets on loopback: a TLS client, plain backends, and curl.

use super::{Proxy, TenantRoutes};
use crate::{
    certs::{
        CertManager, ca::InternalCa, http01::Http01Tokens, issuer::SystemClock, manager::Budgets,
        store::CertStore,
    },
    desired::edge::{ProxyConfig, ProxyTimeouts},
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Incoming, service::service_fn};
use hyper_util::rt::TokioIo;
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering::SeqCst},
    },
    time::Duration,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Backend {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    paths: Arc<std::sync::Mutex<Vec<String>>>,
}

/// An app that reports what it received; `/ws` echoes after an upgrade, `/slow` takes 300 ms.
async fn backend(name: &'static str) -> Backend {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let paths = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (h, p) = (hits.clone(), paths.clone());
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let (h, p) = (h.clone(), p.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |mut req: Request<Incoming>| {
                    h.fetch_add(1, SeqCst);
                    p.lock().unwrap().push(req.uri().path().to_string());
                    async move {
                        if req.uri().path() == "/ws" {
                            let up = hyper::upgrade::on(&mut req);
                            tokio::spawn(async move {
                                if let Ok(u) = up.await {
                                    let (mut r, mut w) = tokio::io::split(TokioIo::new(u));
                                    let _ = tokio::io::copy(&mut r, &mut w).await;
                                }
                            });
                            let r = Response::builder()
                                .status(101)
                                .header("connection", "upgrade")
                                .header("upgrade", "websocket")
                                .body(Full::new(Bytes::new()))
                                .unwrap();
                            return Ok::<_, hyper::Error>(r);
                        }
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let hv = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let text = format!(
                            "tenant={name} path={} xff={} xfp={} xfh={} prefix={} cookie={}",
                            req.uri().path_and_query().map_or("", |p| p.as_str()),
                            hv("x-forwarded-for"),
                            hv("x-forwarded-proto"),
                            hv("x-forwarded-host"),
                            hv("x-forwarded-prefix"),
                            hv("cookie"),
                        );
                        let login = req.uri().path() == "/login";
                        let _ = req.into_body().collect().await;
                        let mut resp = Response::new(Full::new(Bytes::from(text)));
                        if login {
                            // As an app that thinks it owns the site: Path=/, the domain.
                            let c =
                                format!("{name}_sid=s3cret; Path=/; Domain=shared.test; HttpOnly");
                            resp.headers_mut().insert("set-cookie", c.parse().unwrap());
                        }
                        Ok(resp)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Backend { addr, hits, paths }
}

struct Edge {
    proxy: Arc<Proxy>,
    http: SocketAddr,
    https: SocketAddr,
    ca_pem: String,
    ca_file: std::path::PathBuf,
    _stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

fn config() -> ProxyConfig {
    ProxyConfig {
        http: "127.0.0.1:0".parse().unwrap(),
        https: "127.0.0.1:0".parse().unwrap(),
        redirect_port: 8443,
        shared_domains: vec!["shared.test".into()],
        trusted_proxies: vec![],
        timeouts: ProxyTimeouts {
            header_read: Duration::from_secs(1),
            drain: Duration::from_secs(5),
            max_pause: Duration::from_millis(500),
            ..ProxyTimeouts::default()
        },
        max_header_bytes: 64 * 1024,
        max_body: 1024 * 1024,
        access_log: false,
        max_wakes: 4,
        client_wakes_per_minute: 10,
        wake_gap: Duration::ZERO,
    }
}

async fn edge(routes: Vec<TenantRoutes>) -> Edge {
    let dir = tempfile::tempdir().unwrap();
    let ca = InternalCa::load_or_create(&dir.path().join("ca")).unwrap();
    let ca_pem = ca.cert_pem.clone();
    let budgets = Budgets::of(None);
    let certs = CertManager::new(
        CertStore::new(dir.path().join("certs")),
        ca,
        None,
        Arc::new(SystemClock),
        budgets,
    );
    let mut domains = BTreeMap::new();
    for r in &routes {
        for h in r.hosts.iter().chain(&r.aliases) {
            domains.insert(h.clone(), r.tenant.clone());
        }
        for (h, _, _) in &r.mounts {
            domains.insert(h.clone(), "_shared".into());
        }
    }
    certs.set_domains(domains);
    let proxy = Proxy::new(config(), certs.table(), Arc::new(Http01Tokens::default()));
    proxy.apply(&routes);
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (h, s) = (http.local_addr().unwrap(), https.local_addr().unwrap());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let set = proxy.clone().serve_listeners(http, https, rx);
    std::mem::forget(set);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &ca_pem).unwrap();
    Edge {
        proxy,
        http: h,
        https: s,
        ca_pem,
        ca_file,
        _stop: stop,
        _dir: dir,
    }
}

fn tenant(name: &str, target: SocketAddr, hosts: &[&str]) -> TenantRoutes {
    TenantRoutes {
        tenant: name.into(),
        target: Some(target),
        maintenance: false,
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        aliases: vec![],
        mounts: vec![],
        pinned: false,
        quota: Default::default(),
    }
}

fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
}

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn tls(e: &Edge, sni: &str) -> TlsStream {
    let tcp = tokio::net::TcpStream::connect(e.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from(sni.to_string()).unwrap();
    tls_client(&e.ca_pem, &[b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap()
}

/// A keep-alive HTTPS/1.1 connection.
async fn client(e: &Edge, sni: &str) -> hyper::client::conn::http1::SendRequest<Full<Bytes>> {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls(e, sni).await))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn get(
    c: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: &str,
    path: &str,
) -> (u16, String) {
    c.ready().await.unwrap();
    let req = Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = c.send_request(req).await.unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into())
}

/// Writes raw bytes and returns what came back before close or 2 s.
async fn raw<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: S,
    bytes: &[u8],
) -> String {
    raw_closed(s, bytes).await.0
}

/// Also says whether the proxy closed the connection (rather than the 2 s wait ending).
async fn raw_closed<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    bytes: &[u8],
) -> (String, bool) {
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), s.read_to_end(&mut out))
        .await
        .is_ok();
    (String::from_utf8_lossy(&out).into(), closed)
}

#[tokio::test]
async fn tenants_are_reached_on_their_domains_and_never_on_each_others() {
    let (a, b) = (backend("acme").await, backend("globex").await);
    let e = edge(vec![
        tenant("acme", a.addr, &["acme.test"]),
        tenant("globex", b.addr, &["globex.test"]),
    ])
    .await;
    let mut c = client(&e, "acme.test").await;
    let (s, body) = get(&mut c, "acme.test", "/hello?x=1").await;
    assert_eq!(s, 200);
    assert!(
        body.starts_with("tenant=acme path=/hello?x=1 xff=127.0.0.1 xfp=https xfh=acme.test"),
        "{body}"
    );
    let (s, _) = get(&mut c, "globex.test", "/").await;
    assert_eq!(s, 421, "a connection for acme's name cannot reach globex");
    let mut c = client(&e, "globex.test").await;
    assert!(
        get(&mut c, "globex.test", "/")
            .await
            .1
            .starts_with("tenant=globex")
    );
}

#[tokio::test]
async fn unknown_names_get_no_certificate_and_unknown_hosts_on_port_80_a_plain_404() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let tcp = tokio::net::TcpStream::connect(e.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("nobody.test").unwrap();
    assert!(tls_client(&e.ca_pem, &[]).connect(name, tcp).await.is_err());
    let tcp = tokio::net::TcpStream::connect(e.http).await.unwrap();
    let r = raw(
        tcp,
        b"GET / HTTP/1.1\r\nHost: nobody.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    assert!(!r.contains("acme"));
}

#[tokio::test]
async fn plain_http_redirects_known_hosts_with_308_and_answers_acme_challenges_first() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    e.proxy.http01.insert("tok123", "tok123.thumb");
    let tcp = tokio::net::TcpStream::connect(e.http).await.unwrap();
    let r = raw(
        tcp,
        b"POST /form?a=1 HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 308"), "{r}");
    assert!(
        r.to_ascii_lowercase()
            .contains("location: https://acme.test:8443/form?a=1"),
        "{r}"
    );
    let tcp = tokio::net::TcpStream::connect(e.http).await.unwrap();
    let r = raw(tcp, b"GET /.well-known/acme-challenge/tok123 HTTP/1.1\r\nHost: acme.test\r\nConnection: close\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("tok123.thumb"),
        "{r}"
    );
}

#[tokio::test]
async fn aliases_redirect_and_path_mounts_strip_their_prefix() {
    let (a, b) = (backend("acme").await, backend("globex").await);
    let mut acme = tenant("acme", a.addr, &["acme.test"]);
    acme.aliases = vec!["www.acme.test".into()];
    let mut globex = tenant("globex", b.addr, &[]);
    globex.mounts = vec![("shared.test".into(), "globex".into(), true)];
    let e = edge(vec![acme, globex]).await;
    let mut c = client(&e, "www.acme.test").await;
    c.ready().await.unwrap();
    let r = c
        .send_request(
            Request::get("/x")
                .header("host", "www.acme.test")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(r.headers()["location"], "https://acme.test:8443/x");
    let mut c = client(&e, "shared.test").await;
    let (s, body) = get(&mut c, "shared.test", "/globex/page?q=1").await;
    assert_eq!(s, 200);
    assert!(
        body.contains("path=/page?q=1") && body.contains("prefix=/globex"),
        "{body}"
    );
    assert_eq!(get(&mut c, "shared.test", "/other/").await.0, 404);
}

#[tokio::test]
async fn stopped_tenants_get_the_maintenance_page_and_dead_upstreams_a_502() {
    let e = edge(vec![
        TenantRoutes {
            maintenance: true,
            ..tenant("acme", "127.0.0.1:1".parse().unwrap(), &["acme.test"])
        },
        tenant("globex", "127.0.0.1:1".parse().unwrap(), &["globex.test"]),
    ])
    .await;
    let (s, body) = get(&mut client(&e, "acme.test").await, "acme.test", "/").await;
    assert_eq!(s, 503);
    assert!(body.contains("maintenance"));
    let (s, body) = get(&mut client(&e, "globex.test").await, "globex.test", "/").await;
    assert_eq!(s, 502);
    assert!(
        !body.contains("127.0.0.1") && !body.contains("refused"),
        "{body}"
    );
}

#[tokio::test]
async fn spoofed_forwarding_headers_are_overwritten() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let s = tls(&e, "acme.test").await;
    let r = raw(s, b"GET / HTTP/1.1\r\nHost: acme.test\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: evil.test\r\nConnection: close\r\n\r\n").await;
    assert!(r.contains("xff=127.0.0.1 xfp=https xfh=acme.test"), "{r}");
}

#[tokio::test]
async fn smuggling_attempts_are_refused_and_never_reach_the_app() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    // Identical repeated Content-Lengths are not in the corpus: every parser reads them as one
    // value (RFC 9110 §8.6), so there is nothing to desynchronise.
    // Bare LF line ends in a head are not either: RFC 9112 §2.2 lets a recipient accept them,
    // hyper does, and the head is re-serialised with CRLF upstream, so no two parsers differ.
    let corpus: [&[u8]; 7] = [
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nG",
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: acme.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
    ];
    // Each attack is followed by a request a desynchronised parser would see as the next one.
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: acme.test\r\n\r\n";
    for req in corpus {
        let shown = String::from_utf8_lossy(req);
        let (r, closed) =
            raw_closed(tls(&e, "acme.test").await, &[req, &smuggled[..]].concat()).await;
        // RFC 9112 §6.3: with both headers, Transfer-Encoding wins and the connection closes;
        // hyper does exactly that, so such a request is forwarded re-framed, never as sent.
        let refused = r.is_empty() || r.starts_with("HTTP/1.1 400");
        let answered_once_then_closed = r.matches("HTTP/1.1 ").count() == 1 && closed;
        assert!(refused || answered_once_then_closed, "{shown:?} got {r:?}");
        assert!(
            !a.paths.lock().unwrap().iter().any(|p| p == "/smuggled"),
            "{shown:?} smuggled a request"
        );
        println!("{shown:?} -> {}", r.lines().next().unwrap_or("closed"));
    }
}

#[tokio::test]
async fn a_client_that_sends_headers_too_slowly_is_cut_off_at_the_timeout() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let mut s = tls(&e, "acme.test").await;
    s.write_all(b"GET / HTTP/1.1\r\nHost: acme.test\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(r.is_ok(), "connection still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn websockets_are_tunnelled_and_h2_is_offered_by_alpn() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let mut s = tls(&e, "acme.test").await;
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: acme.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s.write_all(b"ping-frame").await.unwrap();
    let mut echo = [0u8; 10];
    s.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"ping-frame");

    let tcp = tokio::net::TcpStream::connect(e.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("acme.test").unwrap();
    let t = tls_client(&e.ca_pem, &[b"h2", b"http/1.1"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(t.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(t),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let r = send
        .send_request(
            Request::get("https://acme.test/h2")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).starts_with("tenant=acme path=/h2"));
}

#[tokio::test]
async fn curl_reaches_a_tenant_over_https_and_http2() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--http2", "-w", " %{http_version}", "--cacert"])
        .arg(&e.ca_file)
        .args([
            "--resolve",
            &format!("acme.test:{}:127.0.0.1", e.https.port()),
            &format!("https://acme.test:{}/c", e.https.port()),
        ])
        .output()
        .await
        .expect("curl is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("tenant=acme path=/c") && text.ends_with(" 2"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_switch_under_continuous_load_fails_no_request_and_drains_the_old_target() {
    let (blue, green) = (backend("blue").await, backend("green").await);
    let e = edge(vec![tenant("acme", blue.addr, &["acme.test"])]).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, mut c) = (stop.clone(), client(&e, "acme.test").await);
        load.push(tokio::spawn(async move {
            let (mut ok, mut failed, mut green) = (0, 0, 0);
            while !stop.load(SeqCst) {
                let path = if ok % 5 == 0 { "/slow" } else { "/" };
                match get(&mut c, "acme.test", path).await {
                    (200, b) => {
                        ok += 1;
                        green += usize::from(b.starts_with("tenant=green"));
                    }
                    _ => failed += 1,
                }
            }
            (ok, failed, green)
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gate = e.proxy.gate("acme").unwrap();
    let new = super::target::Target::new(green.addr, Duration::from_secs(1));
    super::health::wait_healthy(&new, "/", "acme.test", 3, Duration::from_secs(5))
        .await
        .unwrap();
    let report = gate.switch(new, Duration::from_secs(5)).await;
    assert_eq!(report.cancelled, 0);
    let blue_hits = blue.hits.load(SeqCst);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, SeqCst);
    let mut total = (0, 0, 0);
    for l in load {
        let (ok, failed, green) = l.await.unwrap();
        total = (total.0 + ok, total.1 + failed, total.2 + green);
    }
    assert_eq!(total.1, 0, "failed requests during the switch");
    assert!(total.2 > 0, "green served after the switch");
    assert_eq!(
        blue.hits.load(SeqCst),
        blue_hits,
        "blue got nothing after its drain"
    );
}

#[tokio::test]
async fn a_paused_tenant_holds_requests_and_serves_them_on_resume() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let gate = e.proxy.gate("acme").unwrap();
    gate.pause();
    let mut c = client(&e, "acme.test").await;
    let held = tokio::spawn(async move { get(&mut c, "acme.test", "/").await.0 });
    tokio::time::sleep(Duration::from_millis(200)).await;
    gate.resume();
    assert_eq!(held.await.unwrap(), 200);
    gate.pause();
    let (s, _) = get(&mut client(&e, "acme.test").await, "acme.test", "/").await;
    assert_eq!(
        s, 503,
        "past the maximum pause the maintenance page is shown"
    );
}

#[tokio::test]
async fn an_app_answering_garbage_is_a_502_not_blamed_on_the_client() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"HTTP/1.1 two hundred\r\n\r\n").await;
        }
    });
    let e = edge(vec![tenant("acme", addr, &["acme.test"])]).await;
    let (s, _) = get(&mut client(&e, "acme.test").await, "acme.test", "/").await;
    assert_eq!(s, 502);
}

#[tokio::test]
async fn a_pinned_tenant_keeps_the_target_its_upgrade_switched_to_until_released() {
    let (blue, green) = (backend("blue").await, backend("green").await);
    let e = edge(vec![tenant("acme", blue.addr, &["acme.test"])]).await;
    let gate = e.proxy.gate("acme").unwrap();
    let new = super::target::Target::new(green.addr, Duration::from_secs(1));
    gate.switch(new, Duration::from_secs(1)).await;
    let pinned = TenantRoutes {
        pinned: true,
        maintenance: true,
        ..tenant("acme", blue.addr, &["acme.test"])
    };
    e.proxy.apply(&[pinned]);
    assert_eq!(gate.current().unwrap().addr, green.addr);
    assert!(!gate.in_maintenance());
    e.proxy.apply(&[tenant("acme", blue.addr, &["acme.test"])]);
    assert_eq!(
        gate.current().unwrap().addr,
        blue.addr,
        "files win once released"
    );
}

#[path = "tests_timeouts.rs"]
mod timeouts;

#[path = "tests_cookies.rs"]
mod cookies;

#[path = "tests_moved.rs"]
mod moved;
