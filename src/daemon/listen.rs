//! The agent's listeners: metrics, the API's Unix socket, and the API with the dashboard
//! on TCP (with TLS when configured).

use super::{DaemonError, Parts, io_err};
use crate::{api, desired::HostConfig, store::Layout};
use std::{os::unix::fs::PermissionsExt, path::Path, sync::Arc};

/// Binds and serves every listener the host config asks for, and the metrics' own loops.
pub(super) async fn serve(
    host: &HostConfig,
    layout: &Layout,
    parts: &Parts,
    servers: &mut tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
    if let Some(addr) = host.metrics.listen {
        let tcp = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(io_err(Path::new(&addr.to_string())))?;
        tracing::info!(%addr, "metrics listening");
        servers.spawn(serve_tcp(tcp, parts.metrics.clone().router(), stop.clone()));
    }
    servers.spawn(parts.metrics.sweep.clone().run(
        parts.state.cx.svc.runtime().clone(),
        host.namespace.clone(),
        host.metrics.interval,
        stop.clone(),
    ));
    servers.spawn(parts.metrics.clone().follow_passes(stop.clone()));
    let unix = bind_unix(&host.api_socket)?;
    let mut rx = stop.clone();
    let app = api::socket_router(parts.state.clone());
    servers.spawn(async move {
        let _ = axum::serve(unix, app)
            .with_graceful_shutdown(
                async move { rx.wait_for(|s| *s).await.map(|_| ()).unwrap_or(()) },
            )
            .await;
    });
    if let Some(addr) = &host.api_tcp {
        serve_tcp_api(host, addr, layout, parts, servers, stop).await?;
    }
    Ok(())
}

/// The API and the dashboard on TCP (`api.tcp`), with TLS when `api.tls` says so.
async fn serve_tcp_api(
    host: &HostConfig,
    addr: &str,
    layout: &Layout,
    parts: &Parts,
    servers: &mut tokio::task::JoinSet<()>,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Result<(), DaemonError> {
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
            let app = crate::ui::tcp_router(parts.state.clone(), ui, token);
            servers.spawn(serve_tcp(listener, app, stop.clone()));
        }
        None => {
            tracing::info!(%addr, "api listening");
            let app = crate::ui::tcp_router(parts.state.clone(), Arc::default(), token);
            servers.spawn(serve_tcp(tcp, app, stop.clone()));
        }
    }
    Ok(())
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
