//! New connections to one target are opened a few at a time (`OPENING`): requests released
//! together must not overflow a small app's listen queue, whose dropped SYNs the kernel would
//! send again only after a second.

use super::*;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An app that answers one request per connection and closes it (as busybox httpd does),
/// listening with a queue of `backlog` and accepting one connection every `gap`.
async fn slow_acceptor(backlog: u32, gap: Duration) -> SocketAddr {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let l = sock.listen(backlog).unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = s.write_all(head.as_bytes()).await;
            });
            tokio::time::sleep(gap).await;
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_released_together_do_not_overflow_a_small_listen_queue() {
    let addr = slow_acceptor(9, Duration::from_millis(5)).await;
    let pool = Pool::new(addr, Duration::from_secs(5));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let pool = pool.clone();
        tasks.spawn(async move {
            let t = Instant::now();
            let req = Request::get(format!("http://{addr}/"))
                .body(super::super::body::empty())
                .unwrap();
            let (resp, lease) = pool.send(req).await.unwrap();
            let body = Leased::new(resp.into_body(), lease).collect().await;
            assert_eq!(body.unwrap().to_bytes(), "ok");
            t.elapsed()
        });
    }
    let mut slowest = Duration::ZERO;
    while let Some(d) = tasks.join_next().await {
        slowest = slowest.max(d.unwrap());
    }
    assert!(
        slowest < Duration::from_millis(900),
        "a request took {slowest:?}: its SYN was dropped and sent again"
    );
}
