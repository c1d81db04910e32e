//! The relay's container and files: Postfix and OpenDKIM in `<ns>-_host-mail` on the host's
//! network (its way out), attached to each mail-sending tenant's network under
//! `<ns>-mail`; berth's SASL and policy sockets and the DKIM tables mounted read-only; the queue
//! on a volume of its own.

use super::MailError;
use crate::{
    desired::{HostConfig, mail::MailConfig},
    runtime::{
        Runtime,
        host_net::{self, HostContainer},
        labels, spec,
    },
    store::{Layout, atomic},
};
use sha2::Digest;
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

pub const SERVICE: &str = labels::MAIL_SERVICE;
/// Where the tables and keys are inside the relay.
pub(super) const DKIM_AT: &str = "/etc/berth-mail/dkim";

pub fn container_name(ns: &str) -> String {
    spec::container_name(ns, labels::HOST_TENANT, SERVICE)
}

/// The relay's files under `<state>/host/mail`.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
}

impl Paths {
    pub fn new(layout: &Layout) -> Paths {
        Paths {
            root: layout.root().join("host").join("mail"),
        }
    }
    /// berth's sockets (mounted at /run/berth-mail).
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn dkim(&self) -> PathBuf {
        self.root.join("dkim")
    }
    /// A tenant's private keys, one per domain.
    pub fn keys(&self, tenant: &str) -> PathBuf {
        self.dkim().join("keys").join(tenant)
    }
    /// A tenant's DNS records (`<domain>.txt`), never mounted.
    pub fn records(&self, tenant: &str) -> PathBuf {
        self.root.join("records").join(tenant)
    }
    pub fn smarthost_auth(&self) -> PathBuf {
        self.root.join("smarthost_auth")
    }
    /// Each tenant's accepted messages of the last day (rates survive a restart).
    pub fn windows(&self) -> PathBuf {
        self.root.join("windows.json")
    }
}

pub(super) fn ferr(path: &Path) -> impl FnOnce(std::io::Error) -> MailError + '_ {
    move |source| MailError::Files {
        path: path.display().to_string(),
        source,
    }
}

/// The directories, made once: 0711 where the relay's unprivileged users must pass.
pub fn prepare(paths: &Paths) -> Result<(), MailError> {
    for (dir, mode) in [
        (paths.root.clone(), 0o711),
        (paths.run(), 0o711),
        (paths.dkim(), 0o711),
        (paths.dkim().join("keys"), 0o711),
        (paths.root.join("records"), 0o700),
    ] {
        atomic::create_dir(&dir, mode).map_err(ferr(&dir))?;
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .map_err(ferr(&dir))?;
    }
    for table in ["KeyTable", "SigningTable"] {
        let p = paths.dkim().join(table);
        if !p.exists() {
            atomic::write(&p, b"", 0o644).map_err(ferr(&p))?;
        }
    }
    Ok(())
}

/// The largest message any plan allows: Postfix's own limit.
pub fn max_size(host: &HostConfig) -> u64 {
    host.plans
        .values()
        .map(|p| p.mail.max_size)
        .chain([crate::desired::mail::MailLimits::default().max_size])
        .max()
        .unwrap_or_default()
}

/// The relay's container.
pub fn container_spec(host: &HostConfig, cfg: &MailConfig, paths: &Paths) -> spec::ContainerSpec {
    let ns = &host.namespace;
    let mount = |kind: spec::MountKind, source: &Path, target: &str| spec::Mount {
        read_only: kind != spec::MountKind::Volume,
        kind,
        source: source.display().to_string(),
        target: target.into(),
    };
    let mut mounts = vec![
        mount(
            spec::MountKind::Volume,
            Path::new(&spec::volume_name(ns, labels::HOST_TENANT, "mail-queue")),
            "/var/spool/postfix",
        ),
        mount(spec::MountKind::File, &paths.run(), "/run/berth-mail"),
        mount(spec::MountKind::File, &paths.dkim(), DKIM_AT),
    ];
    let mut env = vec![
        format!("BERTH_MAIL_HOSTNAME={}", cfg.hostname),
        format!("BERTH_MAIL_MAX_SIZE={}", max_size(host)),
    ];
    if let Some(s) = &cfg.smarthost {
        env.push(format!("BERTH_MAIL_RELAYHOST={}", s.relayhost()));
        if s.tls_required {
            env.push("BERTH_MAIL_SMARTHOST_TLS=required".into());
        }
        if s.auth.is_some() {
            mounts.push(mount(
                spec::MountKind::File,
                &paths.smarthost_auth(),
                "/etc/berth-mail/smarthost_auth",
            ));
        }
    }
    let tmpfs = [
        ("/etc/postfix", "rw,nosuid,size=8m"),
        ("/run", "rw,nosuid,size=8m"),
        ("/tmp", "rw,noexec,nosuid,size=16m"),
        ("/var/lib/postfix", "rw,nosuid,size=8m"),
    ];
    let mut c = spec::ContainerSpec {
        env,
        mounts,
        tmpfs: tmpfs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        // Postfix's master starts as root and runs its daemons as postfix; OpenDKIM drops to
        // opendkim; the queue's ownership is fixed at start.
        cap_add: [
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "SETGID",
            "SETUID",
            "KILL",
            "NET_BIND_SERVICE",
        ]
        .map(String::from)
        .into(),
        ..host_net::container(HostContainer {
            ns,
            service: SERVICE,
            image: &cfg.image,
            alias: crate::desired::mail::relay_alias(ns),
            memory: cfg.memory,
            pids_limit: 512,
        })
    };
    // The kernel's limits in front of Postfix's own (anvil: 10 connections, 120 a minute per
    // client): a flood past twice those is dropped before Postfix wakes for it.
    c.labels
        .insert(labels::CLIENT_LIMITS.into(), "587 20 240".into());
    let hash = hex::encode(sha2::Sha256::digest(format!("{c:?}").as_bytes()));
    c.labels.insert(labels::SPEC_HASH.into(), hash);
    c
}

/// Writes the smarthost's login for Postfix (`[host]:port user:password`, 0600).
fn write_smarthost_auth(cfg: &MailConfig, paths: &Paths) -> Result<(), MailError> {
    let Some((host, (user, file))) = cfg
        .smarthost
        .as_ref()
        .and_then(|s| s.auth.as_ref().map(|a| (s.relayhost(), a)))
    else {
        return Ok(());
    };
    let pw = crate::store::private::read(file).map_err(|e| MailError::Config(e.to_string()))?;
    let pw = pw.trim();
    if pw.is_empty() || pw.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(MailError::Config(format!(
            "{}: the smarthost password must be one line without spaces",
            file.display()
        )));
    }
    let p = paths.smarthost_auth();
    let text = format!("{host} {user}:{pw}\n");
    if std::fs::read(&p).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(());
    }
    atomic::write(&p, text.as_bytes(), 0o600).map_err(ferr(&p))
}

/// How often the relay's default route is checked and pinned to the host network.
pub const PIN_EVERY: Duration = Duration::from_secs(30);

/// Creates (network, volume, container) and starts the relay if needed — again when its
/// settings changed — and then waits until Postfix and OpenDKIM answer; its container name,
/// and whether it was (re)started now.
pub async fn ensure(
    rt: &dyn Runtime,
    host: &HostConfig,
    cfg: &MailConfig,
    paths: &Paths,
) -> Result<(String, bool), MailError> {
    prepare(paths)?;
    write_smarthost_auth(cfg, paths)?;
    let want = container_spec(host, cfg, paths);
    let inv = rt.inventory(&host.namespace).await?;
    let have = inv.containers.iter().find(|c| c.name == want.name);
    let stale = have.is_some_and(|c| c.spec_hash != want.labels[labels::SPEC_HASH]);
    if stale {
        tracing::info!("mail relay settings changed: re-creating its container");
        rt.stop_container(&want.name, Duration::from_secs(30))
            .await?;
        rt.remove_container(&want.name).await?;
    }
    if have.is_none() || stale {
        crate::runtime::host_net::ensure(rt, host).await?;
        let vol = spec::volume_name(&host.namespace, labels::HOST_TENANT, "mail-queue");
        rt.create_volume(&spec::VolumeSpec {
            device: None,
            name: vol,
            labels: spec::owner_labels(&host.namespace, labels::HOST_TENANT),
        })
        .await?;
        rt.create_container(&want).await?;
    }
    let running = have.is_some_and(|c| c.status == crate::runtime::RunStatus::Running);
    if running && !stale {
        return Ok((want.name, false));
    }
    rt.start_container(&want.name).await?;
    for _ in 0..60 {
        let out = rt
            .exec(
                &want.name,
                &["test", "-S", "/run/opendkim/opendkim.sock"],
                None,
            )
            .await;
        let status = rt.exec(&want.name, &["postfix", "status"], None).await;
        if out.is_ok_and(|o| o.exit_code == 0) && status.is_ok_and(|o| o.exit_code == 0) {
            return Ok((want.name, true));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(MailError::NotReady)
}

/// Stops and removes the relay once no tenant sends mail (its queue volume stays).
pub async fn retire(rt: &dyn Runtime, ns: &str) -> Result<(), MailError> {
    let name = container_name(ns);
    let inv = rt.inventory(ns).await?;
    if inv.containers.iter().any(|c| c.name == name) {
        rt.stop_container(&name, Duration::from_secs(30)).await?;
        rt.remove_container(&name).await?;
        tracing::info!("mail relay stopped: no tenant sends mail");
    }
    Ok(())
}

/// Removes a purged tenant's keys and records.
pub fn purge(paths: &Paths, tenant: &str) -> Result<(), MailError> {
    for dir in [paths.keys(tenant), paths.records(tenant)] {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(ferr(&dir)(e)),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_runs_hardened_and_is_never_published() {
        let mut host = crate::fixtures::host();
        let f: crate::spec::host::MailFile =
            serde_yaml::from_str("{smarthost: \"10.9.9.9:25\"}").unwrap();
        let cfg = crate::desired::mail::build(&f, None, &|p| p.to_path_buf()).unwrap();
        host.mail = Some(cfg.clone());
        let paths = Paths {
            root: "/s/host/mail".into(),
        };
        let c = container_spec(&host, &cfg, &paths);
        assert!(c.no_new_privileges && c.read_only_rootfs && c.publish.is_none());
        assert_eq!(c.cap_drop, vec!["ALL".to_string()]);
        assert!(
            c.env
                .contains(&"BERTH_MAIL_RELAYHOST=[10.9.9.9]:25".to_string())
        );
        assert!(
            c.mounts
                .iter()
                .all(|m| m.read_only || m.target == "/var/spool/postfix")
        );
        assert!(!c.mounts.iter().any(|m| m.source.contains("docker.sock")));
        let again = container_spec(&host, &cfg, &paths);
        assert_eq!(c.labels[labels::SPEC_HASH], again.labels[labels::SPEC_HASH]);
    }
}
