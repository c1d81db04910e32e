//! Who may call what: every API route with the access it needs and the name its calls are
//! audited under. A route missing here is the operator's alone (default deny), and a test
//! checks that the router and this table list the same routes.

use axum::http::Method;

/// The access a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Only the Unix socket (minting tokens: a leaked token cannot make more).
    Socket,
    /// The operator: the socket or an operator token.
    Operator,
    /// Read access to the route's `{tenant}`.
    Read,
    /// Manage access to the route's `{tenant}`.
    Manage,
    /// Any principal; the handler shows each only its own tenants.
    Any,
}

pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub need: Need,
    /// The audit log's action for calls of this route.
    pub action: &'static str,
}

const fn r(method: Method, path: &'static str, need: Need, action: &'static str) -> Route {
    Route {
        method,
        path,
        need,
        action,
    }
}

use Need::*;

#[rustfmt::skip]
pub const ROUTES: &[Route] = &[
    r(Method::GET, "/v1/agent", Operator, "agent.show"),
    r(Method::POST, "/v1/reconcile", Operator, "reconcile.run"),
    r(Method::GET, "/v1/instances", Any, "instance.list"),
    r(Method::POST, "/v1/instances", Operator, "instance.create"),
    r(Method::GET, "/v1/instances/{tenant}", Read, "instance.show"),
    r(Method::DELETE, "/v1/instances/{tenant}", Operator, "instance.delete"),
    r(Method::PUT, "/v1/instances/{tenant}/state", Manage, "instance.state"),
    r(Method::POST, "/v1/instances/{tenant}/restart", Manage, "instance.restart"),
    r(Method::POST, "/v1/instances/{tenant}/move", Operator, "instance.move"),
    r(Method::PUT, "/v1/instances/{tenant}/parameters", Manage, "instance.parameters"),
    r(Method::POST, "/v1/instances/{tenant}/parameters/preview", Manage, "instance.parameters_preview"),
    r(Method::GET, "/v1/diff", Any, "instance.diff"),
    r(Method::POST, "/v1/previews/add", Operator, "instance.create_preview"),
    r(Method::POST, "/v1/previews/rm", Operator, "instance.delete_preview"),
    r(Method::GET, "/v1/instances/{tenant}/logs", Read, "instance.logs"),
    r(Method::POST, "/v1/instances/{tenant}/domains", Manage, "domain.add"),
    r(Method::POST, "/v1/instances/{tenant}/domains/{domain}/verify", Manage, "domain.verify"),
    r(Method::GET, "/v1/domains", Operator, "domain.list"),
    r(Method::GET, "/v1/certs", Operator, "cert.list"),
    r(Method::POST, "/v1/certs/{domain}/renew", Operator, "cert.renew"),
    r(Method::GET, "/v1/ca", Any, "ca.show"),
    r(Method::GET, "/v1/capacity", Operator, "capacity.show"),
    r(Method::GET, "/v1/images", Operator, "image.list"),
    r(Method::POST, "/v1/images/prune", Operator, "image.prune"),
    r(Method::GET, "/v1/top", Operator, "top.show"),
    r(Method::POST, "/v1/upgrades", Operator, "upgrade.start"),
    r(Method::POST, "/v1/previews/upgrade", Operator, "upgrade.preview"),
    r(Method::GET, "/v1/upgrades/current", Operator, "upgrade.show"),
    r(Method::POST, "/v1/upgrades/current/{action}", Operator, "upgrade.control"),
    r(Method::POST, "/v1/instances/{tenant}/rollback", Operator, "instance.rollback"),
    r(Method::GET, "/v1/instances/{tenant}/backups", Read, "backup.list"),
    r(Method::POST, "/v1/instances/{tenant}/backups", Manage, "backup.create"),
    r(Method::POST, "/v1/instances/{tenant}/backups/{id}/verify", Manage, "backup.verify"),
    r(Method::POST, "/v1/instances/{tenant}/restore", Manage, "backup.restore"),
    r(Method::POST, "/v1/recover", Operator, "host.recover"),
    r(Method::POST, "/v1/instances/{tenant}/handover/prepare", Operator, "move.prepare"),
    r(Method::POST, "/v1/instances/{tenant}/handover/hold", Operator, "move.hold"),
    r(Method::POST, "/v1/instances/{tenant}/handover/forward", Operator, "move.forward"),
    r(Method::POST, "/v1/instances/{tenant}/handover/release", Operator, "move.release"),
    r(Method::POST, "/v1/moves", Operator, "move.receive"),
    r(Method::GET, "/v1/instances/{tenant}/jobs", Read, "job.list"),
    r(Method::GET, "/v1/instances/{tenant}/mail", Read, "mail.show"),
    r(Method::GET, "/v1/instances/{tenant}/mail/dns", Read, "mail.dns"),
    r(Method::GET, "/v1/tokens", Socket, "token.list"),
    r(Method::POST, "/v1/tokens", Socket, "token.create"),
    r(Method::DELETE, "/v1/tokens/{id}", Socket, "token.revoke"),
    r(Method::GET, "/v1/audit", Any, "audit.list"),
    r(Method::GET, "/v1/operations/{id}", Any, "operation.show"),
    r(Method::GET, "/v1/openapi.json", Any, "openapi.show"),
];

/// The table's entry for a matched route.
pub fn lookup(method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|r| r.method == method && r.path == path)
}
