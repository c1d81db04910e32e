//! Builds one validated service of an instance from its Compose-style template entry.

use super::{
    Invalid,
    limits::Limits,
    model::{Healthcheck, Service, VolumeMount},
    render,
    template::{depends_on, parse_owner, parse_volume},
};
use crate::spec::{
    template::{Environment, ServiceFile, StringOrList, TemplateFile},
    units,
};
use minijinja::Value;
use std::{collections::BTreeMap, time::Duration};

/// tmpfs options when a template gives none (Docker's own defaults, with a size cap).
pub const DEFAULT_TMPFS_OPTIONS: &str = "rw,noexec,nosuid,size=64m,mode=1777";

/// A tmpfs's size when its options name none: Docker's own default is half the host's RAM.
const DEFAULT_TMPFS_SIZE: u64 = 64 << 20;

/// tmpfs options `opts` with a `size=` (in bytes) no larger than the service's `memory`: what
/// a tenant writes there is held in memory, so no tmpfs may outgrow the plan's memory, and
/// one without a size gets 64 MiB (or the memory, if smaller), never Docker's half of the
/// host. Sizes that do not parse were refused when the template was checked.
pub fn sized_tmpfs(opts: &str, memory: u64) -> String {
    let cap = memory.max(1 << 20);
    let mut size = DEFAULT_TMPFS_SIZE;
    let mut out: Vec<&str> = vec![];
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o.strip_prefix("size=") {
            Some(v) => size = units::parse_bytes(v).unwrap_or(cap),
            None => out.push(o),
        }
    }
    // 0 would be a tmpfs without a limit.
    let size = format!("size={}", if size == 0 { cap } else { size.min(cap) });
    out.push(&size);
    out.join(",")
}

pub fn build(
    name: &str,
    s: &ServiceFile,
    image: String,
    limits: Limits,
    env: &minijinja::Environment<'_>,
    ctx: &Value,
    tf: &TemplateFile,
) -> Result<Service, Invalid> {
    let mut environment = BTreeMap::new();
    for (k, v) in env_pairs(&s.environment)? {
        environment.insert(
            k.clone(),
            render::render(env, &v, ctx).map_err(|m| Invalid::Env {
                key: k.clone(),
                why: Box::new(m),
            })?,
        );
    }
    let volumes = s
        .volumes
        .iter()
        .map(|v| {
            parse_volume(v, &tf.volumes).map(|(volume, target, read_only)| VolumeMount {
                volume,
                target,
                read_only,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tmpfs = s
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), sized_tmpfs(o, limits.memory)),
            None => (t.clone(), sized_tmpfs(DEFAULT_TMPFS_OPTIONS, limits.memory)),
        })
        .collect();
    let dur = |d: &Option<String>, def: Duration| {
        d.as_deref()
            .map(units::parse_duration)
            .transpose()
            .map(|v| v.unwrap_or(def))
    };
    let healthcheck = match &s.healthcheck {
        None => None,
        Some(h) if h.disable => Some(Healthcheck {
            test: vec!["NONE".into()],
            interval: Duration::ZERO,
            timeout: Duration::ZERO,
            retries: 0,
            start_period: Duration::ZERO,
        }),
        Some(h) => Some(Healthcheck {
            test: match &h.test {
                Some(StringOrList::List(l)) => l.clone(),
                Some(StringOrList::String(s)) => vec!["CMD-SHELL".into(), s.clone()],
                None => return Err(Invalid::NoHealthTest),
            },
            interval: dur(
                &h.interval,
                crate::desired::template::MIN_HEALTHCHECK_INTERVAL,
            )?,
            timeout: dur(&h.timeout, Duration::from_secs(5))?,
            retries: h.retries.unwrap_or(3),
            start_period: dur(&h.start_period, Duration::ZERO)?,
        }),
    };
    Ok(Service {
        name: name.to_string(),
        image,
        command: s.command.as_ref().map(words),
        entrypoint: s.entrypoint.as_ref().map(words),
        environment,
        volumes,
        tmpfs,
        healthcheck,
        user: s.user.clone(),
        file_owner: parse_owner(s.files_owner.as_deref().or(s.user.as_deref())).unwrap_or((0, 0)),
        read_only: s.read_only,
        cap_add: s
            .cap_add
            .iter()
            .map(|c| c.trim_start_matches("CAP_").to_string())
            .collect(),
        depends_on: depends_on(s)
            .into_iter()
            .filter(|d| tf.services.contains_key(d))
            .collect(),
        working_dir: s.working_dir.clone(),
        stop_grace: dur(&s.stop_grace_period, Duration::from_secs(10)).ok(),
        secrets: s.secrets.clone(),
        configs: s
            .configs
            .iter()
            .map(|c| (c.source.clone(), c.target.clone()))
            .collect(),
        limits,
    })
}

fn env_pairs(e: &Option<Environment>) -> Result<Vec<(String, String)>, Invalid> {
    let scalar = |v: &serde_yaml::Value| match v {
        serde_yaml::Value::String(s) => Ok(s.clone()),
        serde_yaml::Value::Number(n) => Ok(n.to_string()),
        serde_yaml::Value::Bool(b) => Ok(b.to_string()),
        _ => Err(Invalid::EnvNotScalar),
    };
    match e {
        None => Ok(vec![]),
        Some(Environment::Map(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Some(v) => Ok((k.clone(), scalar(v)?)),
                // Compose would copy the variable from the host: a leak path between host and tenant.
                None => Err(Invalid::EnvNoValue(k.clone())),
            })
            .collect(),
        Some(Environment::List(l)) => l
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| Invalid::EnvNotPair(kv.clone()))
            })
            .collect(),
    }
}

/// Splits a Compose string command into words, honouring single and double quotes.
pub fn words(c: &StringOrList) -> Vec<String> {
    let s = match c {
        StringOrList::List(l) => return l.clone(),
        StringOrList::String(s) => s,
    };
    let (mut out, mut cur, mut quote, mut any) = (Vec::new(), String::new(), None, false);
    for ch in s.chars() {
        match (quote, ch) {
            (None, '\'' | '"') => (quote, any) = (Some(ch), true),
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => (cur, any) = (cur + &c.to_string(), true),
        }
    }
    if any {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tmpfs_is_sized_and_never_larger_than_the_services_memory() {
        let mib = 1u64 << 20;
        let cases = [
            // (options, memory, want)
            ("rw,nosuid,size=1m", 256 * mib, "rw,nosuid,size=1048576"),
            ("rw,nosuid", 256 * mib, "rw,nosuid,size=67108864"),
            (
                "rw,size=4g,mode=1777",
                256 * mib,
                "rw,mode=1777,size=268435456",
            ),
            ("", 32 * mib, "size=33554432"),
            ("size=1k,size=2g", 128 * mib, "size=134217728"),
            ("size=0", 128 * mib, "size=134217728"),
            (
                DEFAULT_TMPFS_OPTIONS,
                mib / 2,
                "rw,noexec,nosuid,mode=1777,size=1048576",
            ),
        ];
        for (opts, memory, want) in cases {
            assert_eq!(sized_tmpfs(opts, memory), want, "{opts:?} at {memory}");
        }
    }

    #[test]
    fn compose_string_commands_split_like_a_shell_would() {
        let w = words(&StringOrList::String(r#"sh -c 'echo "hi there"' x"#.into()));
        assert_eq!(w, vec!["sh", "-c", r#"echo "hi there""#, "x"]);
    }
}
