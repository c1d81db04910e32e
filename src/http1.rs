//! One HTTP/1.1 request on a connection of its own, for berth's own clients: the prober, a
//! domain's HTTP proof, the CLI and tests. The connection is driven beside the request and
//! closes once the answer's body is dropped or read. The edge's pooled upstream connections
//! are the proxy's (`proxy::upstream`).

use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// Sends `req` on `io` (a TCP, TLS or Unix stream) and answers with the response head; the
/// body streams from the connection until it is read or dropped.
pub async fn send<I, B>(io: I, req: Request<B>) -> Result<Response<Incoming>, hyper::Error>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Its error, if any, is the request's too: the caller sees it there.
        let _ = conn.await;
    });
    sender.send_request(req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn an_answer_arrives_with_its_body_and_a_silent_close_is_an_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            // First connection: a whole answer. Second: closed without one.
            let (mut s, _) = l.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            let (mut s, _) = l.accept().await.unwrap();
            let _ = s.read(&mut buf).await.unwrap();
        });
        let req = || {
            Request::get("/")
                .header("host", "x")
                .body(Empty::<Bytes>::new())
                .unwrap()
        };
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let resp = send(tcp, req()).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"ok");
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(send(tcp, req()).await.is_err());
    }
}
