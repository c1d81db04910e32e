use super::*;
use crate::certs::pem;

fn names(n: &[&str]) -> ApiTls {
    ApiTls::Internal {
        names: n.iter().map(|s| s.to_string()).collect(),
    }
}

fn sans(k: &CertifiedKey) -> Vec<String> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(k.cert[0].as_ref()).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .map(|g| match g {
            GeneralName::DNSName(d) => d.to_string(),
            GeneralName::IPAddress(ip) => format!(
                "ip:{}",
                ip.iter()
                    .map(|b| b.to_string())
                    .collect::<Vec<_>>()
                    .join(".")
            ),
            other => format!("{other:?}"),
        })
        .collect()
}

#[test]
fn the_internal_ca_issues_the_listener_a_certificate_for_its_names_and_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let cert = ApiCert::new(&names(&["berth.example.net", "127.0.0.1"]), dir.path()).unwrap();
    let k = cert.get();
    assert_eq!(sans(&k), ["berth.example.net", "ip:127.0.0.1"]);
    assert_eq!(k.cert.len(), 2, "the leaf and berth's CA");
    // Reissued once a third of its life has passed.
    cert.current.lock().unwrap().made -= REISSUE_AFTER;
    assert_ne!(cert.get().cert[0], k.cert[0]);
}

#[test]
fn operator_files_are_reread_when_they_change_and_kept_when_the_new_ones_are_broken() {
    let dir = tempfile::tempdir().unwrap();
    let ca = InternalCa::load_or_create(&dir.path().join("ca")).unwrap();
    let (c, k) = (dir.path().join("api.pem"), dir.path().join("api.key"));
    let write = |name: &str| {
        let (chain, key) = ca.issue(name, LIFETIME).unwrap();
        std::fs::write(&c, chain).unwrap();
        std::fs::write(&k, key).unwrap();
    };
    write("a.example");
    let tls = ApiTls::Files {
        cert: c.clone(),
        key: k.clone(),
    };
    let cert = ApiCert::new(&tls, &dir.path().join("unused")).unwrap();
    assert_eq!(sans(&cert.get()), ["a.example"]);
    let age = |cert: &ApiCert| {
        let mut cur = cert.current.lock().unwrap();
        cur.checked -= RECHECK;
        cur.mtimes = None; // as if the files' times moved on
    };
    write("b.example");
    age(&cert);
    assert_eq!(sans(&cert.get()), ["b.example"]);
    std::fs::write(&k, "not a key").unwrap();
    age(&cert);
    assert_eq!(
        sans(&cert.get()),
        ["b.example"],
        "the working certificate stays"
    );
    let missing = ApiTls::Files {
        cert: dir.path().join("none.pem"),
        key: k,
    };
    let e = ApiCert::new(&missing, dir.path()).unwrap_err().to_string();
    assert!(e.contains("none.pem"), "{e}");
}

#[tokio::test]
async fn the_listener_serves_https_to_a_client_that_trusts_berths_ca_and_nothing_else() {
    use http_body_util::{BodyExt, Empty};
    let dir = tempfile::tempdir().unwrap();
    let cert = Arc::new(ApiCert::new(&names(&["localhost", "127.0.0.1"]), dir.path()).unwrap());
    let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = TlsListener::new(tcp, cert.server_config()).unwrap();
    let addr = axum::serve::Listener::local_addr(&listener).unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "over tls" }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A plain-text client gets no answer (and does not stall the listener).
    let mut plain = TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("over tls"));

    let ca_pem = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in pem::certs(&ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let sock = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector
        .connect(name, sock)
        .await
        .expect("berth's CA is trusted");
    let req = hyper::Request::get("/")
        .header("host", "localhost")
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let body = crate::http1::send(tls, req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    assert_eq!(body.to_bytes(), "over tls");

    // A client that does not trust berth's CA is refused at the handshake.
    let empty = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    let sock = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(empty))
        .connect(name, sock)
        .await;
    assert!(refused.is_err());
}
