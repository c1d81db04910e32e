//! HTTP client of the management API over the Unix socket or TCP (with a bearer token).

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub enum Target {
    Unix(PathBuf),
    Tcp { addr: String, token: String },
}

/// An API path with every segment and query pair percent-encoded by `url`, never pasted in:
/// a tenant named `acme?purge=true` stays one segment and cannot add a query.
pub fn api_path(segments: &[&str], query: &[(&str, &str)]) -> String {
    let mut u = url::Url::parse("http://berth/").expect("a static URL parses");
    u.path_segments_mut()
        .expect("an http URL has path segments")
        .clear()
        .extend(segments);
    if !query.is_empty() {
        u.query_pairs_mut().extend_pairs(query);
    }
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_string(),
    }
}

/// The agent's message from an error body, or a sentence naming the status when it sent none.
fn error_message(status: StatusCode, bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    let msg = match value["error"].as_str() {
        Some(m) => m.to_string(),
        None => String::from_utf8_lossy(bytes).trim().to_string(),
    };
    if msg.is_empty() {
        format!("the agent answered {status} without a message")
    } else {
        msg
    }
}

pub struct Client {
    pub target: Target,
}

impl Client {
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "berth")
            .header("x-berth-source", "cli");
        if let Target::Tcp { token, .. } = &self.target {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header("content-type", "application/json");
                Full::new(Bytes::from(v.to_string()))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body)?;
        let (mut sender, conn) = match &self.target {
            Target::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await.with_context(|| {
                    format!(
                        "cannot reach the berth agent at {} (is `berth serve` running?)",
                        p.display()
                    )
                })?;
                hyper::client::conn::http1::handshake(TokioIo::new(s)).await?
            }
            Target::Tcp { addr, .. } => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("cannot reach the berth agent at {addr}"))?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(s)).await?;
                tokio::spawn(conn);
                return Ok(sender.send_request(req).await?);
            }
        };
        tokio::spawn(conn);
        Ok(sender.send_request(req).await?)
    }

    /// Sends a request and returns the JSON answer; a 4xx/5xx becomes an error with the
    /// agent's message.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{}", error_message(status, &bytes));
        }
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }

    /// Streams a response body to stdout as it arrives (logs -f).
    pub async fn stream(&self, path: &str) -> Result<()> {
        use std::io::Write;
        let mut resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        if status != StatusCode::OK {
            let bytes = resp.into_body().collect().await?.to_bytes();
            bail!("{}", error_message(status, &bytes));
        }
        let mut out = std::io::stdout().lock();
        while let Some(frame) = resp.body_mut().frame().await {
            if let Ok(data) = frame?.into_data() {
                out.write_all(&data)?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_encoded_not_pasted() {
        assert_eq!(
            api_path(
                &["v1", "instances", "chk5?purge=true&x="],
                &[("purge", "false")]
            ),
            "/v1/instances/chk5%3Fpurge=true&x=?purge=false"
        );
        assert_eq!(
            api_path(&["v1", "instances", "../acme"], &[]),
            "/v1/instances/..%2Facme"
        );
        assert_eq!(
            api_path(&["v1", "x"], &[("tail", "1&follow=true")]),
            "/v1/x?tail=1%26follow%3Dtrue"
        );
    }

    #[test]
    fn an_error_without_a_body_still_says_what_happened() {
        assert_eq!(
            error_message(StatusCode::NOT_FOUND, b""),
            "the agent answered 404 Not Found without a message"
        );
        assert_eq!(
            error_message(StatusCode::BAD_REQUEST, br#"{"error":"no"}"#),
            "no"
        );
    }
}
