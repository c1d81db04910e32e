use super::*;
use crate::audit::{Actor, Filter};
use std::time::Duration;

fn event(action: &str) -> Event {
    Event {
        time: now_ms(),
        request_id: Some("r1".into()),
        actor: Actor::system("test"),
        source: "cli".into(),
        tenant: Some("acme".into()),
        tenant_id: None,
        action: action.into(),
        target: None,
        result: "ok".into(),
        status: None,
        error: None,
        client: None,
        count: None,
        since: None,
    }
}

fn setup() -> (tempfile::TempDir, Arc<Audit>, Arc<Operations>) {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(Audit::open(&dir.path().join("audit")));
    let ops = Operations::open(dir.path().join("operations.json"), audit.clone());
    (dir, audit, ops)
}

fn rows(a: &Audit) -> Vec<Event> {
    a.query(&Filter::default())
}

#[tokio::test]
async fn an_operation_ends_and_is_audited_once_with_its_outcome() {
    let (_d, audit, ops) = setup();
    let op = ops
        .start(
            "backup.create",
            (Some("acme"), None),
            Some(event("backup.create")),
            async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(serde_json::json!({"id": "b1"}))
            },
        )
        .unwrap();
    assert_eq!(op.state, OpState::Running);
    assert!(rows(&audit).is_empty(), "audited at its end, not its start");
    let done = ops.wait(&op.id).await.unwrap();
    assert_eq!(done.state, OpState::Succeeded);
    assert_eq!(done.result.unwrap()["id"], "b1");
    let r = rows(&audit);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].result, "ok");
    assert!(r[0].target.as_deref().unwrap().contains(&op.id));
}

#[tokio::test]
async fn a_failed_or_panicking_operation_is_an_outcome_not_a_lost_one() {
    let (_d, audit, ops) = setup();
    let failed = ops
        .start(
            "backup.restore",
            (Some("acme"), None),
            Some(event("backup.restore")),
            async {
                Err(Failure {
                    status: 409,
                    message: "no".into(),
                })
            },
        )
        .unwrap();
    let f = ops.wait(&failed.id).await.unwrap();
    assert_eq!((f.state, f.status), (OpState::Failed, Some(409)));
    let panicked = ops
        .start(
            "backup.verify",
            (Some("acme"), None),
            Some(event("backup.verify")),
            async {
                if now_ms() > 0 {
                    panic!("boom");
                }
                Ok(serde_json::Value::Null)
            },
        )
        .unwrap();
    let p = ops.wait(&panicked.id).await.unwrap();
    assert_eq!(p.state, OpState::Failed);
    assert!(p.error.unwrap().contains("unexpectedly"));
    let r = rows(&audit);
    assert_eq!(r.len(), 2);
    assert!(r.iter().all(|e| e.result == "error"));
}

#[tokio::test]
async fn a_tenant_runs_one_operation_at_a_time() {
    let (_d, _audit, ops) = setup();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let first = ops
        .start("backup.create", (Some("acme"), None), None, async move {
            let _ = rx.await;
            Ok(serde_json::Value::Null)
        })
        .unwrap();
    let busy = ops
        .start("backup.create", (Some("acme"), None), None, async {
            Ok(serde_json::Value::Null)
        })
        .unwrap_err()
        .to_string();
    assert!(busy.contains(&first.id), "{busy}");
    ops.start("backup.create", (Some("globex"), None), None, async {
        Ok(serde_json::Value::Null)
    })
    .unwrap();
    tx.send(()).unwrap();
    ops.wait(&first.id).await;
    ops.start("backup.create", (Some("acme"), None), None, async {
        Ok(serde_json::Value::Null)
    })
    .unwrap();
}

#[tokio::test]
async fn an_operation_the_agent_stopped_in_ends_as_interrupted_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(Audit::open(&dir.path().join("audit")));
    let path = dir.path().join("operations.json");
    let id = {
        let ops = Operations::open(path.clone(), audit.clone());
        let op = ops
            .start(
                "backup.restore",
                (Some("acme"), None),
                Some(event("backup.restore")),
                async {
                    std::future::pending::<()>().await;
                    Ok(serde_json::Value::Null)
                },
            )
            .unwrap();
        op.id
    };
    // As if the agent had died here: the file says running.
    let again = Operations::open(path.clone(), audit.clone());
    let op = again.get(&id).unwrap();
    assert_eq!(op.state, OpState::Failed);
    assert!(op.error.unwrap().contains("interrupted"));
    assert_eq!(rows(&audit).len(), 1);
    let _third = Operations::open(path, audit.clone());
    assert_eq!(rows(&audit).len(), 1, "audited once");
}
