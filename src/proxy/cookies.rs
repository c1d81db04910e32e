//! Cookies of tenants mounted by path under one shared domain (`sites.example.com/acme`). They
//! share an origin, so the browser would send each one's cookies to all the others. The edge
//! scopes them: a `Set-Cookie` from a mounted tenant gets its `Path` put under the tenant's
//! prefix and loses any `Domain` (host-only), so browsers keep it to that prefix; a request to a
//! mount loses every cookie a *different* mount of that domain set (by name, as seen in their
//! `Set-Cookie`s), and a script's request (`Sec-Fetch-Mode` other than `navigate`) from another
//! mount's page (its `Referer`) loses all its cookies. What this cannot do: one origin's script
//! can still open another mount's pages in a window it controls; tenants that must not trust
//! each other belong on their own subdomains (README, "Path mounts share an origin").

use hyper::header::{COOKIE, HeaderMap, HeaderValue, REFERER, SET_COOKIE};
use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

/// Cookie names remembered per shared domain, and the longest remembered.
const NAMES: usize = 1_000;
const NAME_BYTES: usize = 128;

/// Which mounts of each shared domain set which cookie names.
#[derive(Default)]
pub struct Owners(Mutex<HashMap<String, HashMap<String, BTreeSet<String>>>>);

/// `path` (a cookie's `Path`, or None) as it must be for the mount `seg`: under `/seg`.
/// `strip`: the app sees paths without its prefix, so its paths are put under it.
fn scoped_path(path: Option<&str>, seg: &str, strip: bool) -> String {
    let prefix = format!("/{seg}");
    let under = |p: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    match path.filter(|p| p.starts_with('/')) {
        // Already under the prefix (an app that reads X-Forwarded-Prefix): as it is.
        Some(p) if under(p) => p.to_string(),
        Some(p) if strip && p != "/" => format!("{prefix}{p}"),
        _ => prefix,
    }
}

/// A `Set-Cookie` value with its `Path` scoped to the mount and no `Domain`; and its name.
pub fn scope_set_cookie(v: &str, seg: &str, strip: bool) -> (String, String) {
    let mut parts = v.split(';');
    let pair = parts.next().unwrap_or("").trim();
    let name = pair
        .split_once('=')
        .map_or(pair, |(n, _)| n)
        .trim()
        .to_string();
    // A `__Host-` cookie must keep `Path=/` and no `Domain`, or browsers drop it; it stays as
    // it is (host-only already), and other mounts' requests lose it by name.
    if name.starts_with("__Host-") {
        return (v.to_string(), name);
    }
    let mut path = None;
    let mut rest = Vec::new();
    for a in parts {
        let a = a.trim();
        let key = a
            .split_once('=')
            .map_or(a, |(k, _)| k)
            .trim()
            .to_ascii_lowercase();
        match key.as_str() {
            "path" => path = a.split_once('=').map(|(_, p)| p.trim().to_string()),
            "domain" => {}
            _ if !a.is_empty() => rest.push(a.to_string()),
            _ => {}
        }
    }
    let path = scoped_path(path.as_deref(), seg, strip);
    let mut out = format!("{pair}; Path={path}");
    for a in rest {
        out.push_str("; ");
        out.push_str(&a);
    }
    (out, name)
}

impl Owners {
    /// Scopes every `Set-Cookie` of a response from mount `seg` of `host`, and remembers
    /// their names as that mount's.
    pub fn scope_response(&self, h: &mut HeaderMap, host: &str, seg: &str, strip: bool) {
        let values: Vec<String> = h
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect();
        if values.is_empty() {
            return;
        }
        h.remove(SET_COOKIE);
        let mut owners = self.0.lock().expect("cookie owners lock");
        let names = owners.entry(host.to_string()).or_default();
        for v in values {
            let (scoped, name) = scope_set_cookie(&v, seg, strip);
            let room = names.len() < NAMES || names.contains_key(&name);
            if room && name.len() <= NAME_BYTES {
                names.entry(name).or_default().insert(seg.to_string());
            }
            if let Ok(v) = HeaderValue::from_str(&scoped) {
                h.append(SET_COOKIE, v);
            }
        }
    }

    /// Removes from a request to mount `seg` of `host` the cookies other mounts set, and all
    /// cookies of a script's request from another mount's page.
    pub fn filter_request(&self, h: &mut HeaderMap, host: &str, seg: &str) {
        if !h.contains_key(COOKIE) {
            return;
        }
        if from_another_mount(h, host, seg) {
            h.remove(COOKIE);
            return;
        }
        let owners = self.0.lock().expect("cookie owners lock");
        let Some(names) = owners.get(host) else {
            return;
        };
        let foreign = |name: &str| names.get(name).is_some_and(|segs| !segs.contains(seg));
        let kept: Vec<String> = h
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|kv| !kv.is_empty())
            .filter(|kv| !foreign(kv.split_once('=').map_or(*kv, |(n, _)| n).trim()))
            .map(str::to_string)
            .collect();
        h.remove(COOKIE);
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
        {
            h.insert(COOKIE, v);
        }
    }
}

/// A script's request (fetch, XHR, a subresource) whose page is on this host but outside the
/// mount `seg`, or that hides its page (no `Referer`): possibly another tenant's page asking on
/// its own behalf.
fn from_another_mount(h: &HeaderMap, host: &str, seg: &str) -> bool {
    let mode = h.get("sec-fetch-mode").and_then(|v| v.to_str().ok());
    if mode.is_none_or(|m| m == "navigate") {
        return false;
    }
    let Some(referer) = h
        .get(REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| url::Url::parse(r).ok())
    else {
        return true;
    };
    let prefix = format!("/{seg}");
    let inside = referer.path() == prefix || referer.path().starts_with(&format!("{prefix}/"));
    referer.host_str() == Some(host) && !inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_paths_go_under_the_mount_and_domains_go() {
        let cases = [
            (
                "sid=1; Path=/; HttpOnly",
                true,
                "sid=1; Path=/acme; HttpOnly",
            ),
            (
                "sid=1; path=/wp-admin; Secure",
                true,
                "sid=1; Path=/acme/wp-admin; Secure",
            ),
            ("sid=1", true, "sid=1; Path=/acme"),
            (
                "sid=1; Domain=sites.test; Path=/",
                false,
                "sid=1; Path=/acme",
            ),
            ("sid=1; Path=/acme/x", false, "sid=1; Path=/acme/x"),
            ("sid=1; Path=/acme/x", true, "sid=1; Path=/acme/x"),
            (
                "__Host-csrf=1; Path=/; Secure",
                true,
                "__Host-csrf=1; Path=/; Secure",
            ),
            ("sid=1; Path=/acmecorp", false, "sid=1; Path=/acme"),
            ("sid=1; Path=../b", true, "sid=1; Path=/acme"),
            (
                "a=b=c; SameSite=Lax",
                true,
                "a=b=c; Path=/acme; SameSite=Lax",
            ),
        ];
        for (given, strip, want) in cases {
            assert_eq!(scope_set_cookie(given, "acme", strip).0, want, "{given}");
        }
        assert_eq!(scope_set_cookie("a=b=c", "x", true).1, "a");
    }

    fn cookie_header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn a_mount_never_receives_the_cookies_another_mount_set() {
        let o = Owners::default();
        let mut resp = HeaderMap::new();
        resp.append(SET_COOKIE, HeaderValue::from_static("acme_sid=a; Path=/"));
        resp.append(SET_COOKIE, HeaderValue::from_static("lang=en; Path=/"));
        o.scope_response(&mut resp, "sites.test", "acme", true);
        let set: Vec<_> = resp.get_all(SET_COOKIE).iter().collect();
        assert_eq!(set, ["acme_sid=a; Path=/acme", "lang=en; Path=/acme"]);
        let mut resp = HeaderMap::new();
        resp.append(SET_COOKIE, HeaderValue::from_static("lang=fr"));
        o.scope_response(&mut resp, "sites.test", "globex", true);
        let mut req = cookie_header("acme_sid=a; lang=fr; mine=1");
        o.filter_request(&mut req, "sites.test", "globex");
        assert_eq!(req[COOKIE], "lang=fr; mine=1", "acme's cookie removed");
        let mut req = cookie_header("acme_sid=a; lang=en");
        o.filter_request(&mut req, "sites.test", "acme");
        assert_eq!(req[COOKIE], "acme_sid=a; lang=en");
        let mut req = cookie_header("acme_sid=a");
        o.filter_request(&mut req, "other.test", "globex");
        assert_eq!(
            req[COOKIE], "acme_sid=a",
            "another domain's mounts are not this one's"
        );
    }

    #[test]
    fn a_script_on_another_mounts_page_sends_no_cookies() {
        let o = Owners::default();
        let req = |mode: &str, referer: &str| {
            let mut h = cookie_header("globex_sid=g");
            h.insert("sec-fetch-mode", HeaderValue::from_str(mode).unwrap());
            h.insert(REFERER, HeaderValue::from_str(referer).unwrap());
            o.filter_request(&mut h, "sites.test", "globex");
            h.contains_key(COOKIE)
        };
        assert!(!req("cors", "https://sites.test/acme/evil.html"));
        assert!(!req("no-cors", "https://sites.test/"));
        assert!(
            req("cors", "https://sites.test/globex/app.js"),
            "its own page"
        );
        assert!(
            req("navigate", "https://sites.test/acme/"),
            "a link followed"
        );
        assert!(
            req("cors", "https://elsewhere.test/acme/"),
            "another site: SameSite's job"
        );
    }
}
