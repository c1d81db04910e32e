//! The route table: host → tenant gate, alias redirect, or path mounts on a shared domain.
//! Built whole by `sync` and swapped atomically; a lookup is one hash probe (plus one for the
//! first path segment), so its cost does not grow with the number of tenants.

use super::gate::Gate;
use std::{collections::HashMap, sync::Arc};

#[derive(Default)]
pub struct RouteTable {
    hosts: HashMap<String, HostRoute>,
}

pub enum HostRoute {
    Tenant(Arc<Gate>),
    /// An alias: redirect to the tenant's primary host.
    Alias {
        primary: String,
    },
    /// A shared domain: first path segment → mount.
    Shared(HashMap<String, Mount>),
}

pub struct Mount {
    pub gate: Arc<Gate>,
    pub strip: bool,
}

/// What a request resolves to.
pub enum Route<'a> {
    Tenant {
        gate: &'a Arc<Gate>,
        /// `/segment` of a path mount, and whether to strip it.
        prefix: Option<(&'a str, bool)>,
    },
    Redirect {
        host: &'a str,
    },
}

impl RouteTable {
    pub fn insert(&mut self, host: String, route: HostRoute) {
        self.hosts.insert(host, route);
    }

    pub fn mount(&mut self, host: &str, segment: &str, mount: Mount) {
        let entry = self
            .hosts
            .entry(host.to_string())
            .or_insert_with(|| HostRoute::Shared(HashMap::new()));
        if let HostRoute::Shared(m) = entry {
            m.insert(segment.to_string(), mount);
        }
    }

    /// Hosts with a route: the only ones redirected to HTTPS or given certificates.
    pub fn knows(&self, host: &str) -> bool {
        self.hosts.contains_key(host)
    }

    pub fn lookup<'a>(&'a self, host: &str, path: &str) -> Option<Route<'a>> {
        match self.hosts.get(host)? {
            HostRoute::Tenant(gate) => Some(Route::Tenant { gate, prefix: None }),
            HostRoute::Alias { primary } => Some(Route::Redirect { host: primary }),
            HostRoute::Shared(mounts) => {
                let rest = path.strip_prefix('/')?;
                let seg = rest.split(['/', '?']).next().unwrap_or_default();
                let (key, m) = mounts.get_key_value(seg)?;
                Some(Route::Tenant {
                    gate: &m.gate,
                    prefix: Some((key.as_str(), m.strip)),
                })
            }
        }
    }
}

/// The path the app sees for a mount: `/acme/x?q` → `/x?q` when stripping, unchanged otherwise.
pub fn rewrite_path(path_and_query: &str, segment: &str, strip: bool) -> String {
    if !strip {
        return path_and_query.to_string();
    }
    let rest = &path_and_query[1 + segment.len()..];
    if rest.is_empty() || rest.starts_with('?') {
        format!("/{rest}")
    } else {
        rest.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        let mut t = RouteTable::default();
        t.insert(
            "acme.example.com".into(),
            HostRoute::Tenant(Gate::new("acme")),
        );
        t.insert(
            "www.acme.example.com".into(),
            HostRoute::Alias {
                primary: "acme.example.com".into(),
            },
        );
        t.mount(
            "shared.example.com",
            "globex",
            Mount {
                gate: Gate::new("globex"),
                strip: true,
            },
        );
        t.mount(
            "shared.example.com",
            "initech",
            Mount {
                gate: Gate::new("initech"),
                strip: false,
            },
        );
        t
    }

    fn tenant_of(t: &RouteTable, host: &str, path: &str) -> Option<String> {
        match t.lookup(host, path)? {
            Route::Tenant { gate, .. } => Some(gate.tenant.clone()),
            Route::Redirect { host } => Some(format!("-> {host}")),
        }
    }

    #[test]
    fn hosts_aliases_and_path_mounts_resolve_to_their_tenant() {
        let t = table();
        let cases = [
            ("acme.example.com", "/anything", Some("acme")),
            ("www.acme.example.com", "/", Some("-> acme.example.com")),
            ("shared.example.com", "/globex/", Some("globex")),
            ("shared.example.com", "/globex", Some("globex")),
            ("shared.example.com", "/globex?x=1", Some("globex")),
            ("shared.example.com", "/initech/a/b", Some("initech")),
            ("shared.example.com", "/globexx/", None),
            ("shared.example.com", "/", None),
            ("unknown.example.com", "/", None),
        ];
        for (host, path, want) in cases {
            assert_eq!(tenant_of(&t, host, path).as_deref(), want, "{host}{path}");
        }
    }

    #[test]
    fn stripped_prefixes_leave_a_rooted_path() {
        assert_eq!(rewrite_path("/acme/x/y?q=1", "acme", true), "/x/y?q=1");
        assert_eq!(rewrite_path("/acme", "acme", true), "/");
        assert_eq!(rewrite_path("/acme?q", "acme", true), "/?q");
        assert_eq!(rewrite_path("/acme/x", "acme", false), "/acme/x");
    }
}
