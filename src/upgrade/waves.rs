//! Which tenants an upgrade takes and in what waves: pure functions, tested with tables.

use std::str::FromStr;

/// `--batch`: a number of tenants, or a share of the selected fleet.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema,
)]
pub enum Batch {
    Count(usize),
    Percent(u32),
}

/// A `--batch` that is neither a count nor a share.
#[derive(Debug, PartialEq, thiserror::Error)]
#[error("batch {0:?} is not a count (5) or a share (10%)")]
pub struct BadBatch(String);

impl FromStr for Batch {
    type Err = BadBatch;
    fn from_str(s: &str) -> Result<Batch, BadBatch> {
        let bad = || BadBatch(s.to_string());
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<u32>() {
                Ok(n) if (1..=100).contains(&n) => Ok(Batch::Percent(n)),
                _ => Err(bad()),
            },
            None => match s.trim().parse::<usize>() {
                Ok(n) if n >= 1 => Ok(Batch::Count(n)),
                _ => Err(bad()),
            },
        }
    }
}

impl Batch {
    /// Tenants per wave for a fleet of `n` (at least one).
    pub fn size(self, n: usize) -> usize {
        match self {
            Batch::Count(c) => c.max(1),
            Batch::Percent(p) => (n * p as usize).div_ceil(100).max(1),
        }
    }
}

/// `--tenants`: comma-separated names or `prefix*` patterns; None selects every tenant.
pub fn selected(selector: Option<&str>, tenant: &str) -> bool {
    let Some(sel) = selector else { return true };
    sel.split(',')
        .map(str::trim)
        .any(|p| match p.strip_suffix('*') {
            Some(prefix) => tenant.starts_with(prefix),
            None => p == tenant,
        })
}

/// The canary wave (its first `canary` tenants) then waves of the batch size, in name order.
pub fn waves(tenants: &[String], canary: usize, batch: Batch) -> Vec<Vec<String>> {
    let mut sorted = tenants.to_vec();
    sorted.sort();
    let canary = canary.min(sorted.len());
    let (first, rest) = sorted.split_at(canary);
    let mut out = Vec::new();
    if !first.is_empty() {
        out.push(first.to_vec());
    }
    let size = batch.size(sorted.len());
    out.extend(rest.chunks(size).map(<[String]>::to_vec));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("t{i:02}")).collect()
    }

    #[test]
    fn the_canary_goes_first_then_batches_of_the_asked_size() {
        let table: [(usize, usize, &str, Vec<usize>); 6] = [
            (10, 1, "3", vec![1, 3, 3, 3]),
            (10, 0, "4", vec![4, 4, 2]),
            (10, 2, "50%", vec![2, 5, 3]),
            (3, 5, "1", vec![3]),
            (0, 1, "2", vec![]),
            (200, 1, "10%", [vec![1], vec![20; 9], vec![19]].concat()),
        ];
        for (n, canary, batch, sizes) in table {
            let w = waves(&names(n), canary, batch.parse().unwrap());
            let got: Vec<usize> = w.iter().map(Vec::len).collect();
            assert_eq!(got, sizes, "{n} tenants, canary {canary}, batch {batch}");
            assert_eq!(w.concat().len(), n, "every tenant exactly once");
        }
    }

    #[test]
    fn batch_sizes_are_checked() {
        for bad in ["0", "0%", "101%", "x", "-1", ""] {
            assert!(bad.parse::<Batch>().is_err(), "{bad:?}");
        }
        assert_eq!("25%".parse::<Batch>(), Ok(Batch::Percent(25)));
    }

    #[test]
    fn selectors_take_names_and_prefixes() {
        let table = [
            (None, "acme", true),
            (Some("acme,globex"), "globex", true),
            (Some("acme"), "acme2", false),
            (Some("shop-*"), "shop-1", true),
            (Some("shop-*, acme"), "acme", true),
            (Some("shop-*"), "acme", false),
        ];
        for (sel, t, want) in table {
            assert_eq!(selected(sel, t), want, "{sel:?} {t}");
        }
    }
}
