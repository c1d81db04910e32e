//! The relay's tasks in the agent: accounts and the relay brought to desired state after each
//! reconcile pass, the SASL and milter sockets served, the relay's log followed.

use super::{
    Mail, MailError,
    dkim::{self, Signer},
    policy::Account,
    relay,
};
use crate::{desired::Desired, runtime::Runtime, services::Cx, spec::instance::RunState};
use futures_util::StreamExt;
use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};
use tokio::sync::watch;

/// How often the relay is looked at without a reconcile pass (a failure is retried).
const RESYNC: Duration = Duration::from_secs(30);

/// Each mail-sending tenant's account: its subdomain and verified custom domains, its plan's
/// limits, whether it is suspended, and its password file.
pub fn accounts(
    desired: &Desired,
    base_domain: Option<&str>,
    layout: &crate::store::Layout,
    verified: &dyn Fn(&str, &str) -> bool,
) -> BTreeMap<String, (Account, PathBuf)> {
    let mut out = BTreeMap::new();
    for (t, i) in desired.instances.iter().chain(&desired.last_valid) {
        let Some(m) = &i.mail else { continue };
        if out.contains_key(t) {
            continue;
        }
        let mut domains: Vec<String> = base_domain
            .map(|b| format!("{t}.{b}"))
            .into_iter()
            .collect();
        domains.extend(i.domains.iter().filter(|d| verified(d, t)).cloned());
        let acct = Account {
            tenant: t.clone(),
            domains,
            limits: m.limits,
            suspended: i.state == RunState::Suspended,
        };
        out.insert(t.clone(), (acct, layout.secret(t, &m.password_secret)));
    }
    out
}

impl Mail {
    /// Sets the accounts; with any, the relay runs, is attached to their networks and signs
    /// for their domains; with none, it is stopped.
    pub async fn sync(
        &self,
        rt: &dyn Runtime,
        host: &crate::desired::HostConfig,
        accounts: BTreeMap<String, (Account, PathBuf)>,
    ) -> Result<(), MailError> {
        let tenants: Vec<Account> = accounts.values().map(|(a, _)| a.clone()).collect();
        self.bind_books(&host.state_dir, &tenants);
        *self.accounts.write().expect("accounts") = accounts;
        if tenants.is_empty() {
            self.attached.lock().expect("attached").clear();
            return relay::retire(rt, &self.namespace).await;
        }
        let (name, fresh) = relay::ensure(rt, host, &self.cfg, &self.paths).await?;
        {
            // A tenant gone (its network with it) is attached again if it comes back.
            let mut attached = self.attached.lock().expect("attached");
            if fresh {
                attached.clear();
            }
            attached.retain(|t| tenants.iter().any(|a| &a.tenant == t));
        }
        for a in &tenants {
            if self.attached.lock().expect("attached").contains(&a.tenant) {
                continue;
            }
            let net = crate::runtime::spec::network_name(&self.namespace, &a.tenant);
            let alias = crate::desired::mail::relay_alias(&self.namespace);
            match rt.connect_network(&net, &name, &alias).await {
                Ok(()) => {
                    self.attached
                        .lock()
                        .expect("attached")
                        .insert(a.tenant.clone());
                }
                // Its network is made by its first reconcile; the next pass attaches it.
                Err(e) => {
                    tracing::debug!(tenant = %a.tenant, error = %e, "mail relay not attached yet")
                }
            }
        }
        self.pin_route(rt, &name).await;
        let signers: Vec<Signer> = tenants
            .iter()
            .flat_map(|a| {
                a.domains.iter().map(|d| Signer {
                    tenant: a.tenant.clone(),
                    domain: d.clone(),
                })
            })
            .collect();
        let sel = &self.cfg.dkim_selector;
        dkim::ensure_keys(rt, &name, &self.paths, sel, &signers).await?;
        if dkim::write_tables(&self.paths, sel, &signers)? {
            dkim::reload_dkim(rt, &name).await?;
        }
        Ok(())
    }

    /// Keeps the relay's way out on the host network: joining a tenant's network re-pins
    /// it at once; this covers the engine restarting the relay with every network attached.
    async fn pin_route(&self, rt: &dyn Runtime, name: &str) {
        let due = self
            .pinned
            .lock()
            .expect("pinned")
            .is_none_or(|at| at.elapsed() >= relay::PIN_EVERY);
        if !due {
            return;
        }
        match rt.reseal(name).await {
            Ok(()) => *self.pinned.lock().expect("pinned") = Some(std::time::Instant::now()),
            Err(e) => tracing::warn!(error = %e, "mail relay route not pinned"),
        }
    }

    /// Each account's book is of its tenant's present identity: a tenant purged and added
    /// again under its name starts with empty windows, counts and errors.
    pub(super) fn bind_books(&self, state_dir: &std::path::Path, tenants: &[Account]) {
        let layout = crate::store::Layout::new(state_dir.to_path_buf());
        let mut books = self.books.lock().expect("mail books");
        for a in tenants {
            let id = crate::store::identity::current(&layout, &a.tenant);
            let book = books.entry(a.tenant.clone()).or_default();
            match (&book.id, &id) {
                (None, _) => book.id = id,
                (Some(old), Some(new)) if old == new => {}
                _ => {
                    *book = super::service::Book {
                        id,
                        ..Default::default()
                    };
                    self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
    }

    /// Writes the windows when messages were accepted since the last save.
    fn save_windows(&self) {
        if !self.dirty.swap(false, std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        let saved: BTreeMap<String, super::service::SavedWindow> = self
            .books
            .lock()
            .expect("mail books")
            .iter()
            .map(|(t, b)| {
                let w = super::service::SavedWindow::Of {
                    id: b.id.clone(),
                    times: b.window.times(),
                };
                (t.clone(), w)
            })
            .collect();
        let p = self.paths.windows();
        let json = serde_json::to_vec(&saved).unwrap_or_default();
        if let Err(e) = crate::store::atomic::write(&p, &json, 0o600) {
            tracing::warn!(error = %e, "cannot save the mail windows");
        }
    }

    /// After every reconcile pass (and every 30 s): accounts from desired state, then the relay.
    pub async fn run(
        self: Arc<Self>,
        cx: Cx,
        book: Arc<crate::domains::DomainBook>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut passes = cx.passes.subscribe();
        loop {
            let verified = |d: &str, t: &str| book.bound_to(d).as_deref() == Some(t);
            let host = cx.svc.host();
            let accts = accounts(
                &cx.passes.desired(),
                host.base_domain.as_deref(),
                cx.svc.layout(),
                &verified,
            );
            let result = self.sync(cx.svc.runtime().as_ref(), host, accts).await;
            if let Err(e) = &result {
                tracing::error!(error = %e, "mail relay");
            }
            *self.error.lock().expect("mail error") = result.err().map(|e| e.to_string());
            self.save_windows();
            tokio::select! {
                r = passes.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(RESYNC) => {}
                _ = stop.changed() => { self.save_windows(); return }
            }
        }
    }

    /// Follows the relay's log while it runs (from now on), applying each line.
    pub async fn follow(self: Arc<Self>, rt: Arc<dyn Runtime>, mut stop: watch::Receiver<bool>) {
        let name = relay::container_name(&self.namespace);
        loop {
            // No account, no relay: no call to the engine.
            let idle = self.accounts.read().expect("accounts").is_empty();
            if !idle && let Ok(mut logs) = rt.logs(&name, true, 0).await {
                let mut pending = Vec::new();
                loop {
                    tokio::select! {
                        chunk = logs.next() => match chunk {
                            Some(Ok(bytes)) => self.lines(&mut pending, &bytes),
                            _ => break,
                        },
                        _ = stop.changed() => { self.save_windows(); return }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = stop.changed() => return,
            }
        }
    }

    fn lines(&self, pending: &mut Vec<u8>, bytes: &[u8]) {
        pending.extend_from_slice(bytes);
        while let Some(i) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            if let Some(e) = super::log::parse(String::from_utf8_lossy(&line).trim_end()) {
                self.on_event(e);
            }
        }
        if pending.len() > 64 << 10 {
            pending.clear();
        }
    }

    /// Binds the SASL and milter sockets (before the relay starts) and serves them.
    pub fn listen(
        self: &Arc<Self>,
        servers: &mut tokio::task::JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) -> Result<(), MailError> {
        relay::prepare(&self.paths)?;
        for kind in [Socket::Auth, Socket::Milter] {
            let path = self.paths.run().join(kind.file());
            let ferr = |source| MailError::Files {
                path: path.display().to_string(),
                source,
            };
            let _ = std::fs::remove_file(&path);
            let l = tokio::net::UnixListener::bind(&path).map_err(ferr)?;
            // Reached only through the relay's read-only mount (the directory is root's).
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .map_err(ferr)?;
            servers.spawn(self.clone().accept(l, kind, stop.clone()));
        }
        Ok(())
    }

    async fn accept(
        self: Arc<Self>,
        l: tokio::net::UnixListener,
        kind: Socket,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let conn = tokio::select! {
                c = l.accept() => c,
                _ = stop.changed() => return,
            };
            let Ok((stream, _)) = conn else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let me = self.clone();
            tokio::spawn(async move {
                let r = match kind {
                    Socket::Auth => super::auth::serve(stream, me.as_ref()).await,
                    Socket::Milter => super::milter::serve(stream, me.as_ref()).await,
                };
                if let Err(e) = r {
                    tracing::debug!(error = %e, socket = kind.file(), "mail relay connection ended");
                }
            });
        }
    }
}

#[derive(Clone, Copy)]
enum Socket {
    Auth,
    Milter,
}

impl Socket {
    fn file(self) -> &'static str {
        match self {
            Socket::Auth => "auth.sock",
            Socket::Milter => "milter.sock",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_hold_the_subdomain_and_verified_domains_of_mail_sending_tenants_only() {
        let mut d = Desired::default();
        let mut i = crate::fixtures::demo_instance("acme");
        i.domains = vec!["acme.example".into(), "unproven.example".into()];
        i.state = RunState::Suspended;
        i.mail = Some(crate::desired::model::Mail {
            user: "acme".into(),
            password_secret: "mail_password".into(),
            from_domain: "acme.example".into(),
            limits: Default::default(),
        });
        d.instances.insert("acme".into(), i);
        d.instances
            .insert("quiet".into(), crate::fixtures::demo_instance("quiet"));
        let layout = crate::store::Layout::new("/s".into());
        let verified = |dom: &str, t: &str| dom == "acme.example" && t == "acme";
        let a = accounts(&d, Some("apps.test"), &layout, &verified);
        assert_eq!(a.keys().collect::<Vec<_>>(), ["acme"]);
        let (acct, pw) = &a["acme"];
        assert_eq!(acct.domains, ["acme.apps.test", "acme.example"]);
        assert!(acct.suspended);
        assert_eq!(pw, &layout.secret("acme", "mail_password"));
    }
}
