//! Per-instance retry delays: 1 s doubling to 5 min, reset on success, never blocking others.

use std::time::{Duration, Instant};

pub const FIRST_DELAY: Duration = Duration::from_secs(1);
pub const MAX_DELAY: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub failures: u32,
    pub next_attempt: Instant,
}

impl Backoff {
    /// The state after one more failure at `now`.
    pub fn failed(prev: Option<Backoff>, now: Instant) -> Backoff {
        let failures = prev.map_or(1, |b| b.failures + 1);
        Backoff {
            failures,
            next_attempt: now + delay(failures),
        }
    }
}

/// Delay before attempt `failures + 1`.
pub fn delay(failures: u32) -> Duration {
    crate::backoff::Doubling::new(FIRST_DELAY, MAX_DELAY).after(failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_one_second_and_stop_at_five_minutes() {
        let got: Vec<u64> = (1..=12).map(|n| delay(n).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
    }

    #[test]
    fn each_failure_pushes_the_next_attempt_further() {
        let now = Instant::now();
        let a = Backoff::failed(None, now);
        let b = Backoff::failed(Some(a), now);
        assert_eq!(a.next_attempt - now, Duration::from_secs(1));
        assert_eq!(b.next_attempt - now, Duration::from_secs(2));
    }
}
