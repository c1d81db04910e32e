//! The one backoff: a delay that doubles from a first one up to a cap, as a function of how
//! many times in a row something failed. backon's exponential backoff does the arithmetic; the
//! callers keep their own count (per tenant, per domain, per container), so it is pure.

use backon::{BackoffBuilder, ExponentialBuilder};
use std::time::Duration;

#[derive(Debug, Clone, Copy)]
pub struct Doubling {
    first: Duration,
    cap: Duration,
}

impl Doubling {
    pub const fn new(first: Duration, cap: Duration) -> Doubling {
        Doubling { first, cap }
    }

    /// The wait after `failures` failures in a row: none after none, `first` after one, twice
    /// that after two, …, never more than `cap`.
    pub fn after(&self, failures: u32) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        // Any first delay of a nanosecond or more reaches any cap within 64 doublings.
        let n = failures.min(64) as usize - 1;
        ExponentialBuilder::new()
            .with_min_delay(self.first)
            .with_max_delay(self.cap)
            .without_max_times()
            .build()
            .nth(n)
            .unwrap_or(self.cap)
            .min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_the_first_and_stop_at_the_cap_whatever_the_count() {
        let d = Doubling::new(Duration::from_secs(1), Duration::from_secs(300));
        let got: Vec<u64> = (0..=12).map(|n| d.after(n).as_secs()).collect();
        assert_eq!(
            got,
            vec![0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]
        );
        assert_eq!(d.after(u32::MAX), Duration::from_secs(300));
        let tiny = Doubling::new(Duration::from_nanos(1), Duration::from_secs(3600));
        assert_eq!(tiny.after(u32::MAX), Duration::from_secs(3600));
    }
}
