//! The time a connection may hold the edge before its first complete request head: from
//! accept (plain) or the end of the handshake (TLS), `header_read` (1 s in these tests).

use super::*;

/// Waits for the proxy to close `s`; how long that took, or None past 5 s.
async fn closed_after<S: tokio::io::AsyncRead + Unpin>(mut s: S) -> Option<Duration> {
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .ok()
        .map(|_| started.elapsed())
}

#[tokio::test]
async fn a_silent_plain_connection_is_closed_at_the_header_timeout() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let s = tokio::net::TcpStream::connect(e.http).await.unwrap();
    let t = closed_after(s).await.expect("held past 5 s");
    assert!(t < Duration::from_secs(3), "{t:?}");
}

#[tokio::test]
async fn a_silent_tls_connection_is_closed_at_the_header_timeout_after_its_handshake() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let s = tls(&e, "acme.test").await;
    let t = closed_after(s).await.expect("held past 5 s");
    assert!(t < Duration::from_secs(3), "{t:?}");
}

#[tokio::test]
async fn h2_headers_without_their_end_are_cut_off_at_the_header_timeout() {
    let a = backend("acme").await;
    let e = edge(vec![tenant("acme", a.addr, &["acme.test"])]).await;
    let tcp = tokio::net::TcpStream::connect(e.https).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("acme.test".to_string()).unwrap();
    let mut s = tls_client(&e.ca_pem, &[b"h2"])
        .connect(name, tcp)
        .await
        .unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let mut bytes = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bytes.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]); // SETTINGS, empty
    // HEADERS on stream 1 with END_STREAM but not END_HEADERS: `:method: GET`, then silence.
    bytes.extend_from_slice(&[0, 0, 1, 1, 0x1, 0, 0, 0, 1, 0x82]);
    s.write_all(&bytes).await.unwrap();
    let t = closed_after(s).await.expect("held past 5 s");
    assert!(t < Duration::from_secs(3), "{t:?}");
}
