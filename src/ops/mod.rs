//! Long operations belong to the agent, not to the connection that asked for them. A backup,
//! a restore, a clone, a verify or a move runs as its own task: the request answers `202
//! Accepted` with the operation at once, `GET /v1/operations/{id}` follows it, and a client
//! that goes away changes nothing. Each operation is recorded in `<state>/operations.json`
//! (the newest `KEEP`, written atomically at its start and end) and audited exactly once, with
//! its outcome, when it ends — also when it panicked, and at the next start for one the agent
//! was stopped in. A tenant runs at most one operation at a time; a second is refused with the
//! running one's id.

use crate::audit::{Audit, Event};
use serde::{Deserialize, Serialize};
use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    sync::{Arc, Mutex},
};
use tokio::sync::watch;

/// How many finished operations are kept.
const KEEP: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OpState {
    Running,
    Succeeded,
    Failed,
}

/// One operation as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Operation {
    /// `op_` and 16 hex digits.
    pub id: String,
    /// What it does, named as its audit action (`backup.create`, `backup.restore`, …).
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// The tenant's identity when it started: tenant tokens see operations of their tenants'
    /// present identities only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub state: OpState,
    /// Unix milliseconds.
    pub started: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<u64>,
    /// What it made (a backup, a restore's or clone's report), once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The HTTP status the failure would have answered had the request waited (404, 409, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

/// Why an operation failed: a status and a message for the caller.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub message: String,
}

/// An operation as kept on disk: with the audit row its end completes.
#[derive(Clone, Serialize, Deserialize)]
struct Record {
    op: Operation,
    #[serde(default)]
    event: Option<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("{tenant} is busy with operation {id} ({kind}); wait for it (berth op {id})")]
    Busy {
        tenant: String,
        id: String,
        kind: String,
    },
}

pub struct Operations {
    path: PathBuf,
    audit: Arc<Audit>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    records: Vec<Record>,
    /// The end of each running operation, for those who wait in-process (the dashboard).
    done: BTreeMap<String, watch::Receiver<bool>>,
}

fn now_ms() -> u64 {
    crate::audit::now_ms()
}

impl Operations {
    /// The kept operations; those the agent was stopped in end now as failed ("interrupted"),
    /// each audited once.
    pub fn open(path: PathBuf, audit: Arc<Audit>) -> Arc<Operations> {
        let mut records: Vec<Record> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let mut interrupted = false;
        for r in records
            .iter_mut()
            .filter(|r| r.op.state == OpState::Running)
        {
            interrupted = true;
            let why = "interrupted: the agent stopped while it ran (a restore is finished from its journal at the agent's start)";
            finish(
                &mut r.op,
                Err(Failure {
                    status: 500,
                    message: why.into(),
                }),
            );
            if let Some(e) = r.event.take() {
                audit.record(&outcome(e, &r.op));
            }
        }
        let ops = Arc::new(Operations {
            path,
            audit,
            inner: Mutex::new(Inner {
                records,
                done: BTreeMap::new(),
            }),
        });
        if interrupted {
            ops.save(&ops.lock().records);
        }
        ops
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("operations lock")
    }

    fn save(&self, records: &[Record]) {
        let json = serde_json::to_vec(records).expect("operations serialize");
        if let Err(e) = crate::store::atomic::write(&self.path, &json, 0o600) {
            tracing::error!(path = %self.path.display(), error = %e, "cannot record operations");
        }
    }

    /// Starts `work` as operation `kind` on `tenant` and returns it (running). `event` is the
    /// audit row of the request, written with the outcome when the work ends.
    pub fn start<F>(
        self: &Arc<Self>,
        kind: &str,
        (tenant, tenant_id): (Option<&str>, Option<String>),
        event: Option<Event>,
        work: F,
    ) -> Result<Operation, OpsError>
    where
        F: Future<Output = Result<serde_json::Value, Failure>> + Send + 'static,
    {
        let op = Operation {
            id: new_id(),
            kind: kind.into(),
            tenant: tenant.map(String::from),
            tenant_id,
            state: OpState::Running,
            started: now_ms(),
            finished: None,
            result: None,
            error: None,
            status: None,
        };
        let (tx, rx) = watch::channel(false);
        {
            let mut inner = self.lock();
            if let Some(busy) = tenant.and_then(|t| {
                inner
                    .records
                    .iter()
                    .find(|r| r.op.state == OpState::Running && r.op.tenant.as_deref() == Some(t))
            }) {
                return Err(OpsError::Busy {
                    tenant: tenant.unwrap_or_default().into(),
                    id: busy.op.id.clone(),
                    kind: busy.op.kind.clone(),
                });
            }
            inner.records.push(Record {
                op: op.clone(),
                event,
            });
            inner.done.insert(op.id.clone(), rx);
            self.save(&inner.records);
        }
        let ops = self.clone();
        let id = op.id.clone();
        // The work is its own task, so a panic in it is an outcome, not a lost operation.
        let task = tokio::spawn(work);
        tokio::spawn(async move {
            let r = match task.await {
                Ok(r) => r,
                Err(e) => Err(Failure {
                    status: 500,
                    message: format!("the operation failed unexpectedly: {e}"),
                }),
            };
            ops.end(&id, r);
            let _ = tx.send(true);
        });
        Ok(op)
    }

    fn end(&self, id: &str, r: Result<serde_json::Value, Failure>) {
        let mut inner = self.lock();
        let Some(rec) = inner.records.iter_mut().find(|r| r.op.id == id) else {
            return;
        };
        finish(&mut rec.op, r);
        if let Some(e) = rec.event.take() {
            self.audit.record(&outcome(e, &rec.op));
        }
        inner.done.remove(id);
        let finished = inner
            .records
            .iter()
            .filter(|r| r.op.state != OpState::Running)
            .count();
        if finished > KEEP {
            let mut drop = finished - KEEP;
            inner.records.retain(|r| {
                let old = r.op.state != OpState::Running && drop > 0;
                drop -= usize::from(old);
                !old
            });
        }
        self.save(&inner.records);
    }

    pub fn get(&self, id: &str) -> Option<Operation> {
        let inner = self.lock();
        inner
            .records
            .iter()
            .find(|r| r.op.id == id)
            .map(|r| r.op.clone())
    }

    /// Waits for operation `id` to end and returns it (None: no such operation).
    pub async fn wait(&self, id: &str) -> Option<Operation> {
        let rx = self.lock().done.get(id).cloned();
        if let Some(mut rx) = rx {
            let _ = rx.wait_for(|done| *done).await;
        }
        self.get(id)
    }
}

/// Sets the outcome of `op`.
fn finish(op: &mut Operation, r: Result<serde_json::Value, Failure>) {
    op.finished = Some(now_ms());
    match r {
        Ok(v) => {
            op.state = OpState::Succeeded;
            op.result = Some(v);
        }
        Err(f) => {
            op.state = OpState::Failed;
            op.status = Some(f.status);
            op.error = Some(f.message);
        }
    }
}

/// The request's audit row with the operation's outcome.
fn outcome(mut e: Event, op: &Operation) -> Event {
    e.target = Some(match e.target.take() {
        Some(t) => format!("{t} operation={}", op.id),
        None => format!("operation={}", op.id),
    });
    e.result = match op.state {
        OpState::Succeeded => "ok",
        _ => "error",
    }
    .into();
    e.status = op.status.or(Some(200));
    e.error = op.error.clone();
    e
}

fn new_id() -> String {
    let mut b = [0u8; 8];
    let _ = getrandom::fill(&mut b);
    format!("op_{}", hex::encode(b))
}

#[cfg(test)]
mod tests;
