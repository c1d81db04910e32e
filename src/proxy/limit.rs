//! A tenant's limits at the edge: a token bucket for its request rate and a count of requests
//! in flight to its app, so one tenant's flood is refused with 429 before it reaches a target
//! pool or raises anyone else's latency.

use crate::desired::quota::EdgeQuota;
use prometheus_client::metrics::gauge::Gauge;
use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// Why a request was refused with 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    /// The bucket is empty; a token is back after this long.
    Rate { retry_after: Duration },
    /// As many requests as the plan allows are in flight already.
    Connections,
}

struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn full(rate: u32, burst: u32, now: Instant) -> Bucket {
        Bucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes a token, or says how long until one is back.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.rate;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

#[derive(Default)]
struct State {
    quota: EdgeQuota,
    bucket: Option<Bucket>,
}

#[derive(Default)]
pub struct Limiter {
    state: Mutex<State>,
}

/// A request counted in flight; dropping it (when the response body ends) frees the place.
pub struct Slot {
    active: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.active.dec();
    }
}

impl Limiter {
    /// Installs the plan's limits; a changed rate or burst starts from a full bucket.
    pub fn set(&self, quota: EdgeQuota) {
        let mut s = self.state.lock().expect("limiter lock");
        if s.quota == quota {
            return;
        }
        s.bucket = quota
            .rate
            .map(|r| Bucket::full(r, quota.burst.unwrap_or(r), Instant::now()));
        s.quota = quota;
    }

    pub fn quota(&self) -> EdgeQuota {
        self.state.lock().expect("limiter lock").quota
    }

    /// Admits one request against the rate, then against the requests in flight, counted in
    /// `active` (the tenant's in-flight gauge: the metric is the count the limit reads).
    pub fn admit(&self, active: &Gauge) -> Result<Slot, Limited> {
        let max = {
            let mut s = self.state.lock().expect("limiter lock");
            if let Some(b) = &mut s.bucket {
                b.take(Instant::now())
                    .map_err(|retry_after| Limited::Rate { retry_after })?;
            }
            s.quota.connections
        };
        let before = active.inc();
        if max.is_some_and(|m| before >= i64::from(m)) {
            active.dec();
            return Err(Limited::Connections);
        }
        Ok(Slot {
            active: active.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: Option<u32>, burst: Option<u32>, connections: Option<u32>) -> Limiter {
        let l = Limiter::default();
        l.set(EdgeQuota {
            rate,
            burst,
            connections,
            max_body: None,
        });
        l
    }

    #[test]
    fn a_bucket_admits_its_burst_then_refuses_until_it_refills() {
        let t0 = Instant::now();
        let mut b = Bucket::full(10, 3, t0);
        assert!((0..3).all(|_| b.take(t0).is_ok()));
        let wait = b.take(t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.1).abs() < 1e-9, "{wait:?}");
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());
        // A long quiet spell refills to the burst, never past it.
        let later = t0 + Duration::from_secs(60);
        assert!((0..3).all(|_| b.take(later).is_ok()));
        assert!(b.take(later).is_err());
    }

    #[test]
    fn requests_in_flight_past_the_limit_are_refused_and_freed_places_reused() {
        let l = limiter(None, None, Some(2));
        let g = Gauge::default();
        let a = l.admit(&g).unwrap();
        let _b = l.admit(&g).unwrap();
        assert_eq!(l.admit(&g).err(), Some(Limited::Connections));
        assert_eq!(g.get(), 2);
        drop(a);
        assert!(l.admit(&g).is_ok());
    }

    #[test]
    fn without_limits_everything_is_admitted_and_still_counted() {
        let l = limiter(None, None, None);
        let g = Gauge::default();
        let slots: Vec<_> = (0..1000).map(|_| l.admit(&g).unwrap()).collect();
        assert_eq!(g.get(), 1000);
        drop(slots);
        assert_eq!(g.get(), 0);
    }

    #[test]
    fn the_rate_refuses_with_the_wait_and_a_new_plan_refills_the_bucket() {
        let l = limiter(Some(1), None, None);
        let g = Gauge::default();
        drop(l.admit(&g).unwrap());
        assert!(matches!(l.admit(&g), Err(Limited::Rate { .. })));
        l.set(EdgeQuota {
            rate: Some(100),
            ..EdgeQuota::default()
        });
        assert!(l.admit(&g).is_ok());
    }
}
