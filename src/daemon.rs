//! `berth serve`: wiring only. Takes the state-dir lock, connects to Docker, starts the
//! reconciler, the file watcher and the API listeners, tells systemd when ready.

use crate::{
    api::{self, AppState},
    desired::HostConfig,
    desired::engine::Engine,
    reconcile::Controller,
    runtime::{Runtime, docker::DockerRuntime, swarm::SwarmRuntime},
    services::{Cx, Services},
    store::{Layout, atomic},
};
use crate::{
    certs::{
        CertManager,
        acme::AcmeIssuer,
        ca::InternalCa,
        http01::Http01Tokens,
        issuer::{Issuer, SystemClock},
        manager::Budgets,
        store::CertStore,
    },
    domains::DomainBook,
    proxy::Proxy,
};
use notify::Watcher;
use std::{
    fs::File,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    sync::Arc,
};

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
    tracing::info!(
        memory = a.memory_total,
        memory_overcommit = a.memory_overcommit,
        disk = a.disk_total,
        disk_overcommit = a.disk_overcommit,
        "admission totals"
    );
}

/// The kernel-enforced egress policy, or (warned, and shown by status and metrics) why this
/// host cannot have it.
/// In swarm mode `nodes` is the nodes' guards, which stand in for this host's firewall.
fn egress_policy(
    host: &HostConfig,
    nodes: Option<Box<dyn crate::egress::Firewall>>,
) -> crate::egress::Egress {
    use crate::egress::{Egress, Firewall, iptables::Iptables};
    let fw = match nodes {
        Some(guards) => Ok(guards),
        None => Iptables::probe(&host.namespace).map(|f| Box::new(f) as Box<dyn Firewall>),
    };
    if let Err(why) = &fw {
        tracing::warn!(reason = %why, "the egress policy cannot be enforced on this host; tenants can reach the host's networks");
    }
    let resolvers = Egress::host_resolvers();
    Egress::new(fw, &host.namespace, host.subnet_pool.net(), resolvers)
}

/// `engine.cpu_weight`: the local engine (found as the peer of its socket) and its programs
/// move to a CPU group of that weight, so container starts yield to the tenants and the edge.
/// Called once connected to the engine's events, each time: an engine restarted since is moved
/// again. Blocking work (a connect, a walk of /proc), so off the runtime's threads.
fn place_engine(host: &HostConfig) {
    let (Engine::Docker, Some(weight)) = (&host.engine, host.engine_cpu_weight) else {
        return;
    };
    let socket = match std::env::var("DOCKER_HOST") {
        Err(_) => PathBuf::from("/var/run/docker.sock"),
        Ok(h) => match h.strip_prefix("unix://") {
            Some(p) => PathBuf::from(p),
            None => {
                tracing::warn!(docker_host = %h, "engine.cpu_weight needs the engine on a unix socket; its weight is left as it is");
                return;
            }
        },
    };
    tokio::task::spawn_blocking(move || {
        use crate::host_tuning::engine_cpu;
        let placed = engine_cpu::engine_pid(&socket)
            .map_err(|e| format!("{}: {e}", socket.display()))
            .and_then(|pid| {
                engine_cpu::place(&engine_cpu::Cgroups::default(), pid, weight)
                    .map_err(|e| e.to_string())
            });
        // Said once until it works: the events stream is retried every 2 s while the engine is down.
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        match placed {
            Ok(what) => {
                WARNED.store(false, std::sync::atomic::Ordering::Relaxed);
                if let Some(what) = what {
                    tracing::info!(%what, "engine.cpu_weight")
                }
            }
            Err(error) if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) => {
                tracing::warn!(%error, "cannot set the engine's CPU weight; container starts compete with the tenants")
            }
            Err(_) => {}
        }
    });
}

pub async fn run(mut host: HostConfig) -> Result<(), DaemonError> {
    let layout = Layout::new(host.state_dir.clone());
    let _lock = lock_state_dir(&layout)?;
    fill_admission_totals(&mut host);
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
    crate::reconcile::shared_db::ensure_name_key(&mut host)?;
    let (rt, node_fw): (Arc<dyn Runtime>, Option<Box<dyn crate::egress::Firewall>>) =
        match &host.engine {
            Engine::Docker => (Arc::new(DockerRuntime::connect().await?), None),
            Engine::Swarm(s) => {
                let rt = SwarmRuntime::connect(s).await?;
                let guards = Box::new(rt.guards(&host.namespace));
                (Arc::new(rt), Some(guards))
            }
        };
    let svc = Arc::new(Services::new(rt, host.clone())?);
    let ctl = Arc::new(Controller::new(svc.clone()));
    let cx = Cx {
        svc: svc.clone(),
        passes: ctl.clone(),
    };
    let mail_files = crate::mail::relay::Paths::new(&layout);
    svc.on_purge(Arc::new(move |t| {
        crate::mail::relay::purge(&mail_files, t).map_err(Into::into)
    }));
    let egress = Arc::new(egress_policy(&host, node_fw));
    if egress.enforceable() {
        // Each tenant container carries the policy in its own namespace from its start.
        svc.runtime().seal_with(crate::runtime::netns::Sealing {
            resolvers: egress.resolvers().to_vec(),
            host_network: crate::runtime::spec::network_name(
                &host.namespace,
                crate::runtime::labels::HOST_TENANT,
            ),
        });
        tokio::spawn(seal_running(svc.clone()));
    }
    svc.set_egress(egress);
    let _watcher = watch(&host, svc.clone())?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let book = Arc::new(DomainBook::open(layout.domains())?);
    let mut servers = tokio::task::JoinSet::new();
    let edge = match &host.proxy {
        Some(cfg) => Some(Edge::bind(&host, cfg, &layout).await?),
        None => None,
    };
    // Before the first pass: tenants a crash left mid-upgrade must be held from the reconciler.
    let fleet = crate::upgrade::Fleet::open(cx.clone(), edge.as_ref().map(|e| e.proxy.clone()));
    let sleep_meters = crate::sleep::SleepMeters::default();
    let mail = host
        .mail
        .clone()
        .map(|cfg| Arc::new(crate::mail::Mail::open(cfg, &host.namespace, &layout)));
    if let Some(m) = &mail {
        m.listen(&mut servers, &stop_rx)?;
    }
    let metrics = crate::metrics::Metrics::new(crate::metrics::Sources {
        cx: cx.clone(),
        fleet: fleet.clone(),
        proxy: edge.as_ref().map(|e| e.proxy.clone()),
        certs: edge.as_ref().map(|e| e.certs.clone()),
        sleep: sleep_meters.clone(),
        mail: mail.clone(),
    });
    let mut state = AppState::new(
        cx.clone(),
        book.clone(),
        edge.as_ref().map(|e| e.certs.clone()),
        fleet.clone(),
    );
    state.metrics = Some(metrics.clone());
    state.mail = mail.clone();
    if let Some(addr) = host.metrics.listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io_err(Path::new(&addr.to_string())))?;
        tracing::info!(%addr, "metrics listening");
        servers.spawn(serve_tcp(tcp, metrics.clone().router(), stop_rx.clone()));
    }
    servers.spawn(metrics.sweep.clone().run(
        svc.runtime().clone(),
        host.namespace.clone(),
        host.metrics.interval,
        stop_rx.clone(),
    ));
    servers.spawn(metrics.clone().follow_passes(stop_rx.clone()));
    let unix = bind_unix(&host.api_socket)?;
    let mut rx = stop_rx.clone();
    let app = api::socket_router(state.clone());
    servers.spawn(async move {
        let _ = axum::serve(unix, app)
            .with_graceful_shutdown(
                async move { rx.wait_for(|s| *s).await.map(|_| ()).unwrap_or(()) },
            )
            .await;
    });
    if let Some(addr) = &host.api_tcp {
        let token = match &host.api_token_file {
            Some(f) => Some(
                crate::store::private::read(f)
                    .map_err(DaemonError::Secret)?
                    .trim()
                    .to_string(),
            ),
            None => None,
        };
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io_err(Path::new(addr)))?;
        match &host.api_tls {
            Some(tls) => {
                let cert = api::tls::ApiCert::new(tls, &layout.certs().join("ca"))?;
                let listener = api::tls::TlsListener::new(tcp, Arc::new(cert).server_config())
                    .map_err(io_err(Path::new(addr)))?;
                let ui = Arc::new(crate::ui::Ui::default());
                ui.secure.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(%addr, "api listening (tls)");
                let app = crate::ui::tcp_router(state, ui, token);
                servers.spawn(serve_tcp(listener, app, stop_rx.clone()));
            }
            None => {
                tracing::info!(%addr, "api listening");
                let app = crate::ui::tcp_router(state, Arc::default(), token);
                servers.spawn(serve_tcp(tcp, app, stop_rx.clone()));
            }
        }
    }
    tokio::spawn(follow_engine_events(svc.clone(), metrics.clone()));
    servers.spawn(svc.probes().clone().run(stop_rx.clone()));
    if let Err(e) = ctl.pass().await {
        tracing::error!(error = %e, "first reconcile pass failed; retrying");
    }
    if let Some(edge) = edge {
        let sleeper = crate::sleep::Sleeper::new(cx.clone(), edge.proxy.clone(), sleep_meters);
        edge.go_live(&ctl, &book, &sleeper, &stop_rx, &mut servers);
        servers.spawn(sleeper.run(stop_rx.clone()));
    }
    if let Some(m) = mail {
        servers.spawn(m.clone().run(cx.clone(), book.clone(), stop_rx.clone()));
        servers.spawn(m.follow(svc.runtime().clone(), stop_rx.clone()));
    }
    fleet.upgrades.spawn();
    fleet.backups.discard_scratch();
    let (backups, unfinished) = (fleet.backups.clone(), fleet.unfinished_restores.clone());
    tokio::spawn(async move { backups.resume(unfinished).await });
    servers.spawn(fleet.jobs.clone().run_loop(stop_rx.clone()));
    servers.spawn(
        fleet
            .backup_schedule
            .clone()
            .run_loop(fleet.backups.clone(), stop_rx.clone()),
    );
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(socket = %host.api_socket.display(), "berth agent ready");
    let mut rx = stop_rx.clone();
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

/// The proxy, its certificate manager and its two listeners, bound but not yet accepting.
struct Edge {
    proxy: Arc<Proxy>,
    certs: Arc<CertManager>,
    listeners: (tokio::net::TcpListener, tokio::net::TcpListener),
}

impl Edge {
    /// Binds (or inherits) the listeners first, so from here on connections queue rather than
    /// being refused, even while the agent restarts.
    async fn bind(
        host: &HostConfig,
        cfg: &crate::desired::edge::ProxyConfig,
        layout: &Layout,
    ) -> Result<Edge, DaemonError> {
        let http01 = Arc::new(Http01Tokens::default());
        let store = CertStore::new(layout.certs());
        let ca = InternalCa::load_or_create(&layout.certs().join("ca"))?;
        let issuer = host
            .acme
            .as_ref()
            .map(|a| Arc::new(AcmeIssuer::new(a, store.root(), http01.clone())) as Arc<dyn Issuer>);
        let budgets = Budgets::of(host.acme.as_ref());
        let certs = CertManager::new(store, ca, issuer, Arc::new(SystemClock), budgets);
        let proxy = Proxy::new(cfg.clone(), certs.table(), http01);
        let listeners = proxy.listen().await?;
        tracing::info!(http = %cfg.http, https = %cfg.https, acme = host.acme.is_some(), "proxy listening");
        Ok(Edge {
            proxy,
            certs,
            listeners,
        })
    }

    /// Called after the first reconcile pass has observed the engine: installs the routes and
    /// certificates it found, then starts accepting. A restarted agent therefore never answers
    /// a queued request with 404 or a maintenance page just because it has not looked yet.
    fn go_live(
        self,
        ctl: &Arc<Controller>,
        book: &Arc<DomainBook>,
        sleeper: &crate::sleep::Sleeper,
        stop: &tokio::sync::watch::Receiver<bool>,
        servers: &mut tokio::task::JoinSet<()>,
    ) {
        crate::reconcile::edge::refresh(ctl, &self.proxy, &self.certs, book);
        // Sleeping tenants' gates hold requests from the first one accepted.
        sleeper.sync_gates();
        let (http, https) = self.listeners;
        let mut accept = self
            .proxy
            .clone()
            .serve_listeners(http, https, stop.clone());
        servers.spawn(async move { while accept.join_next().await.is_some() {} });
        servers.spawn(self.certs.clone().run(stop.clone()));
        servers.spawn(crate::reconcile::edge::run(
            ctl.clone(),
            self.proxy,
            self.certs,
            book.clone(),
            stop.clone(),
        ));
    }
}

/// Serves `app` on `tcp` until shutdown flips, finishing requests in flight.
/// Handlers see the client's address (`ConnectInfo`), which the audit log records.
async fn serve_tcp<L>(tcp: L, app: axum::Router, mut stop: tokio::sync::watch::Receiver<bool>)
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    for<'a> crate::api::auth::Peer:
        axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let app = app.into_make_service_with_connect_info::<crate::api::auth::Peer>();
    let _ = axum::serve(tcp, app)
        .with_graceful_shutdown(
            async move { stop.wait_for(|s| *s).await.map(|_| ()).unwrap_or(()) },
        )
        .await;
}

/// The API socket, 0660: root and the socket's group may manage tenants, nobody else.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path).map_err(io_err(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err(path))?;
    Ok(l)
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

/// Seals every container running when the agent starts: the engine may have started some
/// while no agent watched (a reboot with containers made before tenant containers lost their
/// restart policy, or a `docker start` meanwhile). A tenant container that cannot be sealed is
/// stopped (`Runtime::started_elsewhere`).
async fn seal_running(svc: Arc<Services>) {
    let rt = svc.runtime();
    let Ok(inv) = rt.inventory(&svc.host().namespace).await else {
        return;
    };
    for c in inv
        .containers
        .iter()
        .filter(|c| c.status == crate::runtime::RunStatus::Running)
    {
        rt.started_elsewhere(&c.name).await;
    }
}

/// Kicks a pass on every engine event about our containers; reconnects if the stream ends
/// (dockerd restart). The periodic resync covers anything missed in between.
async fn follow_engine_events(svc: Arc<Services>, metrics: Arc<crate::metrics::Metrics>) {
    use futures_util::StreamExt;
    loop {
        match svc.runtime().events(&svc.host().namespace).await {
            Ok(mut events) => {
                place_engine(svc.host());
                while let Some(e) = events.next().await {
                    metrics.on_event(&e);
                    if matches!(e.action.as_str(), "start" | "die" | "restart") {
                        svc.probes().reset(&e.container);
                    }
                    if e.action == "start" {
                        let (rt, name) = (svc.runtime().clone(), e.container.clone());
                        tokio::spawn(async move { rt.started_elsewhere(&name).await });
                    }
                    svc.kick();
                }
            }
            Err(e) => tracing::warn!(error = %e, "engine events unavailable"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
