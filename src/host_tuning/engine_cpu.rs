//! The engine's share of the CPU. Starting a container costs the engine (dockerd, containerd,
//! the shim, runc, the engine's own iptables calls) about 0.7 s of CPU on a host with a few
//! hundred tenant networks. A wake storm makes the engine start containers back to back, and a
//! daemon started by hand or by an init without cgroups runs in the root CPU group, where each
//! of its threads weighs as much as all tenant containers together. The awake tenants and the
//! edge then wait behind it (measured: their p99 3.4× idle; with the engine at weight 10, 1.7×).
//!
//! With `engine.cpu_weight`, the agent moves the engine, its children and the container shims
//! out of the root group into a group of that weight. An engine a service manager placed
//! (systemd's `docker.service`) is left where it is: the weight belongs in its unit
//! (`systemd/docker.service.d/berth-cpu.conf`).

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
}

/// Where the host's processes and CPU cgroups are seen (`/proc`, `/sys/fs/cgroup`), the
/// name of the group the engine goes to, and how the engine's container shims are named
/// (they detach from it, so are found by name).
pub struct Cgroups {
    pub proc: PathBuf,
    pub root: PathBuf,
    pub group: String,
    pub shims: Option<String>,
}

impl Default for Cgroups {
    fn default() -> Self {
        Cgroups {
            proc: "/proc".into(),
            root: "/sys/fs/cgroup".into(),
            group: "berth-engine".into(),
            shims: Some("containerd-shim".into()),
        }
    }
}

/// The process on the other end of a unix socket: the engine answering on `socket`.
pub fn engine_pid(socket: &Path) -> io::Result<u32> {
    let s = std::os::unix::net::UnixStream::connect(socket)?;
    peer_pid(&s)
}

fn peer_pid(s: &std::os::unix::net::UnixStream) -> io::Result<u32> {
    let cred = rustix::net::sockopt::socket_peercred(s)?;
    u32::try_from(cred.pid.as_raw_nonzero().get())
        .map_err(|_| io::Error::other("the peer has no process id"))
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

/// The engine, every process descended from it, and the container shims, each still in the
/// root CPU group.
fn engine_processes(proc: &Path, engine: u32, shims: Option<&str>) -> Vec<u32> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(proc).into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // comm may hold spaces and parentheses: the fields after it follow the last ')'.
        let comm = stat.get(stat.find('(').map_or(0, |i| i + 1)..stat.rfind(')').unwrap_or(0));
        let ppid = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        all.push((pid, ppid.unwrap_or(0), comm.unwrap_or("").to_string()));
    }
    let mut chosen = vec![engine];
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid, comm) in &all {
            let shim = shims.is_some_and(|s| comm.starts_with(s));
            let wanted = chosen.contains(ppid) || shim;
            if wanted && !chosen.contains(pid) {
                chosen.push(*pid);
                grew = true;
            }
        }
    }
    chosen.retain(|&p| cpu_group(proc, p).is_some_and(|g| g.path() == "/"));
    chosen.sort_unstable();
    chosen
}

/// Gives the engine answering as process `engine` the CPU weight `weight` (cgroup v2 scale,
/// 1–10000; v1 shares are scaled from it). Returns what it did, in a sentence, or None when the
/// engine is in that group already (what it starts later is born there).
pub fn place(cg: &Cgroups, engine: u32, weight: u16) -> Result<Option<String>, EngineCpuError> {
    let group = cpu_group(&cg.proc, engine).ok_or(EngineCpuError::NoCpuGroup(engine))?;
    if group.path() == format!("/{}", cg.group) {
        return Ok(None);
    }
    if group.path() != "/" {
        return Ok(Some(format!(
            "the engine is in {} (its service manager's group): left as it is; set its weight \
             there (CPUWeight={weight})",
            group.path()
        )));
    }
    let (dir, file, value) = match group {
        CpuGroup::V1(_) => (
            cg.root.join("cpu").join(&cg.group),
            "cpu.shares",
            (u64::from(weight) * 1024 / 100).max(2),
        ),
        CpuGroup::V2(_) => {
            write(&cg.root.join("cgroup.subtree_control"), "+cpu")?;
            (cg.root.join(&cg.group), "cpu.weight", u64::from(weight))
        }
    };
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| EngineCpuError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    write(&dir.join(file), &value.to_string())?;
    let moved = engine_processes(&cg.proc, engine, cg.shims.as_deref());
    for pid in &moved {
        // A process that exited since the scan is not an error.
        match write(&dir.join("cgroup.procs"), &pid.to_string()) {
            Err(EngineCpuError::Io { source, .. })
                if source.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
            other => other?,
        }
    }
    Ok(Some(format!(
        "{} engine processes (the engine {engine}, its children, the container shims) moved to \
         {} with {file} {value}",
        moved.len(),
        dir.display()
    )))
}

fn write(path: &Path, value: &str) -> Result<(), EngineCpuError> {
    use std::io::Write;
    let err = |source| EngineCpuError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .or_else(|e| match e.kind() {
            io::ErrorKind::NotFound if !path.ends_with("cgroup.subtree_control") => {
                std::fs::File::create(path)
            }
            _ => Err(e),
        })
        .map_err(err)?;
    f.write_all(value.as_bytes()).map_err(err)
}

#[cfg(test)]
#[path = "engine_cpu_tests.rs"]
mod tests;
