//! When to renew and how long to wait after a failure: pure functions of the clock.

use std::time::{Duration, SystemTime};

/// Backoff after `failures` consecutive failed orders: 1 min doubling, at most 6 h.
pub fn backoff(failures: u32) -> Duration {
    crate::backoff::Doubling::new(Duration::from_secs(60), Duration::from_secs(6 * 3600))
        .after(failures.max(1))
}

/// The moment a certificate should be replaced. With an ARI window from the CA, a point in it
/// (chosen by the caller, e.g. at random); otherwise when a third of the lifetime is left
/// (half, for lifetimes under 10 days).
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    ari: Option<(SystemTime, SystemTime)>,
    pick: f64,
) -> SystemTime {
    if let Some((start, end)) = ari
        && end > start
    {
        let span = end.duration_since(start).unwrap_or_default();
        return start + span.mul_f64(pick.clamp(0.0, 1.0));
    }
    let life = not_after.duration_since(not_before).unwrap_or_default();
    let left = if life < Duration::from_secs(10 * 24 * 3600) {
        life / 2
    } else {
        life / 3
    };
    not_after.checked_sub(left).unwrap_or(not_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86400);

    #[test]
    fn failed_orders_back_off_from_one_minute_to_six_hours() {
        let table = [
            (1, 60),
            (2, 120),
            (3, 240),
            (6, 1920),
            (9, 15360),
            (10, 6 * 3600),
            (40, 6 * 3600),
        ];
        for (failures, secs) in table {
            assert_eq!(
                backoff(failures),
                Duration::from_secs(secs),
                "after {failures}"
            );
        }
    }

    #[test]
    fn renewal_happens_with_a_third_of_the_lifetime_left_or_half_for_short_lived_certs() {
        let t0 = SystemTime::UNIX_EPOCH + 1000 * DAY;
        assert_eq!(renew_at(t0, t0 + 90 * DAY, None, 0.0), t0 + 60 * DAY);
        assert_eq!(renew_at(t0, t0 + 6 * DAY, None, 0.0), t0 + 3 * DAY);
    }

    #[test]
    fn an_ari_window_from_the_ca_takes_precedence() {
        let t0 = SystemTime::UNIX_EPOCH + 1000 * DAY;
        let window = Some((t0 + 10 * DAY, t0 + 12 * DAY));
        assert_eq!(renew_at(t0, t0 + 90 * DAY, window, 0.5), t0 + 11 * DAY);
    }
}
