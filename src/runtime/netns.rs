//! Each tenant container's own network namespace, sealed when berth starts it: the egress
//! policy as iptables rules inside the namespace (the tenant holds no NET_ADMIN to change
//! them) and IPv6 switched off, so the policy holds at every moment even while the host's
//! chains are flushed, reloaded or not yet back after a reboot. Tenant containers carry no
//! restart policy: only berth starts them, and it seals each one before it answers that the
//! start is done (a container it cannot seal is killed). Berth's own containers attached to
//! tenant networks (the mail relay, the shared database servers) get their default route
//! pinned to the host network's gateway, whatever network Docker picked, and the relay's
//! per-client connection limits enforced by the kernel in its namespace.

use super::{RuntimeError, labels};
use crate::egress::policy::{self, Attached};
use bollard::{Docker, query_parameters::InspectContainerOptions};
use std::{collections::HashMap, net::Ipv4Addr, process::Stdio};
use tokio::{io::AsyncWriteExt, process::Command};

/// Why a container's namespace could not be sealed (or berth's own container pinned).
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "its namespace is not visible to berth (neither {sandbox} nor process {pid} of this \
         container: berth runs in a mount or PID namespace of its own)"
    )]
    NotVisible { sandbox: String, pid: u32 },
    #[error("{0} is berth's own network namespace")]
    OwnNamespace(String),
    #[error("{path}: {source}")]
    Namespace {
        path: String,
        source: std::io::Error,
    },
    #[error("{program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    /// The script or program ran and failed: its standard error.
    #[error("{0}")]
    Refused(String),
    #[error("sealing took over {0:?}")]
    TooSlow(std::time::Duration),
    #[error("client limits {0:?} are not numbers")]
    LimitsNotNumbers(String),
    #[error("client limits {0:?}: want PORT CONNECTIONS PER_MINUTE")]
    LimitsShape(String),
    #[error(transparent)]
    Allow(crate::desired::Invalid),
    #[error("{0}")]
    Join(#[from] tokio::task::JoinError),
}

/// What sealing needs from the host: set by the agent when its firewall works.
#[derive(Debug, Clone, Default)]
pub struct Sealing {
    /// The host's DNS resolvers (the engine's embedded DNS forwards from the namespace).
    pub resolvers: Vec<Ipv4Addr>,
    /// The host network's name (`<ns>-_host`): berth's own containers route through it.
    pub host_network: String,
}

/// A running container as sealing sees it.
struct Seen {
    /// Its network namespace as a path berth can open, or why there is none.
    netns: Result<String, SealError>,
    labels: HashMap<String, String>,
    nets: Vec<(String, Attached)>,
}

impl Seen {
    /// A tenant's container (anything of a tenant but berth's own host-level services).
    fn is_tenant(&self) -> bool {
        self.labels
            .get(labels::TENANT)
            .is_some_and(|t| t != labels::HOST_TENANT)
    }
}

fn failed(name: &str) -> impl FnOnce(SealError) -> RuntimeError + '_ {
    move |source| RuntimeError::Seal {
        name: name.into(),
        source,
    }
}

/// The namespace by the engine's own handle on it (`SandboxKey`, stable for the container's
/// life), else by its process when that is the container's (its cgroup names the container):
/// never a PID reused by another process since. Refused when it is berth's own namespace.
fn namespace_of(id: &str, sandbox: Option<&str>, pid: u32) -> Result<String, SealError> {
    use std::os::unix::fs::MetadataExt;
    let by_pid = format!("/proc/{pid}/ns/net");
    let path = match sandbox.filter(|k| std::path::Path::new(k).exists()) {
        Some(k) => k.to_string(),
        None => {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            if id.is_empty() || !cgroup.contains(id) {
                return Err(SealError::NotVisible {
                    sandbox: sandbox.unwrap_or("a sandbox key").into(),
                    pid,
                });
            }
            by_pid
        }
    };
    let ino = |p: &str| std::fs::metadata(p).map(|m| (m.dev(), m.ino()));
    match (ino(&path), ino("/proc/self/ns/net")) {
        (Ok(a), Ok(b)) if a != b => Ok(path),
        (Ok(_), Ok(_)) => Err(SealError::OwnNamespace(path)),
        (Err(source), _) | (_, Err(source)) => Err(SealError::Namespace { path, source }),
    }
}

async fn inspect(docker: &Docker, name: &str) -> Result<Option<Seen>, RuntimeError> {
    let info = docker
        .inspect_container(name, None::<InspectContainerOptions>)
        .await
        .map_err(|e| super::docker::call_err("container", name, e))?;
    let pid = info.state.as_ref().and_then(|s| s.pid).unwrap_or(0);
    let Ok(pid @ 1..) = u32::try_from(pid) else {
        return Ok(None);
    };
    let labels = info.config.and_then(|c| c.labels).unwrap_or_default();
    let settings = info.network_settings.unwrap_or_default();
    let netns = namespace_of(
        info.id.as_deref().unwrap_or_default(),
        settings.sandbox_key.as_deref(),
        pid,
    );
    let nets = settings
        .networks
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(net, ep)| {
            let ip: Ipv4Addr = ep.ip_address.as_deref()?.parse().ok()?;
            let gateway = ep.gateway.as_deref()?.parse().ok()?;
            let len = u8::try_from(ep.ip_prefix_len?).ok()?;
            let subnet = ipnet::Ipv4Net::new(ip, len).ok()?.trunc();
            Some((net, Attached { subnet, gateway }))
        })
        .collect();
    Ok(Some(Seen {
        netns,
        labels,
        nets,
    }))
}

/// How long one command in a namespace may take (iptables waits at most 5 s for its lock).
const LIMIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Runs `script` with `sh` inside the network namespace at `netns`, `input` on its stdin.
async fn in_namespace(netns: &str, script: &str, input: &str) -> Result<(), SealError> {
    let run = async {
        let mut child = Command::new("nsenter")
            .arg(format!("--net={netns}"))
            .args(["--", "sh", "-ec", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(nsenter)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input.as_bytes()).await.map_err(nsenter)?;
        }
        let out = child.wait_with_output().await.map_err(nsenter)?;
        match out.status.success() {
            true => Ok(()),
            false => Err(refused(&out.stderr)),
        }
    };
    tokio::time::timeout(LIMIT, run)
        .await
        .map_err(|_| SealError::TooSlow(LIMIT))?
}

fn nsenter(source: std::io::Error) -> SealError {
    SealError::Spawn {
        program: "nsenter",
        source,
    }
}

fn refused(stderr: &[u8]) -> SealError {
    SealError::Refused(String::from_utf8_lossy(stderr).trim().to_string())
}

/// IPv6 off on every interface (and checked), then the rules in one commit.
const SEAL: &str = "if [ -d /proc/sys/net/ipv6 ]; then \
    for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do echo 1 > \"$f\"; done; \
    for f in /proc/sys/net/ipv6/conf/*/disable_ipv6; do \
    [ \"$(cat \"$f\")\" = 1 ] || { echo \"IPv6 stays on: $f\" >&2; exit 1; }; done; fi; \
    exec iptables-restore -w 5";

/// The host's own IPv4 addresses, for the seal's drop rules.
pub fn host_addresses() -> Result<Vec<Ipv4Addr>, SealError> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .map_err(|source| SealError::Spawn {
            program: "ip -4 addr",
            source,
        })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(SealError::Refused(format!("ip -4 addr: {}", stderr.trim())));
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace().skip_while(|w| *w != "inet");
            w.nth(1)?.split('/').next()?.parse().ok()
        })
        .filter(|a: &Ipv4Addr| !a.is_loopback())
        .collect())
}

/// Seals `name` when it is a tenant's container; a tenant container berth cannot seal is an
/// error (the caller stops it). Berth's own containers get their route pinned and the relay
/// its client limits; a failure there is logged, not fatal.
pub(super) async fn seal(docker: &Docker, s: &Sealing, name: &str) -> Result<(), RuntimeError> {
    let Some(seen) = inspect(docker, name).await? else {
        return Ok(());
    };
    if !seen.is_tenant() {
        let pinned = match &seen.netns {
            Ok(netns) => own(&seen, netns, s).await,
            Err(e) => Err(SealError::Refused(e.to_string())),
        };
        if let Err(e) = pinned {
            tracing::warn!(container = name, error = %e, "berth's own container: route or limits not set");
        }
        return Ok(());
    }
    let netns = match &seen.netns {
        Ok(p) => p,
        Err(why) => {
            unsealable(&why.to_string());
            return Ok(());
        }
    };
    let allow: Vec<policy::Allow> = seen
        .labels
        .get(labels::EGRESS)
        .map(|a| a.split_whitespace().map(policy::parse_allow).collect())
        .unwrap_or(Ok(vec![]))
        .map_err(|e| failed(name)(SealError::Allow(e)))?;
    let nets: Vec<Attached> = seen.nets.iter().map(|(_, a)| *a).collect();
    let host = tokio::task::spawn_blocking(host_addresses)
        .await
        .map_err(|e| failed(name)(e.into()))?
        .map_err(failed(name))?;
    let rules = policy::seal(&nets, &allow, &s.resolvers, &host);
    in_namespace(netns, SEAL, &rules)
        .await
        .map_err(failed(name))
}

/// Berth cannot reach the engine's namespaces at all (it runs in a container of its own):
/// the host's chains are the only layer. Said once.
fn unsealable(why: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(reason = %why, "tenant namespaces cannot be sealed; the host's egress chains alone hold the policy");
    });
}

/// Berth's own container: its default route through the host network when it is on others
/// too, and its client limits when it has them.
async fn own(seen: &Seen, netns: &str, s: &Sealing) -> Result<(), SealError> {
    let host_net = seen.nets.iter().find(|(n, _)| *n == s.host_network);
    if let Some((_, a)) = host_net.filter(|_| seen.nets.len() > 1) {
        let script = format!("ip -4 route replace default via {}", a.gateway);
        in_namespace(netns, &script, "").await?;
    }
    let Some(l) = seen.labels.get(labels::CLIENT_LIMITS) else {
        return Ok(());
    };
    let rules = client_limits(l)?;
    // Installed when missing only: replacing them would reset the rate's counters.
    let script = format!(
        "{} || exec iptables-restore -w 5",
        rules
            .iter()
            .map(|r| format!("iptables -w 5 -C INPUT {r} 2>/dev/null"))
            .collect::<Vec<_>>()
            .join(" && ")
    );
    let text = format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n{}\nCOMMIT\n",
        rules
            .iter()
            .map(|r| format!("-A INPUT {r}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    in_namespace(netns, &script, &text).await
}

/// The rules of a `CLIENT_LIMITS` label (`PORT CONNECTIONS PER_MINUTE`): new connections
/// past either limit, per client address, are dropped.
fn client_limits(label: &str) -> Result<Vec<String>, SealError> {
    let n: Vec<u32> = label
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| SealError::LimitsNotNumbers(label.into()))?;
    let want = || SealError::LimitsShape(label.into());
    let [port, conns, per_min] = n[..] else {
        return Err(want());
    };
    if !(1..=65535).contains(&port) || conns == 0 || per_min == 0 {
        return Err(want());
    }
    let syn = format!("-p tcp -m tcp --dport {port} --tcp-flags FIN,SYN,RST,ACK SYN");
    Ok(vec![
        format!(
            "{syn} -m connlimit --connlimit-above {conns} --connlimit-mask 32 --connlimit-saddr -j DROP"
        ),
        format!(
            "{syn} -m hashlimit --hashlimit-above {per_min}/min --hashlimit-burst {} \
             --hashlimit-mode srcip --hashlimit-name berth-{port} -j DROP",
            (per_min / 4).max(1)
        ),
    ])
}

/// Restarts the engine no longer counts or paces (tenant containers have no restart policy):
/// berth starting again a container it started before and did not stop, one that exited by
/// itself. Like the engine's policy, a container that keeps exiting within 10 s of its start
/// waits before the next: 10 s after the third, doubling to 5 minutes.
#[derive(Default)]
pub(super) struct Restarts(std::sync::Mutex<HashMap<String, Record>>);

struct Record {
    stopped: bool,
    restarts: u64,
    /// Starts in a row that ran under `SHORT`.
    streak: u32,
    last: std::time::Instant,
}

/// A run shorter than this counts towards the backoff.
pub(super) const SHORT: std::time::Duration = std::time::Duration::from_secs(10);

impl Restarts {
    /// True when starting `name` now is a restart (it exited by itself since berth started it).
    pub(super) fn is_restart(&self, name: &str) -> bool {
        let m = self.0.lock().expect("restarts lock");
        m.get(name).is_some_and(|r| !r.stopped)
    }

    /// True when berth started `name` in the last few seconds (its start event is its own).
    pub(super) fn started_lately(&self, name: &str) -> bool {
        let m = self.0.lock().expect("restarts lock");
        m.get(name)
            .is_some_and(|r| !r.stopped && r.last.elapsed() < std::time::Duration::from_secs(5))
    }

    /// How long `name` must still wait before its next start, if at all.
    pub(super) fn backoff(&self, name: &str) -> Option<std::time::Duration> {
        let m = self.0.lock().expect("restarts lock");
        let r = m.get(name).filter(|r| !r.stopped && r.streak >= 3)?;
        // 10 s after the third short run in a row, doubling to 5 min.
        let wait = crate::backoff::Doubling::new(SHORT, std::time::Duration::from_secs(300))
            .after(r.streak - 2);
        wait.checked_sub(r.last.elapsed()).filter(|w| !w.is_zero())
    }

    /// `name` was started; `ran`: how long its previous run lasted, when this is a restart.
    pub(super) fn started(&self, name: &str, ran: Option<std::time::Duration>) {
        let mut m = self.0.lock().expect("restarts lock");
        let now = std::time::Instant::now();
        let r = m.entry(name.into()).or_insert(Record {
            stopped: true,
            restarts: 0,
            streak: 0,
            last: now,
        });
        if !r.stopped {
            r.restarts += 1;
            r.streak = match ran {
                Some(d) if d >= SHORT => 0,
                _ => r.streak + 1,
            };
        } else {
            r.streak = 0;
        }
        r.stopped = false;
        r.last = now;
    }

    pub(super) fn stopped(&self, name: &str) {
        if let Some(r) = self.0.lock().expect("restarts lock").get_mut(name) {
            r.stopped = true;
        }
    }

    pub(super) fn removed(&self, name: &str) {
        self.0.lock().expect("restarts lock").remove(name);
    }

    pub(super) fn count(&self, name: &str) -> u64 {
        self.0
            .lock()
            .expect("restarts lock")
            .get(name)
            .map_or(0, |r| r.restarts)
    }
}

#[cfg(test)]
mod tests {
    use super::{Restarts, SHORT, client_limits};

    #[test]
    fn client_limits_are_two_drops_of_new_connections_and_nonsense_is_refused() {
        let r = client_limits("587 20 240").unwrap();
        assert!(r[0].contains("--dport 587") && r[0].contains("--connlimit-above 20"));
        assert!(r[1].contains("--hashlimit-above 240/min --hashlimit-burst 60"));
        for bad in [
            "",
            "587",
            "587 20",
            "0 20 240",
            "587 0 240",
            "x 1 2",
            "587 20 240 1",
        ] {
            assert!(client_limits(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_start_after_an_exit_of_its_own_is_a_restart_and_after_a_stop_is_not() {
        let r = Restarts::default();
        let long = Some(std::time::Duration::from_secs(60));
        r.started("a", None);
        r.stopped("a");
        assert!(!r.is_restart("a"));
        r.started("a", None);
        assert_eq!(r.count("a"), 0, "a wake after sleep is no restart");
        assert!(r.is_restart("a"));
        r.started("a", long);
        r.started("a", long);
        assert_eq!(r.count("a"), 2);
        assert_eq!(r.backoff("a"), None, "long runs never wait");
        r.removed("a");
        r.started("a", None);
        assert_eq!(r.count("a"), 0, "a new container starts at zero");
    }

    #[test]
    fn a_container_that_keeps_exiting_at_once_waits_before_its_next_start() {
        let r = Restarts::default();
        r.started("a", None);
        for _ in 0..2 {
            r.started("a", Some(std::time::Duration::from_secs(1)));
            assert_eq!(
                r.backoff("a"),
                None,
                "the first short runs go again at once"
            );
        }
        r.started("a", Some(std::time::Duration::from_secs(1)));
        let wait = r.backoff("a").expect("the third waits");
        assert!(
            wait > std::time::Duration::from_secs(9) && wait <= SHORT,
            "{wait:?}"
        );
        r.stopped("a");
        assert_eq!(r.backoff("a"), None, "stopped by berth: no backoff");
    }
}
