//! Health probed by berth itself, not by `docker exec`: each running tenant's web service by an
//! HTTP GET of its health path at its published address, its sidecar database by the engine's
//! own handshake on the tenant network. Results feed everything that reads health (plan's
//! dependency gating, the status board, `/metrics`); a change of health kicks a pass.
//!
//! Scheduling: a target is probed at the fast interval while it starts, is suspect (a failure
//! after being healthy) or its tenant is being changed, at the slow interval (jittered) once
//! healthy, and every few fast intervals while unhealthy. At most `concurrency` probes run at
//! once across all tenants.

pub mod db;
pub mod http;
mod table;
pub mod targets;

pub use crate::desired::probes::ProbeConfig;
pub use table::{ProbeStatus, Prober};

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Why a probe found its target not healthy; `berth status` shows it as written here.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("connect {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the server closed the connection")]
    Closed,
    #[error("{0}")]
    Io(std::io::Error),
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("{0}")]
    Request(#[from] hyper::http::Error),
    #[error("status {0}")]
    Status(u16),
    /// The peer does not speak the protocol as the engine does.
    #[error("{0}")]
    Protocol(String),
    #[error("PostgreSQL {code}: {message}")]
    Postgres { code: String, message: String },
    #[error("MariaDB error {code}: {message}")]
    Mariadb { code: u16, message: String },
    #[error("{0}")]
    Engine(#[from] crate::runtime::RuntimeError),
    #[error("exit {code}: {output}")]
    Exit { code: i64, output: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("injected probe failure")]
    Injected,
}

impl ProbeError {
    /// A read or write error, with an early end said plainly.
    pub fn io(e: std::io::Error) -> ProbeError {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => ProbeError::Closed,
            _ => ProbeError::Io(e),
        }
    }
}

/// What one probe does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Check {
    /// GET `path` with `Host: host`; any 2xx passes.
    Http {
        addr: SocketAddr,
        path: String,
        host: String,
    },
    /// A PostgreSQL startup that reaches authentication.
    Postgres {
        addr: SocketAddr,
        user: String,
        database: String,
    },
    /// A MariaDB/MySQL greeting and login as the tenant's user.
    Mariadb {
        addr: SocketAddr,
        user: String,
        password_file: PathBuf,
    },
    /// A command run in the container through its engine, exit 0 passing: for a database on a
    /// swarm node, whose overlay address the agent cannot reach.
    Exec { cmd: Vec<String> },
}

impl Check {
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Http { .. } => "http",
            Check::Postgres { .. } => "postgres",
            Check::Mariadb { .. } => "mariadb",
            Check::Exec { .. } => "exec",
        }
    }
}

/// One thing berth probes: a tenant's container and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub container: String,
    pub tenant: String,
    pub service: String,
    pub check: Check,
    /// The tenant is being changed (upgrade, restore): probe at the fast interval.
    pub fast: bool,
}

/// The boundary to the network: the real checker, or a fake in unit tests.
#[async_trait::async_trait]
pub trait Checker: Send + Sync + 'static {
    /// Ok when the target answers healthy; else why not. The caller bounds time.
    async fn check(&self, t: &Target) -> Result<(), ProbeError>;
}

/// Probes over the network (the agent's checker), and exec checks through the runtime.
pub struct NetChecker {
    rt: std::sync::Arc<dyn crate::runtime::Runtime>,
}

impl NetChecker {
    pub fn new(rt: std::sync::Arc<dyn crate::runtime::Runtime>) -> NetChecker {
        NetChecker { rt }
    }
}

/// An exec check's time limit (the prober bounds the whole check too).
const EXEC_LIMIT: Duration = Duration::from_secs(5);

#[async_trait::async_trait]
impl Checker for NetChecker {
    async fn check(&self, t: &Target) -> Result<(), ProbeError> {
        match &t.check {
            Check::Http { addr, path, host } => http::check(*addr, path, host).await,
            Check::Postgres {
                addr,
                user,
                database,
            } => db::postgres(*addr, user, database).await,
            Check::Mariadb {
                addr,
                user,
                password_file,
            } => {
                // As the official images read `*_FILE`: trailing newlines are not part of it.
                let pw = tokio::fs::read(password_file).await.unwrap_or_default();
                let end = pw.iter().rposition(|b| *b != b'\n').map_or(0, |i| i + 1);
                db::mariadb(*addr, user, &pw[..end]).await
            }
            Check::Exec { cmd } => {
                let argv: Vec<&str> = cmd.iter().map(String::as_str).collect();
                let out = self.rt.exec_timed(&t.container, &argv, EXEC_LIMIT).await;
                match out? {
                    o if o.exit_code == 0 => Ok(()),
                    o => Err(ProbeError::Exit {
                        code: o.exit_code,
                        output: o.output.trim().to_string(),
                    }),
                }
            }
        }
    }
}

/// Unit tests' checker: every target answers, except containers told to fail.
#[derive(Default)]
pub struct FakeChecker {
    failing: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl FakeChecker {
    pub fn fail(&self, container: &str, failing: bool) {
        let mut f = self.failing.lock().expect("fake checker lock");
        if failing {
            f.insert(container.into());
        } else {
            f.remove(container);
        }
    }
}

#[async_trait::async_trait]
impl Checker for FakeChecker {
    async fn check(&self, t: &Target) -> Result<(), ProbeError> {
        match self
            .failing
            .lock()
            .expect("fake checker lock")
            .contains(&t.container)
        {
            true => Err(ProbeError::Injected),
            false => Ok(()),
        }
    }
}
