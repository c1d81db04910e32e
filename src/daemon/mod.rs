//! `berth serve`: wiring only. Takes the state-dir lock, connects to Docker, starts the
//! reconciler, the file watcher and the API listeners, tells systemd when ready.

use crate::{
    api::AppState,
    desired::HostConfig,
    domains::DomainBook,
    reconcile::Controller,
    services::{Cx, Services},
    store::{Layout, atomic},
};
use notify::Watcher;
use std::{fs::File, path::Path, sync::Arc};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("another berth agent already runs on state dir {0} (lock {0}/berth.lock is held)")]
    Locked(String),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("api.token_file {0}")]
    Secret(crate::store::private::PrivateError),
    #[error(transparent)]
    Alloc(#[from] crate::store::AllocError),
    #[error("file watcher: {0}")]
    Watch(#[from] notify::Error),
    #[error(transparent)]
    Cert(#[from] crate::certs::CertError),
    #[error(transparent)]
    Domain(#[from] crate::domains::DomainError),
    #[error(transparent)]
    Listen(#[from] crate::proxy::ListenError),
    #[error(transparent)]
    SharedDb(#[from] crate::reconcile::shared_db::SharedDbError),
    #[error(transparent)]
    Mail(#[from] crate::mail::MailError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError + '_ {
    move |source| DaemonError::Io {
        path: path.display().to_string(),
        source,
    }
}

mod edge;
mod engine;
mod listen;

use edge::Edge;

/// One agent per state dir: an exclusive lock held for the life of the process.
pub fn lock_state_dir(layout: &Layout) -> Result<File, DaemonError> {
    atomic::create_dir(layout.root(), 0o700).map_err(io_err(layout.root()))?;
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(layout.lock())
        .map_err(io_err(&layout.lock()))?;
    f.try_lock()
        .map_err(|_| DaemonError::Locked(layout.root().display().to_string()))?;
    Ok(f)
}

/// Admission counts with the host's measured memory and state-dir disk where the config
/// leaves them out.
fn fill_admission_totals(host: &mut HostConfig) {
    let m = crate::capacity::measure(&host.state_dir);
    let a = &mut host.admission;
    if a.memory_total.is_none() {
        a.memory_total = Some(m.memory_total);
    }
    if a.disk_total.is_none() {
        a.disk_total = m.disk.map(|d| d.size);
    }
    if a.cpu_total.is_none() {
        a.cpu_total = Some(m.cpus as u64 * 1000);
    }
    tracing::info!(
        memory = a.memory_total,
        memory_overcommit = a.memory_overcommit,
        disk = a.disk_total,
        disk_overcommit = a.disk_overcommit,
        cpu_millicores = a.cpu_total,
        cpu_overcommit = a.cpu_overcommit,
        "admission totals"
    );
}

pub async fn run(mut host: HostConfig) -> Result<(), DaemonError> {
    let layout = Layout::new(host.state_dir.clone());
    let _lock = lock_state_dir(&layout)?;
    prepare_host(&mut host)?;
    let (cx, ctl) = engine::connect(&host, &layout).await?;
    let svc = cx.svc.clone();
    let _watcher = watch(&host, svc.clone())?;
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    let parts = Parts::open(&host, &layout, &cx, &mut servers, &stop).await?;
    listen::serve(&host, &layout, &parts, &mut servers, &stop).await?;
    tokio::spawn(engine::follow_events(svc.clone(), parts.metrics.clone()));
    servers.spawn(svc.probes().clone().run(stop.clone()));
    if let Err(e) = ctl.pass().await {
        tracing::error!(error = %e, "first reconcile pass failed; retrying");
    }
    parts.start(&cx, &ctl, &mut servers, &stop);
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(socket = %host.api_socket.display(), "berth agent ready");
    let mut rx = stop.clone();
    let reconciler = tokio::spawn(ctl.clone().run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    shutdown_signal().await;
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    let _ = reconciler.await;
    while servers.join_next().await.is_some() {}
    svc.audit().flush(crate::audit::now_ms(), true);
    let _ = std::fs::remove_file(&host.api_socket);
    Ok(())
}

/// Before the engine: admission totals, the kernel's neighbour table, the database name key.
fn prepare_host(host: &mut HostConfig) -> Result<(), DaemonError> {
    fill_admission_totals(host);
    match crate::host_tuning::ensure_neighbour_table(
        Path::new("/proc/sys"),
        host.subnet_pool.capacity(),
    ) {
        Ok(Some(what)) => {
            tracing::info!(%what, "raised the kernel's neighbour table for this subnet pool")
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(error = %e, "cannot size the kernel's neighbour table; past ~1,000 reachable containers new connections may stall")
        }
    }
    crate::reconcile::shared_db::ensure_name_key(host)?;
    Ok(())
}

/// What the agent serves besides the reconciler, made before the first pass.
struct Parts {
    book: Arc<DomainBook>,
    edge: Option<Edge>,
    fleet: crate::upgrade::Fleet,
    sleep_meters: crate::sleep::SleepMeters,
    mail: Option<Arc<crate::mail::Mail>>,
    metrics: Arc<crate::metrics::Metrics>,
    state: AppState,
}

impl Parts {
    async fn open(
        host: &HostConfig,
        layout: &Layout,
        cx: &Cx,
        servers: &mut tokio::task::JoinSet<()>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) -> Result<Parts, DaemonError> {
        let book = Arc::new(DomainBook::open(layout.domains())?);
        let edge = match &host.proxy {
            Some(cfg) => Some(Edge::bind(host, cfg, layout).await?),
            None => None,
        };
        let proxy = edge.as_ref().map(|e| e.proxy.clone());
        let certs = edge.as_ref().map(|e| e.certs.clone());
        // Before the first pass: tenants a crash left mid-upgrade must be held from the reconciler.
        let fleet = crate::upgrade::Fleet::open(cx.clone(), proxy.clone());
        let sleep_meters = crate::sleep::SleepMeters::default();
        let mail = host
            .mail
            .clone()
            .map(|cfg| Arc::new(crate::mail::Mail::open(cfg, &host.namespace, layout)));
        if let Some(m) = &mail {
            m.listen(servers, stop)?;
        }
        let metrics = crate::metrics::Metrics::new(crate::metrics::Sources {
            cx: cx.clone(),
            fleet: fleet.clone(),
            proxy,
            certs: certs.clone(),
            sleep: sleep_meters.clone(),
            mail: mail.clone(),
        });
        let mut state = AppState::new(cx.clone(), book.clone(), certs, fleet.clone());
        state.metrics = Some(metrics.clone());
        state.mail = mail.clone();
        Ok(Parts {
            book,
            edge,
            fleet,
            sleep_meters,
            mail,
            metrics,
            state,
        })
    }

    /// After the first pass: the edge accepts, sleepers doze, the relay syncs, upgrades and
    /// restores a crash left resume, jobs and scheduled backups run.
    fn start(
        self,
        cx: &Cx,
        ctl: &Arc<Controller>,
        servers: &mut tokio::task::JoinSet<()>,
        stop: &tokio::sync::watch::Receiver<bool>,
    ) {
        if let Some(edge) = self.edge {
            let sleeper =
                crate::sleep::Sleeper::new(cx.clone(), edge.proxy.clone(), self.sleep_meters);
            edge.go_live(ctl, &self.book, &sleeper, stop, servers);
            servers.spawn(sleeper.run(stop.clone()));
        }
        if let Some(m) = self.mail {
            servers.spawn(m.clone().run(cx.clone(), self.book.clone(), stop.clone()));
            servers.spawn(m.follow(cx.svc.runtime().clone(), stop.clone()));
        }
        let fleet = self.fleet;
        fleet.upgrades.spawn();
        fleet.backups.discard_scratch();
        let (backups, unfinished) = (fleet.backups.clone(), fleet.unfinished_restores.clone());
        tokio::spawn(async move { backups.resume(unfinished).await });
        servers.spawn(fleet.jobs.clone().run_loop(stop.clone()));
        let schedule = fleet.backup_schedule.clone();
        servers.spawn(schedule.run_loop(fleet.backups.clone(), stop.clone()));
        let checks = fleet.repo_checks.clone();
        servers.spawn(checks.run_loop(fleet.backups.clone(), stop.clone()));
        servers.spawn(fleet.backups.clone().inventory_loop(stop.clone()));
    }
}

/// Any change under templates/ or instances/ asks for a pass.
fn watch(host: &HostConfig, svc: Arc<Services>) -> Result<notify::RecommendedWatcher, DaemonError> {
    let mut w = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
        if ev.is_ok_and(|e| !e.kind.is_access()) {
            svc.kick();
        }
    })?;
    for dir in [&host.instances_dir, &host.templates_dir] {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        w.watch(dir, notify::RecursiveMode::Recursive)?;
    }
    Ok(w)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
