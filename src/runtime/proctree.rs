//! Killing an exec'd command and everything it started, by host PID: the engine has no call to
//! stop an exec, so a timed-out job's processes are found in /proc and sent SIGKILL. A PID is
//! only a number: the exec may have ended and its PID gone to another process by the time the
//! signal is sent. So only processes still in the container's own cgroup are signalled (a
//! reused PID of a host process, or of another tenant's, never is).

use std::collections::BTreeMap;

/// Parent PID of each process, from `/proc/<pid>/stat` (field 4, after the `(comm)`).
fn parents() -> BTreeMap<i32, i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, ppid_of(&stat)?))
        })
        .collect()
}

/// The parent PID in a stat line; the command name may hold spaces and parentheses.
fn ppid_of(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `root` and all its descendants, parents first.
pub fn tree(root: i32, parents: &BTreeMap<i32, i32>) -> Vec<i32> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| **pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Whether process `pid` is in a cgroup whose path names `container` (Docker's cgroup of a
/// container is `…/docker-<id>.scope` or `…/docker/<id>`).
fn in_cgroup(pid: i32, container: &str) -> bool {
    !container.is_empty()
        && std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
            .is_ok_and(|c| c.lines().any(|l| l.contains(container)))
}

/// SIGKILL to `root` and its descendants that are in `container`'s cgroup; how many were
/// signalled.
pub fn kill_tree(root: i32, container: &str) -> usize {
    if root <= 1 {
        return 0;
    }
    let pids = tree(root, &parents());
    pids.iter()
        .filter(|p| in_cgroup(**p, container))
        .filter_map(|p| rustix::process::Pid::from_raw(*p))
        .filter(|p| rustix::process::kill_process(*p, rustix::process::Signal::KILL).is_ok())
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_is_the_root_and_every_descendant() {
        let parents = BTreeMap::from([(10, 1), (11, 10), (12, 11), (13, 10), (20, 1)]);
        let mut t = tree(10, &parents);
        t.sort();
        assert_eq!(t, vec![10, 11, 12, 13]);
    }

    #[test]
    fn a_command_name_with_spaces_and_parentheses_is_skipped() {
        assert_eq!(ppid_of("42 (a b) c) S 7 42 42 0"), Some(7));
        assert_eq!(ppid_of("garbage"), None);
    }

    #[test]
    fn a_real_child_is_killed_with_its_own_child() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        let pid = child.id() as i32;
        assert_eq!(
            kill_tree(pid, &"0a".repeat(32)),
            0,
            "a process outside the container's cgroup is never signalled"
        );
        assert!(child.try_wait().unwrap().is_none(), "still running");
        let mine = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let path = mine
            .lines()
            .next()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        assert!(kill_tree(pid, &path) >= 2, "sleep not found as a child");
        let status = child.wait().unwrap();
        assert!(!status.success());
    }
}
