//! Dashboard sessions: a token typed once at the login form becomes an HttpOnly,
//! SameSite=Strict cookie naming a session held in the agent's memory. The token itself stays
//! in memory and is checked again on every request, so a revoked or expired token ends its
//! sessions at once. Each session has its own CSRF token, which every form carries.

use axum::http::{HeaderMap, header};
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

pub const COOKIE: &str = "berth_session";
/// A session ends this long after login, whatever its use.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// At most this many sessions of one principal (one token) live at once; its oldest goes
/// first, so logging in again and again never ends anyone else's session.
pub const PER_PRINCIPAL: usize = 8;
/// At most this many sessions live at once; past it, the oldest of whichever principal holds
/// the most goes.
const MAX: usize = 4096;

#[derive(Clone)]
pub struct Session {
    pub token: String,
    /// Whose it is: the token's prefix (or the host token's name).
    pub owner: String,
    pub csrf: String,
    created: Instant,
    /// A message for the next page ("backup 2026… created"), shown once.
    pub flash: Option<String>,
}

#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).expect("the operating system's random source");
    hex::encode(b)
}

impl Sessions {
    /// A new session for `token` of principal `owner`; returns its id (the cookie's value).
    pub fn open(&self, token: String, owner: String) -> String {
        let id = random_hex(32);
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.created.elapsed() < LIFETIME);
        let count =
            |map: &HashMap<String, Session>, o: &str| map.values().filter(|s| s.owner == o).count();
        let victim = if count(&map, &owner) >= PER_PRINCIPAL {
            Some(owner.clone())
        } else if map.len() >= MAX {
            map.values()
                .map(|s| s.owner.as_str())
                .max_by_key(|o| count(&map, o))
                .map(str::to_string)
        } else {
            None
        };
        if let Some(o) = victim
            && let Some(oldest) = map
                .iter()
                .filter(|(_, s)| s.owner == o)
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        let session = Session {
            token,
            owner,
            csrf: random_hex(32),
            created: Instant::now(),
            flash: None,
        };
        map.insert(id.clone(), session);
        id
    }

    pub fn get(&self, id: &str) -> Option<Session> {
        let mut map = self.map.lock().expect("sessions lock");
        match map.get(id) {
            Some(s) if s.created.elapsed() < LIFETIME => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// Takes the session's flash message, if any.
    pub fn take_flash(&self, id: &str) -> Option<String> {
        self.map
            .lock()
            .expect("sessions lock")
            .get_mut(id)?
            .flash
            .take()
    }

    pub fn flash(&self, id: &str, msg: String) {
        if let Some(s) = self.map.lock().expect("sessions lock").get_mut(id) {
            s.flash = Some(msg);
        }
    }

    pub fn close(&self, id: &str) {
        self.map.lock().expect("sessions lock").remove(id);
    }
}

/// The session id the browser sent, if it looks like one of ours.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, v)| *k == COOKIE && v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(|(_, v)| v.to_string())
}

/// The `Set-Cookie` value for a session (`Secure` when served over TLS).
pub fn set_cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    )
}

pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A form post from another site: its `Origin` (sent by every current browser on a POST)
/// names a different host than the one it was sent to.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let origin_host = url::Url::parse(origin).ok().and_then(|u| {
        u.host_str().map(|h| match u.port() {
            Some(p) => format!("{h}:{p}"),
            None => h.to_string(),
        })
    });
    origin_host.as_deref() != Some(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn only_a_well_formed_session_cookie_is_read() {
        let mut h = HeaderMap::new();
        let id = "a".repeat(64);
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={id}")).unwrap(),
        );
        assert_eq!(cookie(&h), Some(id));
        for bad in ["../etc", "", "zz", &"g".repeat(64)] {
            h.insert(
                header::COOKIE,
                HeaderValue::from_str(&format!("{COOKIE}={bad}")).unwrap(),
            );
            assert_eq!(cookie(&h), None, "{bad:?}");
        }
    }

    #[test]
    fn a_post_from_another_origin_is_cross_site() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8300"));
        assert!(!cross_site(&h), "no Origin: a same-site browser or a tool");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8300"),
        );
        assert!(!cross_site(&h));
        for other in ["http://evil.example", "http://127.0.0.1:8301", "null"] {
            h.insert(header::ORIGIN, HeaderValue::from_str(other).unwrap());
            assert!(cross_site(&h), "{other}");
        }
    }

    #[test]
    fn sessions_end_at_logout_and_carry_their_flash_once() {
        let s = Sessions::default();
        let id = s.open("bth_x_y".into(), "bth_x".into());
        let got = s.get(&id).unwrap();
        assert_eq!(got.token, "bth_x_y");
        assert_eq!(got.csrf.len(), 64);
        s.flash(&id, "done".into());
        assert_eq!(s.take_flash(&id).as_deref(), Some("done"));
        assert_eq!(s.take_flash(&id), None);
        s.close(&id);
        assert!(s.get(&id).is_none());
    }

    #[test]
    fn logging_in_again_and_again_ends_only_ones_own_oldest_sessions() {
        let s = Sessions::default();
        let operator = s.open("op".into(), "api.token_file".into());
        let first = s.open("bth_a_1".into(), "bth_a".into());
        let mut last = String::new();
        for _ in 0..2000 {
            last = s.open("bth_a_1".into(), "bth_a".into());
        }
        assert!(s.get(&operator).is_some(), "the operator's session lives");
        assert!(s.get(&first).is_none(), "the flooder's oldest went");
        assert!(s.get(&last).is_some());
        let held = s.map.lock().unwrap();
        assert_eq!(
            held.values().filter(|x| x.owner == "bth_a").count(),
            PER_PRINCIPAL
        );
    }
}
