//! The engine's share of the CPU. Starting a container costs the engine (dockerd, containerd,
//! the shim, runc, the engine's own iptables calls) about 0.7 s of CPU on a host with a few
//! hundred tenant networks. A wake storm makes the engine start containers back to back, and a
//! daemon started by hand or by an init without cgroups runs in the root CPU group, where each
//! of its threads weighs as much as all tenant containers together. The awake tenants and the
//! edge then wait behind it (BENCHMARKS, "A wake storm", runs 6 and 7).
//!
//! With `engine.cpu_weight` and/or `engine.cpu_max`, the agent moves the engine's programs
//! (dockerd, containerd, the container shims, docker-proxy; by name, and only those in the root
//! group) into a group of that weight and that quota (at most so many cores, whatever else is
//! idle: a weight only counts when the CPU is contended, and on two cores the engine's bursts
//! still took the cores from the awake tenants). The engine is the peer of the engine's socket and must be dockerd: with socket
//! activation the peer is the service manager, which is never moved. An engine a service
//! manager placed (systemd's `docker.service`) is left where it is: the weight belongs in its
//! unit (`systemd/docker.service.d/berth-cpu.conf`).

use std::{
    io,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum EngineCpuError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("engine process {0} has no CPU cgroup (neither a v1 cpu controller nor v2)")]
    NoCpuGroup(u32),
    #[error(
        "the engine's socket is held by {comm:?} (process {pid}), not the engine: with socket \
         activation, set the weight in the engine's unit (CPUWeight=)"
    )]
    NotTheEngine { pid: u32, comm: String },
    #[error("{0}: no cpu controller is mounted there")]
    NoController(String),
}

/// Where the host's processes and CPU cgroups are seen (`/proc`, `/sys/fs/cgroup`), the
/// name of the group the engine goes to, and the engine's programs by process name (`comm`;
/// a trailing `*` matches a prefix). The first names the engine itself.
pub struct Cgroups {
    pub proc: PathBuf,
    pub root: PathBuf,
    pub group: String,
    pub programs: Vec<String>,
}

impl Default for Cgroups {
    fn default() -> Self {
        Cgroups {
            proc: "/proc".into(),
            root: "/sys/fs/cgroup".into(),
            group: "berth-engine".into(),
            programs: ["dockerd", "containerd", "containerd-shim*", "docker-proxy"]
                .map(String::from)
                .into(),
        }
    }
}

/// The process on the other end of a unix socket: the engine answering on `socket`.
pub fn engine_pid(socket: &Path) -> io::Result<u32> {
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    peer_pid(&s)
}

fn peer_pid(s: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given; the fd is open.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // 0: the peer is outside this process's PID namespace.
    u32::try_from(cred.pid)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| io::Error::other("the socket's peer has no process id in this namespace"))
}

/// A process's CPU cgroup: v1 (the hierarchy with the `cpu` controller) or v2 (unified).
#[derive(Debug, PartialEq)]
enum CpuGroup {
    V1(String),
    V2(String),
}

impl CpuGroup {
    fn path(&self) -> &str {
        match self {
            CpuGroup::V1(p) | CpuGroup::V2(p) => p,
        }
    }
}

fn cpu_group(proc: &Path, pid: u32) -> Option<CpuGroup> {
    let text = std::fs::read_to_string(proc.join(pid.to_string()).join("cgroup")).ok()?;
    let mut v2 = None;
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        if ctrls.split(',').any(|c| c == "cpu") {
            return Some(CpuGroup::V1(path.to_string()));
        }
        if ctrls.is_empty() {
            v2 = Some(CpuGroup::V2(path.to_string()));
        }
    }
    v2
}

fn comm(proc: &Path, pid: u32) -> Option<String> {
    let c = std::fs::read_to_string(proc.join(pid.to_string()).join("comm")).ok()?;
    Some(c.trim_end_matches('\n').to_string())
}

fn is_program(cg: &Cgroups, comm: &str) -> bool {
    cg.programs.iter().any(|p| match p.strip_suffix('*') {
        Some(prefix) => comm.starts_with(prefix),
        None => comm == p,
    })
}

/// An engine program still in the root CPU group, checked again just before it is moved.
fn movable(cg: &Cgroups, pid: u32) -> bool {
    comm(&cg.proc, pid).is_some_and(|c| is_program(cg, &c))
        && cpu_group(&cg.proc, pid).is_some_and(|g| g.path() == "/")
}

/// The engine's programs (by name, whoever started them) still in the root CPU group. Tenant
/// processes are never among them: they live in their containers' groups.
fn engine_processes(cg: &Cgroups) -> Vec<u32> {
    let mut out: Vec<u32> = std::fs::read_dir(&cg.proc)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid > 1 && movable(cg, pid))
        .collect();
    out.sort_unstable();
    out
}

/// What the engine's group gets: a weight (cgroup v2 scale, 1–10000; v1 shares are scaled
/// from it; None: a plain process's 100) and a quota in thousandths of a core (None: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub weight: Option<u16>,
    pub max_millicores: Option<u32>,
}

/// The CFS period the quota is a share of, in µs (the kernel's default).
const PERIOD_US: u64 = 100_000;

impl Limits {
    /// The control files of a group and what is written to each, for cgroup v1 or v2. Both are
    /// always written, so a setting taken out of the config is undone at the next start.
    fn files(&self, v1: bool) -> Vec<(&'static str, String)> {
        let weight = u64::from(self.weight.unwrap_or(100));
        let quota = self
            .max_millicores
            .map(|m| (u64::from(m) * PERIOD_US / 1000).max(1000));
        match v1 {
            true => vec![
                ("cpu.shares", (weight * 1024 / 100).max(2).to_string()),
                ("cpu.cfs_period_us", PERIOD_US.to_string()),
                (
                    "cpu.cfs_quota_us",
                    quota.map_or("-1".into(), |q| q.to_string()),
                ),
            ],
            false => vec![
                ("cpu.weight", weight.to_string()),
                (
                    "cpu.max",
                    format!(
                        "{} {PERIOD_US}",
                        quota.map_or("max".into(), |q| q.to_string())
                    ),
                ),
            ],
        }
    }
}

/// Gives the engine answering as process `engine` the CPU `limits`, with its other programs.
/// Returns what it did, in a sentence, or None when there was nothing left to move.
pub fn place(cg: &Cgroups, engine: u32, limits: Limits) -> Result<Option<String>, EngineCpuError> {
    let name = comm(&cg.proc, engine).unwrap_or_default();
    if engine <= 1 || cg.programs.first().is_none_or(|p| *p != name) {
        return Err(EngineCpuError::NotTheEngine {
            pid: engine,
            comm: name,
        });
    }
    let group = cpu_group(&cg.proc, engine).ok_or(EngineCpuError::NoCpuGroup(engine))?;
    if group.path() != "/" && group.path() != format!("/{}", cg.group) {
        return Ok(Some(format!(
            "the engine is in {} (its service manager's group): left as it is; set its CPU \
             there (CPUWeight=, CPUQuota=)",
            group.path()
        )));
    }
    let (dir, set) = target(cg, &group, limits)?;
    let moved = engine_processes(cg);
    if moved.is_empty() {
        return Ok(None);
    }
    let (mut done, mut failed) = (0, None);
    for pid in moved {
        // Checked again: a process may have exited or changed since the scan.
        if !movable(cg, pid) {
            continue;
        }
        match write(&dir.join("cgroup.procs"), &pid.to_string()) {
            Ok(()) => done += 1,
            Err(e) => failed = failed.or(Some(e.to_string())),
        }
    }
    let mut said = format!(
        "{done} engine processes moved to {} with {set}",
        dir.display()
    );
    if let Some(e) = failed {
        said.push_str(&format!("; some could not be moved ({e})"));
    }
    Ok(Some(said))
}

/// The group's directory (made if missing, under a mounted cpu controller), with the limits
/// written to its control files; and what was written, in words.
fn target(
    cg: &Cgroups,
    group: &CpuGroup,
    limits: Limits,
) -> Result<(PathBuf, String), EngineCpuError> {
    let parent = match group {
        CpuGroup::V1(_) => cg.root.join("cpu"),
        CpuGroup::V2(_) => cg.root.clone(),
    };
    let controller = match group {
        CpuGroup::V1(_) => parent.join("cpu.shares"),
        CpuGroup::V2(_) => parent.join("cgroup.subtree_control"),
    };
    if !controller.exists() {
        return Err(EngineCpuError::NoController(parent.display().to_string()));
    }
    if matches!(group, CpuGroup::V2(_)) {
        write(&controller, "+cpu")?;
    }
    let dir = parent.join(&cg.group);
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(EngineCpuError::Io {
                path: dir.display().to_string(),
                source: e,
            });
        }
        _ => {}
    }
    let files = limits.files(matches!(group, CpuGroup::V1(_)));
    for (file, value) in &files {
        write(&dir.join(file), value)?;
    }
    let set = files
        .iter()
        .map(|(f, v)| format!("{f} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok((dir, set))
}

/// One value written to an existing control file (never created: a missing one is an error).
fn write(path: &Path, value: &str) -> Result<(), EngineCpuError> {
    use std::io::Write;
    let err = |source| EngineCpuError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

#[cfg(test)]
#[path = "engine_cpu_tests.rs"]
mod tests;
