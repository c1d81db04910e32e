//! What goes into and comes out of a backup, through `exec` in the tenant's own containers:
//! `pg_dump`/`psql` for the database (consistent while the app runs), `tar` for other volumes.

use super::BackupError;
use crate::{
    desired::Instance,
    runtime::{Runtime, labels, spec},
    spec::template::DatabaseMode,
};

/// The container running the tenant's database and the role to connect as.
fn db_container(ns: &str, inst: &Instance) -> Option<(String, String)> {
    let db = inst.database.as_ref()?;
    Some(match db.mode {
        DatabaseMode::Sidecar => (
            spec::container_name(ns, &inst.tenant, &db.host),
            db.user.clone(),
        ),
        DatabaseMode::Shared => (
            spec::container_name(ns, labels::HOST_TENANT, "postgres"),
            "postgres".into(),
        ),
    })
}

async fn run(
    rt: &dyn Runtime,
    container: &str,
    tenant: &str,
    step: &str,
    cmd: &[&str],
    stdin: Option<Vec<u8>>,
) -> Result<Vec<u8>, BackupError> {
    let out = rt.exec(container, cmd, stdin).await?;
    if out.exit_code != 0 {
        return Err(BackupError::Command {
            tenant: tenant.into(),
            step: step.into(),
            output: out.output.trim().chars().take(2000).collect(),
        });
    }
    Ok(out.stdout)
}

/// A plain SQL dump that drops and recreates every object on restore; None without a database.
pub async fn database(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
) -> Result<Option<Vec<u8>>, BackupError> {
    let (Some(db), Some((container, user))) = (&inst.database, db_container(ns, inst)) else {
        return Ok(None);
    };
    let cmd = [
        "pg_dump",
        "--clean",
        "--if-exists",
        "--no-owner",
        // One role per tenant: a clone restores as another role, which old grants would name.
        "--no-privileges",
        "-h",
        "/var/run/postgresql",
        "-U",
        &user,
        "-d",
        &db.name,
    ];
    run(rt, &container, &inst.tenant, "pg_dump", &cmd, None)
        .await
        .map(Some)
}

pub async fn restore_database(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    sql: Vec<u8>,
) -> Result<(), BackupError> {
    let (Some(db), Some((container, user))) = (&inst.database, db_container(ns, inst)) else {
        return Ok(());
    };
    let cmd = [
        "psql",
        "-v",
        "ON_ERROR_STOP=1",
        "-q",
        "-h",
        "/var/run/postgresql",
        "-U",
        &user,
        "-d",
        &db.name,
        "-f",
        "-",
    ];
    run(
        rt,
        &container,
        &inst.tenant,
        "psql restore",
        &cmd,
        Some(sql),
    )
    .await
    .map(|_| ())
}

/// The service container and path through which a volume is read and written. Volumes of a
/// sidecar database service are covered by the dump and skipped.
fn volume_mounts(ns: &str, inst: &Instance) -> Vec<(String, String, String)> {
    let db_service = inst
        .database
        .as_ref()
        .filter(|d| d.mode == DatabaseMode::Sidecar)
        .map(|d| d.host.clone());
    let mut seen = std::collections::BTreeSet::new();
    let mut out = vec![];
    for svc in &inst.services {
        if Some(&svc.name) == db_service.as_ref() {
            continue;
        }
        for m in &svc.volumes {
            if seen.insert(m.volume.clone()) {
                out.push((
                    m.volume.clone(),
                    spec::container_name(ns, &inst.tenant, &svc.name),
                    m.target.clone(),
                ));
            }
        }
    }
    out
}

pub async fn volumes(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
) -> Result<Vec<(String, Vec<u8>)>, BackupError> {
    let mut out = vec![];
    for (volume, container, target) in volume_mounts(ns, inst) {
        let cmd = ["tar", "-c", "-f", "-", "-C", &target, "."];
        let data = run(
            rt,
            &container,
            &inst.tenant,
            &format!("tar of {volume}"),
            &cmd,
            None,
        )
        .await?;
        out.push((volume, data));
    }
    Ok(out)
}

pub async fn restore_volume(
    rt: &dyn Runtime,
    ns: &str,
    inst: &Instance,
    volume: &str,
    data: Vec<u8>,
) -> Result<(), BackupError> {
    let Some((_, container, target)) = volume_mounts(ns, inst)
        .into_iter()
        .find(|(v, _, _)| v == volume)
    else {
        return Ok(());
    };
    let cmd = ["tar", "-x", "-f", "-", "-C", &target];
    run(
        rt,
        &container,
        &inst.tenant,
        &format!("restore of {volume}"),
        &cmd,
        Some(data),
    )
    .await
    .map(|_| ())
}
