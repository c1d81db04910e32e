//! Kernel settings a host needs for many tenants. Each tenant has its own bridge, and the host
//! talks to every tenant's containers (probes, the edge through docker-proxy), so the kernel
//! keeps a neighbour (ARP) entry per container it reaches. The default table holds 1,024
//! (`gc_thresh3`); past that, new connections stall for seconds ("neighbor table overflow"),
//! which at ~1,000 tenants showed as probes timing out. The agent raises the thresholds to
//! what its subnet pool can hold, never lowers them, and says what it did.

pub mod engine_cpu;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct TuningError {
    path: String,
    source: std::io::Error,
}

/// gc_thresh1..3 for a pool of `tenants`: two entries per tenant (web and database
/// containers) with room to spare, at least the kernel's defaults.
pub fn wanted(tenants: u32) -> [u64; 3] {
    let hard = (u64::from(tenants) * 2 + 1024).clamp(1024, 1 << 20);
    [(hard / 4).max(128), (hard / 2).max(512), hard]
}

/// Raises the IPv4 neighbour table thresholds under `proc_sys` (`/proc/sys`) to `wanted`;
/// returns a line saying what changed, or None when they were high enough.
pub fn ensure_neighbour_table(
    proc_sys: &Path,
    tenants: u32,
) -> Result<Option<String>, TuningError> {
    let dir = proc_sys.join("net/ipv4/neigh/default");
    let mut changed = Vec::new();
    for (n, want) in wanted(tenants).into_iter().enumerate() {
        let path = dir.join(format!("gc_thresh{}", n + 1));
        let err = |source| TuningError {
            path: path.display().to_string(),
            source,
        };
        let now: u64 = std::fs::read_to_string(&path)
            .map_err(err)?
            .trim()
            .parse()
            .unwrap_or(0);
        if now < want {
            std::fs::write(&path, want.to_string()).map_err(err)?;
            changed.push(format!("gc_thresh{} {now} → {want}", n + 1));
        }
    }
    Ok((!changed.is_empty()).then(|| changed.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_raised_to_the_pool_and_never_lowered() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("net/ipv4/neigh/default");
        std::fs::create_dir_all(&d).unwrap();
        for (n, v) in [(1, "128"), (2, "512"), (3, "100000")] {
            std::fs::write(d.join(format!("gc_thresh{n}")), v).unwrap();
        }
        let said = ensure_neighbour_table(dir.path(), 4096).unwrap().unwrap();
        assert_eq!(said, "gc_thresh1 128 → 2304, gc_thresh2 512 → 4608");
        let read = |n| std::fs::read_to_string(d.join(format!("gc_thresh{n}"))).unwrap();
        assert_eq!(
            (read(1), read(2), read(3)),
            ("2304".into(), "4608".into(), "100000".into())
        );
        assert_eq!(ensure_neighbour_table(dir.path(), 4096).unwrap(), None);
        assert!(ensure_neighbour_table(&dir.path().join("missing"), 1).is_err());
    }
}
