//! HTTP client of the management API over the Unix socket or TCP (with a bearer token).

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use std::{path::PathBuf, sync::Arc};

#[derive(Debug, Clone)]
pub enum Target {
    Unix(PathBuf),
    Tcp {
        addr: String,
        token: String,
        /// `https://…`: the server name to verify and the roots to trust.
        tls: Option<Tls>,
    },
}

#[derive(Debug, Clone)]
pub struct Tls {
    pub name: rustls::pki_types::ServerName<'static>,
    pub config: Arc<rustls::ClientConfig>,
}

/// Where `--api` points: `https://HOST:PORT` (TLS), or `HOST:PORT` / `http://HOST:PORT` in
/// plain text, which the CLI uses on loopback only: it will not send a token across a network
/// unencrypted. Returns the address to connect to and, for https, the name to verify.
pub fn parse_api(api: &str) -> Result<(String, Option<String>)> {
    let with_scheme = if api.contains("://") {
        api.to_string()
    } else {
        format!("http://{api}")
    };
    let u = url::Url::parse(&with_scheme)
        .with_context(|| format!("--api {api:?} is not HOST:PORT or https://HOST:PORT"))?;
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_string(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => bail!("--api {api:?} names no host"),
    };
    if u.path() != "/" || u.query().is_some() || !u.username().is_empty() {
        bail!("--api {api:?}: give only the scheme, host and port");
    }
    let port = u.port_or_known_default().context("--api needs a port")?;
    let addr = match u.host() {
        Some(url::Host::Ipv6(_)) => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    };
    match u.scheme() {
        "https" => Ok((addr, Some(host))),
        "http" => {
            let loopback = host == "localhost"
                || host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                bail!(
                    "--api {api:?}: a token goes in plain text only to loopback; use https://{addr}"
                );
            }
            Ok((addr, None))
        }
        other => bail!("--api {api:?}: scheme {other:?} is not http or https"),
    }
}

/// The TLS settings for `name`: the roots of `ca_file` (berth's CA, say), else the system's.
pub fn tls(name: &str, ca_file: Option<&std::path::Path>) -> Result<Tls> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(f) => {
            let pem =
                std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
            for c in crate::certs::pem::certs(&pem).with_context(|| f.display().to_string())? {
                roots.add(c).with_context(|| f.display().to_string())?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from(name.to_string())
        .with_context(|| format!("{name:?} is not a server name"))?;
    Ok(Tls {
        name,
        config: Arc::new(config),
    })
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
    /// A client of the API at `api` (`https://HOST:PORT`, or plain on loopback) with the
    /// token in `token_file`, trusting `ca_file` (else the system's roots) for https.
    pub fn tcp(
        api: &str,
        token_file: &std::path::Path,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client> {
        let token = crate::store::private::read(token_file)
            .with_context(|| token_file.display().to_string())?
            .trim()
            .to_string();
        let (addr, name) = parse_api(api)?;
        let tls = name.map(|n| tls(&n, ca_file)).transpose()?;
        Ok(Client {
            target: Target::Tcp { addr, token, tls },
        })
    }

    /// A GET's body as text (a PEM, say); a 4xx/5xx becomes an error with the agent's message.
    pub async fn text(&self, path: &str) -> Result<String> {
        let resp = self.send(Method::GET, path, None).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("{}", error_message(status, &bytes));
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

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
        match &self.target {
            Target::Unix(p) => {
                let s = tokio::net::UnixStream::connect(p).await.with_context(|| {
                    format!(
                        "cannot reach the berth agent at {} (is `berth serve` running?)",
                        p.display()
                    )
                })?;
                Ok(crate::http1::send(s, req).await?)
            }
            Target::Tcp { addr, tls, .. } => {
                let s = tokio::net::TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("cannot reach the berth agent at {addr}"))?;
                let Some(tls) = tls else {
                    return Ok(crate::http1::send(s, req).await?);
                };
                let s = tokio_rustls::TlsConnector::from(tls.config.clone())
                    .connect(tls.name.clone(), s)
                    .await
                    .with_context(|| {
                        format!("TLS with the berth agent at {addr} (trust its CA with --ca-file)")
                    })?;
                Ok(crate::http1::send(s, req).await?)
            }
        }
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

    #[test]
    fn a_token_goes_in_plain_text_to_loopback_only() {
        assert_eq!(
            parse_api("127.0.0.1:7070").unwrap(),
            ("127.0.0.1:7070".into(), None)
        );
        assert_eq!(parse_api("http://localhost:7070").unwrap().1, None);
        assert_eq!(parse_api("[::1]:7070").unwrap().0, "[::1]:7070");
        let (addr, name) = parse_api("https://berth.example.net:7443").unwrap();
        assert_eq!(
            (addr.as_str(), name.as_deref()),
            ("berth.example.net:7443", Some("berth.example.net"))
        );
        assert_eq!(parse_api("https://10.0.0.5").unwrap().0, "10.0.0.5:443");
        for bad in [
            "10.0.0.5:7070",
            "http://berth.example.net:7070",
            "ftp://127.0.0.1:21",
            "https://x:7443/v1?a=b",
            "https://user@x:7443",
            "",
            "https://",
        ] {
            assert!(parse_api(bad).is_err(), "{bad:?}");
        }
        let e = parse_api("10.0.0.5:7070").unwrap_err().to_string();
        assert!(e.contains("https://10.0.0.5:7070"), "{e}");
    }
}
