//! Validates app templates: references between sections, safety rules, versions.

use super::{Invalid, params, render};
use crate::spec::{
    Loaded, SpecErrors, TemplateSource,
    template::{DatabaseMode, DependsOn, ServiceFile, TemplateFile},
    units,
};
use std::{cmp::Ordering, collections::BTreeMap};

/// Capabilities a template may add back after `cap_drop: ALL`: Docker's default set. Anything
/// else (SYS_ADMIN, NET_ADMIN, SYS_PTRACE …) would let one tenant reach the host or others.
pub const ALLOWED_CAPS: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "NET_RAW",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// A template that passed validation, with its services in start order.
#[derive(Debug)]
pub struct Template {
    pub source: TemplateSource,
    pub order: Vec<String>,
    pub default_version: String,
}

impl Template {
    pub fn file(&self) -> &TemplateFile {
        &self.source.file.value
    }
}

/// Validates one template directory's content; `app` is the directory name.
pub fn validate(app: &str, source: TemplateSource) -> Result<Template, SpecErrors> {
    let f = &source.file;
    let t = &f.value;
    let mut errors = SpecErrors::default();
    let mut err = |field: &str, msg: String| errors.push(f.error_at(field, msg));
    if t.name != app {
        err(
            "name",
            format!("{:?} must equal the directory name {app:?}", t.name),
        );
    }
    if !t.services.contains_key(&t.web.service) {
        err(
            "web.service",
            format!("service {:?} is not defined under services", t.web.service),
        );
    }
    if !t.web.health_path.starts_with('/') {
        err("web.health_path", "must start with /".into());
    }
    check_database(f, &mut err);
    check_mail(f, &mut err);
    check_parameters(t, &mut err);
    for (name, s) in &t.secrets {
        if s.bytes < 16 {
            err(
                &format!("secrets.{name}.bytes"),
                "must be at least 16 (128 bits)".into(),
            );
        }
    }
    let env = render::environment();
    for (name, text) in &source.config_sources {
        if let Err(e) = render::check_syntax(&env, text) {
            err(&format!("configs.{name}"), e.to_string());
        }
    }
    for (name, s) in &t.services {
        check_service(t, name, s, &mut err);
    }
    check_versions(t, &mut err);
    for (name, j) in &t.jobs {
        if !t.services.contains_key(&j.service) {
            err(
                &format!("jobs.{name}.service"),
                format!("service {:?} is not defined", j.service),
            );
        }
        if let Err(e) = super::schedule::parse(&j.schedule) {
            err(&format!("jobs.{name}.schedule"), e.to_string());
        }
        if let Err(e) = super::schedule::timeout_of(j.timeout.as_deref()) {
            err(&format!("jobs.{name}.timeout"), e.to_string());
        }
    }
    let order = start_order(t)
        .map_err(|m| err("services", m.to_string()))
        .unwrap_or_default();
    let default_version = t
        .default_version
        .clone()
        .or_else(|| {
            t.versions
                .keys()
                .max_by(|a, b| compare_versions(a, b))
                .cloned()
        })
        .unwrap_or_default();
    errors.into_result()?;
    Ok(Template {
        source,
        order,
        default_version,
    })
}

/// Docker healthchecks are opt-in and no more frequent than this (each is a runc exec).
pub const MIN_HEALTHCHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

fn check_mail(f: &Loaded<TemplateFile>, err: &mut impl FnMut(&str, String)) {
    let t = &f.value;
    if let Some(m) = &t.mail
        && !t.secrets.contains_key(&m.password_secret)
    {
        err(
            "mail.password_secret",
            format!(
                "secret {:?} is not defined under secrets",
                m.password_secret
            ),
        );
    }
}

fn check_database(f: &Loaded<TemplateFile>, err: &mut impl FnMut(&str, String)) {
    let t = &f.value;
    let Some(db) = &t.database else { return };
    if !t.secrets.contains_key(&db.password_secret) {
        err(
            "database.password_secret",
            format!(
                "secret {:?} is not defined under secrets",
                db.password_secret
            ),
        );
    }
    match (db.mode, &db.service) {
        (DatabaseMode::Sidecar, None) => err(
            "database.service",
            "sidecar mode needs the database service".into(),
        ),
        (_, Some(s)) if !t.services.contains_key(s) => err(
            "database.service",
            format!("service {s:?} is not defined under services"),
        ),
        _ => {}
    }
}

fn check_parameters(t: &TemplateFile, err: &mut impl FnMut(&str, String)) {
    for (name, p) in &t.parameters {
        let field = format!("parameters.{name}");
        if let Some(pat) = &p.pattern
            && let Err(e) = params::compile(pat)
        {
            err(&format!("{field}.pattern"), e.to_string());
        }
        if let Some(d) = &p.default
            && let Err(e) = params::check(p, d)
        {
            err(&format!("{field}.default"), e.to_string());
        }
        if p.kind == crate::spec::template::ParameterType::Enum && p.values.is_empty() {
            err(
                &format!("{field}.values"),
                "an enum needs its values".into(),
            );
        }
    }
}

fn check_service(
    t: &TemplateFile,
    name: &str,
    s: &ServiceFile,
    err: &mut impl FnMut(&str, String),
) {
    let at = |k: &str| format!("services.{name}.{k}");
    if !crate::desired::host::is_dns_label(name) {
        err(
            &format!("services.{name}"),
            "service names are DNS labels (a-z, 0-9, -)".into(),
        );
    }
    for cap in &s.cap_add {
        if !ALLOWED_CAPS.contains(&cap.trim_start_matches("CAP_")) {
            err(
                &at("cap_add"),
                format!("{cap} is not allowed; allowed: {}", ALLOWED_CAPS.join(", ")),
            );
        }
    }
    for (i, v) in s.volumes.iter().enumerate() {
        if let Err(m) = parse_volume(v, &t.volumes) {
            err(&at(&format!("volumes.{i}")), m.to_string());
        }
    }
    for (i, v) in s.tmpfs.iter().enumerate() {
        if !v.starts_with('/') {
            err(
                &at(&format!("tmpfs.{i}")),
                format!("{v:?} must be an absolute path"),
            );
        }
        if let Some(why) = v.split_once(':').and_then(|(_, o)| tmpfs_option_error(o)) {
            err(&at(&format!("tmpfs.{i}")), why);
        }
    }
    for (i, sec) in s.secrets.iter().enumerate() {
        if !t.secrets.contains_key(sec) {
            err(
                &at(&format!("secrets.{i}")),
                format!("secret {sec:?} is not defined under secrets"),
            );
        }
    }
    for (i, c) in s.configs.iter().enumerate() {
        if !t.configs.contains_key(&c.source) {
            err(
                &at(&format!("configs.{i}")),
                format!("config {:?} is not defined under configs", c.source),
            );
        }
        if !c.target.starts_with('/') {
            err(
                &at(&format!("configs.{i}")),
                format!("target {:?} must be an absolute path", c.target),
            );
        }
    }
    for d in depends_on(s) {
        if !t.services.contains_key(&d) {
            err(&at("depends_on"), format!("service {d:?} is not defined"));
        }
    }
    if (!s.secrets.is_empty() || !s.configs.is_empty()) && parse_owner(s.user.as_deref()).is_none()
    {
        err(&at("user"), "a service given secrets or configs runs as root or as a numeric uid[:gid], so berth can own its files".into());
    }
    if let Some(o) = &s.files_owner
        && (o.is_empty() || parse_owner(Some(o)).is_none())
    {
        err(
            &at("files_owner"),
            format!("{o:?} is not a numeric uid[:gid]"),
        );
    }
    for (k, v) in [("stop_grace_period", &s.stop_grace_period)] {
        if let Some(d) = v
            && let Err(m) = units::parse_duration(d).map_err(String::from)
        {
            err(&at(k), m);
        }
    }
    if let Some(h) = &s.healthcheck {
        if let Some(Ok(d)) = h.interval.as_deref().map(units::parse_duration)
            && d < MIN_HEALTHCHECK_INTERVAL
            && !h.disable
        {
            err(
                &at("healthcheck.interval"),
                format!(
                    "{d:?} is below the {MIN_HEALTHCHECK_INTERVAL:?} minimum: Docker runs every check as a process in the container; berth already probes web.health_path and the database itself, so leave healthcheck out unless the image needs it"
                ),
            );
        }
        for (k, v) in [
            ("interval", &h.interval),
            ("timeout", &h.timeout),
            ("start_period", &h.start_period),
        ] {
            if let Some(d) = v
                && let Err(m) = units::parse_duration(d).map_err(String::from)
            {
                err(&at(&format!("healthcheck.{k}")), m);
            }
        }
    }
    if s.resource_share == Some(0) {
        err(&at("resource_share"), "must be at least 1".into());
    }
}

fn check_versions(t: &TemplateFile, err: &mut impl FnMut(&str, String)) {
    if t.versions.is_empty() {
        err("versions", "at least one version is needed".into());
    }
    for (v, ver) in &t.versions {
        for svc in ver.images.keys() {
            if !t.services.contains_key(svc) {
                err(
                    &format!("versions.{v}.images.{svc}"),
                    format!("service {svc:?} is not defined"),
                );
            }
        }
        for (svc, s) in &t.services {
            if s.image.is_none() && !ver.images.contains_key(svc) {
                err(
                    &format!("versions.{v}.images"),
                    format!("no image for service {svc:?}"),
                );
            }
        }
    }
    if let Some(d) = &t.default_version
        && !t.versions.contains_key(d)
    {
        err(
            "default_version",
            format!("version {d:?} is not defined under versions"),
        );
    }
}

/// Why tmpfs options cannot be kept: a size that is not bytes (a share of the host's RAM
/// such as `50%` included), or `nr_blocks`, a second way to size it.
fn tmpfs_option_error(opts: &str) -> Option<String> {
    opts.split(',').find_map(|o| {
        if let Some(v) = o.strip_prefix("size=") {
            return crate::spec::units::parse_bytes(v)
                .err()
                .map(|e| format!("size: {e}; at most the service's memory"));
        }
        o.starts_with("nr_blocks=")
            .then(|| "nr_blocks: give the size as size=<bytes>".to_string())
    })
}

/// `volume:/path[:ro]` → (volume, target, read_only). Host paths are refused.
pub fn parse_volume(
    v: &str,
    declared: &BTreeMap<String, Option<crate::spec::template::VolumeFile>>,
) -> Result<(String, String, bool), Invalid> {
    let parts: Vec<&str> = v.split(':').collect();
    let (vol, target, mode) = match parts.as_slice() {
        [vol, target] => (*vol, *target, ""),
        [vol, target, mode] => (*vol, *target, *mode),
        _ => return Err(Invalid::NotVolume(v.into())),
    };
    if vol.starts_with('/') || vol.starts_with('.') || vol.starts_with('~') {
        return Err(Invalid::HostPath(v.into()));
    }
    if !declared.contains_key(vol) {
        return Err(Invalid::UndeclaredVolume(vol.into()));
    }
    if !target.starts_with('/') {
        return Err(Invalid::RelativeTarget(target.into()));
    }
    match mode {
        "" | "rw" => Ok((vol.into(), target.into(), false)),
        "ro" => Ok((vol.into(), target.into(), true)),
        m => Err(Invalid::BadMode(m.into())),
    }
}

/// uid:gid the service's files must belong to: root, or the numeric `user`.
pub fn parse_owner(user: Option<&str>) -> Option<(u32, u32)> {
    match user {
        None | Some("root") | Some("0") | Some("0:0") => Some((0, 0)),
        Some(u) => {
            let (uid, gid) = u.split_once(':').unwrap_or((u, u));
            Some((uid.parse().ok()?, gid.parse().ok()?))
        }
    }
}

pub fn depends_on(s: &ServiceFile) -> Vec<String> {
    match &s.depends_on {
        None => vec![],
        Some(DependsOn::List(l)) => l.clone(),
        Some(DependsOn::Map(m)) => m.keys().cloned().collect(),
    }
}

/// Services ordered so each comes after what it depends on; a cycle is an error.
fn start_order(t: &TemplateFile) -> Result<Vec<String>, Invalid> {
    let mut order: Vec<String> = Vec::new();
    let mut visiting = Vec::new();
    fn visit(
        t: &TemplateFile,
        n: &str,
        order: &mut Vec<String>,
        visiting: &mut Vec<String>,
    ) -> Result<(), Invalid> {
        if order.iter().any(|o| o == n) {
            return Ok(());
        }
        if visiting.iter().any(|v| v == n) {
            return Err(Invalid::Cycle {
                path: visiting.join(" -> "),
                back_to: n.into(),
            });
        }
        visiting.push(n.to_string());
        if let Some(s) = t.services.get(n) {
            for d in depends_on(s) {
                visit(t, &d, order, visiting)?;
            }
        }
        visiting.pop();
        order.push(n.to_string());
        Ok(())
    }
    for n in t.services.keys() {
        visit(t, n, &mut order, &mut visiting)?;
    }
    Ok(order)
}

/// Compares version names part by part, numerically where both parts are numbers ("10" > "9").
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let split = |s: &str| s.split(['.', '-']).map(String::from).collect::<Vec<_>>();
    for (x, y) in split(a).iter().zip(split(b).iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(i), Ok(j)) => i.cmp(&j),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    split(a).len().cmp(&split(b).len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("10", "9"), Ordering::Greater);
        assert_eq!(compare_versions("5.1.2", "5.1"), Ordering::Greater);
        assert_eq!(compare_versions("1.0", "1.0"), Ordering::Equal);
    }

    #[test]
    fn tmpfs_sizes_that_are_not_bytes_are_refused() {
        assert_eq!(tmpfs_option_error("rw,nosuid,size=1m,uid=999"), None);
        assert_eq!(tmpfs_option_error("rw"), None);
        for bad in [
            "size=50%",
            "rw,size=",
            "size=lots",
            "nr_blocks=100",
            "size=-1m",
        ] {
            assert!(tmpfs_option_error(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn host_path_volumes_are_refused() {
        let declared = BTreeMap::from([("data".to_string(), None)]);
        assert!(
            parse_volume("/var/run/docker.sock:/sock", &declared)
                .unwrap_err()
                .to_string()
                .contains("host path")
        );
        assert_eq!(
            parse_volume("data:/d:ro", &declared),
            Ok(("data".into(), "/d".into(), true))
        );
        assert!(
            parse_volume("other:/d", &declared)
                .unwrap_err()
                .to_string()
                .contains("not declared")
        );
    }

    #[test]
    fn owners_are_root_or_numeric() {
        assert_eq!(parse_owner(None), Some((0, 0)));
        assert_eq!(parse_owner(Some("999:998")), Some((999, 998)));
        assert_eq!(parse_owner(Some("65534")), Some((65534, 65534)));
        assert_eq!(parse_owner(Some("www-data")), None);
    }

    /// The shipped wordpress template with `from` replaced by `to`: its validation error.
    fn wordpress_edited(from: &str, to: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::fixtures::repo_templates().join("wordpress");
        let app = dir.path().join("wordpress");
        std::fs::create_dir_all(&app).unwrap();
        let text = std::fs::read_to_string(repo.join("template.yaml")).unwrap();
        assert!(text.contains(from), "{from}");
        std::fs::write(app.join("template.yaml"), text.replace(from, to)).unwrap();
        let (mut sources, errors) = crate::spec::load_templates(dir.path());
        assert!(errors.is_empty(), "{errors}");
        validate("wordpress", sources.remove("wordpress").unwrap())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn a_files_owner_that_is_not_numeric_is_refused_at_its_line() {
        let e = wordpress_edited("files_owner: \"999:999\"", "files_owner: mysql");
        assert!(
            e.contains("services.db.files_owner")
                && e.contains("\"mysql\" is not a numeric uid[:gid]"),
            "{e}"
        );
        assert!(e.contains("template.yaml:"), "names the file and line: {e}");
    }

    #[test]
    fn a_mail_section_naming_no_secret_of_the_template_is_refused_at_its_line() {
        let e = wordpress_edited(
            "password_secret: mail_password",
            "password_secret: db_root_pw",
        );
        assert!(
            e.contains("template.yaml:")
                && e.contains("mail.password_secret: secret \"db_root_pw\" is not defined"),
            "{e}"
        );
    }

    #[test]
    fn files_owner_owns_the_secret_files_of_a_service_that_starts_as_root() {
        let i = crate::fixtures::instance_from(
            "blog",
            "tenant: blog\ntemplate: wordpress\nparameters: {admin_email: ops@blog.test}\n",
        )
        .unwrap();
        let owner = |name: &str| {
            i.services
                .iter()
                .find(|s| s.name == name)
                .unwrap()
                .file_owner
        };
        assert_eq!(
            owner("db"),
            (999, 999),
            "mariadb reads its *_FILEs as mysql"
        );
        assert_eq!(
            owner("web"),
            (33, 33),
            "wp-config.php reads them as www-data"
        );
    }
}
