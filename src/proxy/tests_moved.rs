//! A tenant moved to another berth host, through two real edges on loopback: the leaving
//! edge forwards its requests to the other one over TLS (verified with that host's CA), a
//! request that comes back is refused with 508, and ACME challenges the leaving edge cannot
//! answer are asked of the other host's HTTP listener.

use super::*;
use crate::proxy::target::Target;

/// A forwarding target to `to`'s HTTPS listener, trusting its CA (as `handover` makes one).
fn forwarding(to: &Edge) -> Arc<Target> {
    let mut roots = rustls::RootCertStore::empty();
    for c in crate::certs::pem::certs(&to.ca_pem).unwrap() {
        roots.add(c).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Target::forwarding(to.https, Duration::from_secs(2), Arc::new(config))
}

#[tokio::test]
async fn a_moved_tenant_is_served_by_the_other_edge_and_a_loop_ends_in_508() {
    let (on_a, on_b) = (backend("acme-on-a").await, backend("acme-on-b").await);
    let a = edge(vec![tenant("acme", on_a.addr, &["acme.test"])]).await;
    let b = edge(vec![tenant("acme", on_b.addr, &["acme.test"])]).await;
    a.proxy.forward("acme", forwarding(&b));
    let mut c = client(&a, "acme.test").await;
    let (s, body) = get(&mut c, "acme.test", "/x?y=1").await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("tenant=acme-on-b path=/x?y=1"), "{body}");
    // A pass of the reconciler keeps the forward (it reads the moved set).
    a.proxy.apply(&[tenant("acme", on_a.addr, &["acme.test"])]);
    let (_, body) = get(&mut c, "acme.test", "/").await;
    assert!(body.contains("tenant=acme-on-b"), "{body}");
    assert_eq!(
        on_a.hits.load(SeqCst),
        0,
        "nothing reached the copy left behind"
    );
    // An edge forwarding to itself: the request comes back once, and ends there.
    a.proxy.forward("acme", forwarding(&a));
    let (s, _) = get(&mut client(&a, "acme.test").await, "acme.test", "/").await;
    assert_eq!(s, 508);
    a.proxy.unforward("acme");
    a.proxy.apply(&[tenant("acme", on_a.addr, &["acme.test"])]);
    let (_, body) = get(&mut client(&a, "acme.test").await, "acme.test", "/").await;
    assert!(body.contains("tenant=acme-on-a"), "unforwarded: {body}");
}

#[tokio::test]
async fn a_moved_tenants_acme_challenges_are_answered_by_its_other_host() {
    let (on_a, on_b) = (backend("acme-on-a").await, backend("acme-on-b").await);
    let routes = |x: SocketAddr| {
        vec![
            tenant("acme", x, &["acme.test"]),
            tenant("globex", x, &["globex.test"]),
        ]
    };
    let a = edge(routes(on_a.addr)).await;
    let b = edge(routes(on_b.addr)).await;
    b.proxy.http01.insert("tokb", "tokb.thumb");
    a.proxy.http01.insert("toka", "toka.thumb");
    a.proxy.forward("acme", forwarding(&b));
    let b_http = Target::new(b.http, Duration::from_secs(2));
    a.proxy.forward_challenges("acme", b_http);
    let a_http = a.http;
    let ask = |host: &'static str, token: &'static str| async move {
        let tcp = tokio::net::TcpStream::connect(a_http).await.unwrap();
        let req = format!(
            "GET /.well-known/acme-challenge/{token} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        );
        raw(tcp, req.as_bytes()).await
    };
    let r = ask("acme.test", "tokb").await;
    assert!(
        r.starts_with("HTTP/1.1 200") && r.ends_with("tokb.thumb"),
        "{r}"
    );
    let r = ask("acme.test", "toka").await;
    assert!(r.ends_with("toka.thumb"), "its own answers first: {r}");
    let r = ask("acme.test", "nope").await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = ask("globex.test", "tokb").await;
    assert!(
        r.starts_with("HTTP/1.1 404"),
        "a tenant not moved is not relayed: {r}"
    );
}
