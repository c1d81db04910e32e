//! Who may wake sleeping tenants: each client (an IPv4 address, an IPv6 /64) may wake at most
//! `proxy.client_wakes_per_minute` different sleeping tenants a minute; its further requests
//! to sleeping tenants get 429 with Retry-After, and wake nothing. Requests to a tenant the
//! client already woke this minute (or to any tenant awake) are not counted. At most
//! [`CLIENTS`] clients are counted apart in a minute; past that, new clients are let through
//! uncounted (refusing them would lock every new visitor out), and what bounds a flood from
//! many addresses is the host's: `proxy.max_wakes` at once, and no wake past its memory.

use prometheus_client::metrics::counter::Counter;
use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

const WINDOW: Duration = Duration::from_secs(60);
/// Clients counted apart in one minute.
pub const CLIENTS: usize = 65_536;

pub struct WakeClients {
    per_minute: u32,
    window: Mutex<Window>,
    /// Refusals, shown as `berth_wakes_client_limited_total` (set by the sleeper).
    pub limited: std::sync::OnceLock<Counter>,
}

struct Window {
    start: Instant,
    clients: HashMap<String, BTreeSet<String>>,
}

impl WakeClients {
    pub fn new(per_minute: u32) -> WakeClients {
        WakeClients {
            per_minute,
            window: Mutex::new(Window {
                start: Instant::now(),
                clients: HashMap::new(),
            }),
            limited: std::sync::OnceLock::new(),
        }
    }

    /// Whether `client` may wake sleeping `tenant` now; else how long until it may.
    pub fn allow(&self, client: std::net::IpAddr, tenant: &str) -> Result<(), Duration> {
        let key = crate::audit::client_network(&client.to_canonical().to_string());
        let mut w = self.window.lock().expect("wake clients lock");
        if w.start.elapsed() >= WINDOW {
            w.clients.clear();
            w.start = Instant::now();
        }
        let retry = WINDOW.saturating_sub(w.start.elapsed());
        let full = w.clients.len() >= CLIENTS;
        let woken = match w.clients.get_mut(&key) {
            None if full => return Ok(()),
            None => Some(w.clients.entry(key).or_default()),
            Some(set) => Some(set),
        };
        match woken {
            Some(set) if set.contains(tenant) => Ok(()),
            Some(set) if set.len() < self.per_minute as usize => {
                set.insert(tenant.to_string());
                Ok(())
            }
            _ => {
                if let Some(c) = self.limited.get() {
                    c.inc();
                }
                Err(retry)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_wakes_its_share_of_sleepers_a_minute_and_then_nothing() {
        let w = WakeClients::new(3);
        let a: std::net::IpAddr = "10.0.0.1".parse().unwrap();
        for t in ["s1", "s2", "s3"] {
            assert!(w.allow(a, t).is_ok());
        }
        assert!(
            w.allow(a, "s1").is_ok(),
            "again to one it woke: not counted"
        );
        let retry = w.allow(a, "s4").unwrap_err();
        assert!(
            retry <= WINDOW && retry > Duration::from_secs(50),
            "{retry:?}"
        );
        assert!(
            w.allow("10.0.0.2".parse().unwrap(), "s4").is_ok(),
            "another client"
        );
        let v6 = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        for t in ["s5", "s6", "s7"] {
            assert!(w.allow(v6("2001:db8:0:1::1"), t).is_ok());
        }
        assert!(
            w.allow(v6("2001:db8:0:1::ffff"), "s8").is_err(),
            "the same /64"
        );
    }
}
