//! Refusals (a wrong or missing token, a route a token may not use) are what an anonymous
//! flood makes, so they are kept apart from the rows of changes and counted rather than
//! written one by one: the first refusal of a client (its address, or its /64 for IPv6),
//! actor, action and tenant in a minute is written as it happens; the rest of that minute are
//! one summary row with their `count`, written when the minute ends. At most [`KEYS`] clients
//! are counted apart; past that, every other refusal joins one shared tally. So the refusal
//! stream grows by at most two rows per key and minute, whatever the request rate.

use super::Event;
use std::collections::{HashMap, hash_map::Entry};

/// How long one tally runs.
pub const WINDOW_MS: u64 = 60_000;
/// Clients (with actor, action and tenant) counted apart at once.
pub const KEYS: usize = 1024;
const OVERFLOW: &str = "*";

struct Window {
    start: u64,
    /// Refusals after the one written.
    more: u64,
    sample: Event,
}

#[derive(Default)]
pub struct Tally {
    windows: HashMap<String, Window>,
    swept: u64,
}

impl Tally {
    /// The rows to write for refusal `e` at `now`: summaries of tallies that have ended, and
    /// `e` itself when it is the first of its kind this minute.
    pub fn add(&mut self, e: &Event, now: u64) -> Vec<Event> {
        let e = &clipped(e);
        let mut out = self.sweep(now, false);
        let mut key = key_of(e);
        if !self.windows.contains_key(&key) && self.windows.len() >= KEYS {
            key = OVERFLOW.to_string();
        }
        let overflow = key == OVERFLOW;
        match self.windows.entry(key) {
            Entry::Occupied(mut w) => w.get_mut().more += 1,
            Entry::Vacant(v) => {
                let mut sample = e.clone();
                if overflow {
                    // Many clients, actors and tenants: the row names none of them.
                    sample.client = None;
                    sample.tenant = None;
                    sample.tenant_id = None;
                    sample.actor = super::Actor {
                        kind: "anonymous".into(),
                        name: "*".into(),
                        prefix: None,
                    };
                    sample.target = Some(format!(
                        "refusals from past the {KEYS} clients counted apart"
                    ));
                }
                out.push(sample.clone());
                v.insert(Window {
                    start: now,
                    more: 0,
                    sample,
                });
            }
        }
        out
    }

    /// Summaries of the tallies that have ended by `now` (of every tally with `all`); looked
    /// at no more than once a second unless `all`.
    pub fn sweep(&mut self, now: u64, all: bool) -> Vec<Event> {
        if !all && now.saturating_sub(self.swept) < 1000 {
            return Vec::new();
        }
        self.swept = now;
        let ended: Vec<String> = self
            .windows
            .iter()
            .filter(|(_, w)| all || now.saturating_sub(w.start) >= WINDOW_MS)
            .map(|(k, _)| k.clone())
            .collect();
        let mut out: Vec<Event> = ended
            .into_iter()
            .filter_map(|k| self.windows.remove(&k))
            .filter(|w| w.more > 0)
            .map(|w| summary(w, now))
            .collect();
        out.sort_by_key(|e| e.time);
        out
    }
}

fn summary(w: Window, now: u64) -> Event {
    Event {
        time: now,
        request_id: None,
        count: Some(w.more),
        since: Some(w.start),
        error: Some(format!(
            "{} more refusals like the first since {}",
            w.more, w.start
        )),
        ..w.sample
    }
}

/// `e` with what a caller chose cut short: a refusal's row (and the tally holding it) is
/// small whatever the request was.
fn clipped(e: &Event) -> Event {
    let cut = |s: &str, n: usize| s.chars().take(n).collect::<String>();
    let mut e = e.clone();
    e.tenant = e.tenant.map(|t| cut(&t, 64));
    e.target = e.target.map(|t| cut(&t, 200));
    e.error = e.error.map(|t| cut(&t, 300));
    e.actor.name = cut(&e.actor.name, 64);
    e
}

/// What makes two refusals "the same": who, from where, at what.
fn key_of(e: &Event) -> String {
    format!(
        "{}|{}|{}|{}|{}|{}",
        e.actor.kind,
        e.actor.name,
        e.actor.prefix.as_deref().unwrap_or(""),
        e.client
            .as_deref()
            .map_or_else(String::new, super::client_network),
        e.action,
        e.tenant.as_deref().unwrap_or(""),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(client: &str) -> Event {
        let mut e = Event::system("x", None, "auth.login", Err("wrong token".into()));
        e.result = "denied".into();
        e.actor = crate::audit::Actor {
            kind: "anonymous".into(),
            name: "-".into(),
            prefix: None,
        };
        e.client = Some(client.into());
        e
    }

    #[test]
    fn a_flood_from_one_client_is_one_row_then_one_summary_a_minute() {
        let mut t = Tally::default();
        let mut rows = Vec::new();
        for i in 0..100_000u64 {
            rows.extend(t.add(&refusal("10.1.2.3"), 1_000_000 + i / 100));
        }
        assert_eq!(rows.len(), 1, "the first only, while the minute runs");
        let later = t.add(&refusal("10.1.2.3"), 1_000_000 + WINDOW_MS + 1);
        assert_eq!(later.len(), 2, "{later:?}");
        assert_eq!(later[0].count, Some(99_999));
        assert_eq!(later[0].since, Some(1_000_000));
        assert_eq!(
            later[1].count, None,
            "a new minute opens with a row of its own"
        );
    }

    #[test]
    fn clients_are_counted_apart_and_ipv6_by_its_slash_64() {
        let mut t = Tally::default();
        let now = 5_000_000;
        assert_eq!(t.add(&refusal("10.0.0.1"), now).len(), 1);
        assert_eq!(t.add(&refusal("10.0.0.2"), now).len(), 1);
        assert_eq!(t.add(&refusal("2001:db8:1:2::1"), now).len(), 1);
        assert_eq!(
            t.add(&refusal("2001:db8:1:2::ffff"), now).len(),
            0,
            "same /64"
        );
        assert_eq!(t.add(&refusal("2001:db8:1:3::1"), now).len(), 1);
        let flushed = t.sweep(now + 10, true);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].count, Some(1));
    }

    #[test]
    fn past_the_key_limit_every_other_client_shares_one_tally() {
        let mut t = Tally::default();
        let now = 9_000_000;
        let mut rows = 0;
        for i in 0..(KEYS as u32 + 50_000) {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            rows += t.add(&refusal(&ip), now).len();
        }
        assert_eq!(
            rows,
            KEYS + 1,
            "one per client counted apart, one for the rest"
        );
        let flushed = t.sweep(now + WINDOW_MS, false);
        assert_eq!(flushed.len(), 1);
        assert_eq!(flushed[0].count, Some(50_000 - 1));
        assert_eq!(flushed[0].client, None);
        assert_eq!(flushed[0].actor.name, "*");
    }

    #[test]
    fn a_refusal_row_is_small_whatever_was_asked() {
        let mut t = Tally::default();
        let mut e = refusal("10.9.9.9");
        e.tenant = Some("x".repeat(60_000));
        e.error = Some("y".repeat(60_000));
        let rows = t.add(&e, 1);
        let bytes = serde_json::to_vec(&rows[0]).unwrap().len();
        assert!(bytes < 1024, "{bytes}");
    }
}
