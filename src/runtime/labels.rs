//! Label keys that mark Docker objects as berth's, and name their tenant and service.

/// The agent namespace (host config `namespace`); objects without it are never touched.
pub const NAMESPACE: &str = "io.berth.namespace";
pub const TENANT: &str = "io.berth.tenant";
pub const SERVICE: &str = "io.berth.service";
/// Hash of the full container spec; a different hash means the container is recreated.
pub const SPEC_HASH: &str = "io.berth.spec-hash";
pub const TEMPLATE: &str = "io.berth.template";
pub const VERSION: &str = "io.berth.version";
/// Tenant label value of host-level objects (the shared database server).
pub const HOST_TENANT: &str = "_host";
/// The service name of the host's mail relay (a host-owned container on tenant networks).
pub const MAIL_SERVICE: &str = "mail";
/// The shared PostgreSQL server's service name (its container is the host tenant's).
pub const POSTGRES_SERVICE: &str = "postgres";
/// The shared MariaDB server's service name (its container is the host tenant's).
pub const MARIADB_SERVICE: &str = "mariadb";
/// On tenant containers only: the plan's egress allows (space-separated), sealed into the
/// container's network namespace when berth starts it (see `netns`).
pub const EGRESS: &str = "io.berth.egress";
/// On berth's own listeners (the mail relay): `PORT CONNECTIONS PER_MINUTE`, the most
/// connections one client address holds and opens a minute, enforced by the kernel inside the
/// container's namespace (see `netns`); past them its new connections are dropped.
pub const CLIENT_LIMITS: &str = "io.berth.client-limits";
