//! An upgrade's turn against other holders of the tenant (a restore, a move's hold).

use std::time::Duration;

#[tokio::test]
async fn a_turn_waits_for_another_holder_and_never_runs_under_it() {
    let (_dir, s) = crate::api::tests::state();
    let (up, passes) = (s.fleet.upgrades.clone(), s.cx.passes.clone());
    // Held by a restore for longer than the turn may wait: skipped, and the hold is still the
    // restore's alone (the turn took nothing).
    passes.hold("t1");
    let why = up
        .take_turn("t1", Duration::from_millis(600))
        .await
        .unwrap_err();
    assert!(why.contains("held by another operation"), "{why}");
    assert!(passes.is_held("t1"));
    // Released within the wait: the turn takes it then, and holds it.
    let p = passes.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        p.release("t1");
    });
    up.take_turn("t1", Duration::from_secs(5)).await.unwrap();
    assert!(passes.is_held("t1"), "the turn holds it now");
    // A second turn on the same tenant (a rollback asked meanwhile) does not run under the first.
    let why = up
        .take_turn("t1", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(why.contains("held by another operation"), "{why}");
}

#[tokio::test]
async fn a_restore_is_refused_inside_an_upgrades_turn_and_leaves_the_turn_holding() {
    let (_dir, s) = crate::api::tests::state();
    let (up, passes) = (s.fleet.upgrades.clone(), s.cx.passes.clone());
    up.take_turn("t1", Duration::from_secs(1)).await.unwrap();
    // A tenant-admin's in-place restore between the turn's backup and its switch: refused at
    // once, and the turn's hold is not ended by it.
    let err = up.restore("t1", "any", true).await.unwrap_err();
    assert!(
        err.to_string().contains("another operation holds it"),
        "{err}"
    );
    assert!(passes.is_held("t1"), "the turn still holds the tenant");
    // The same race lost after the first check: the guard is not taken, the hold stays.
    assert!(passes.try_hold_guard("t1").await.is_none());
    assert!(passes.is_held("t1"));
    passes.release("t1");
    let guard = passes.try_hold_guard("t1").await.expect("free again");
    assert!(
        passes.try_hold_guard("t1").await.is_none(),
        "one holder at a time"
    );
    drop(guard);
    assert!(!passes.is_held("t1"), "the guard's drop releases it");
}
