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
            .header("host", "berth");
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
        let value: serde_json::Value = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null)
        };
        if !status.is_success() {
            let msg = value["error"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).to_string());
            bail!("{msg}");
        }
        Ok(value)
    }

    /// Streams a response body to stdout as it arrives (logs -f).
    pub async fn stream(&self, path: &str) -> Result<()> {
        use std::io::Write;
        let mut resp = self.send(Method::GET, path, None).await?;
        if resp.status() != StatusCode::OK {
            let bytes = resp.into_body().collect().await?.to_bytes();
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            bail!("{}", v["error"].as_str().unwrap_or("request failed"));
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
