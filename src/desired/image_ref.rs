//! Image references as Docker reads them (pure): which registry a reference names, and the
//! form the engine lists it under, so "is it here?" is a set lookup. And the credentials a
//! registry host is pulled from with.

use std::path::PathBuf;

/// Credentials for one registry host (`registries:` in the host config).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryAuth {
    pub username: String,
    /// Read at each pull; must be 0600 or stricter; never logged or shown.
    pub password_file: PathBuf,
}

/// Docker Hub, as references name it when they name no registry.
pub const DOCKER_HUB: &str = "docker.io";

/// The registry host of `image`: its first component when that looks like a host (has a `.`
/// or a `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => DOCKER_HUB,
    }
}

/// A registry host as the host config names one: `host` or `host:port`, the host a
/// lowercase DNS name or an IPv4 address (no path, no scheme, no space).
pub fn check_registry(r: &str) -> Result<(), super::Invalid> {
    let bad = || super::Invalid::NotRegistry(r.into());
    let (host, port) = match r.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (r, None),
    };
    if port.is_some_and(|p| !p.parse::<u16>().is_ok_and(|n| n > 0)) {
        return Err(bad());
    }
    let name =
        || !host.is_empty() && host.len() <= 253 && host.split('.').all(super::host::is_dns_label);
    if host.parse::<std::net::Ipv4Addr>().is_ok() || name() {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The name the engine lists for `image` in its tags or digests: Docker Hub's `docker.io/`
/// and `library/` dropped, `:latest` added when no tag or digest is given.
pub fn normalize(image: &str) -> String {
    let mut s = image;
    if let Some(rest) = s.strip_prefix("docker.io/") {
        s = rest;
    }
    if let Some(rest) = s.strip_prefix("library/")
        && !rest.contains('/')
    {
        s = rest;
    }
    if s.contains('@') {
        return s.to_string();
    }
    // A tag is a `:` after the last `/` (a registry's port comes before it).
    let last = s.rsplit('/').next().unwrap_or(s);
    if last.contains(':') {
        s.to_string()
    } else {
        format!("{s}:latest")
    }
}

/// `image` as found on `mirror`, a host serving `image`'s registry (a pull-through cache):
/// the registry host replaced by the mirror's, Docker Hub's official images under `library/`.
pub fn on_mirror(image: &str, mirror: &str) -> String {
    let registry = registry_of(image);
    let path = if registry == DOCKER_HUB {
        let p = image.strip_prefix("docker.io/").unwrap_or(image);
        let name = p.split(['@', ':']).next().unwrap_or(p);
        if name.contains('/') {
            p.to_string()
        } else {
            format!("library/{p}")
        }
    } else {
        image[registry.len() + 1..].to_string()
    };
    format!("{mirror}/{path}")
}

/// Splits `image` into what the engine's pull call takes: (from_image, tag or digest).
pub fn pull_parts(image: &str) -> (String, String) {
    if let Some((name, digest)) = image.split_once('@') {
        return (name.to_string(), digest.to_string());
    }
    let n = normalize(image);
    let at = n.rfind(':').expect("normalize adds a tag");
    (n[..at].to_string(), n[at + 1..].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_names_its_registry_or_docker_hub() {
        assert_eq!(registry_of("wordpress:6"), "docker.io");
        assert_eq!(registry_of("bitnami/wordpress"), "docker.io");
        assert_eq!(registry_of("127.0.0.1:5000/berth/demo:1"), "127.0.0.1:5000");
        assert_eq!(registry_of("ghcr.io/acme/app@sha256:ab"), "ghcr.io");
        assert_eq!(registry_of("localhost/x"), "localhost");
    }

    #[test]
    fn references_are_compared_as_the_engine_lists_them() {
        assert_eq!(normalize("docker.io/library/wordpress"), "wordpress:latest");
        assert_eq!(normalize("wordpress:6.5"), "wordpress:6.5");
        assert_eq!(
            normalize("127.0.0.1:5000/berth/demo"),
            "127.0.0.1:5000/berth/demo:latest"
        );
        assert_eq!(normalize("docker.io/bitnami/x:1"), "bitnami/x:1");
        assert_eq!(normalize("x@sha256:ab"), "x@sha256:ab");
        assert_eq!(
            pull_parts("127.0.0.1:5000/berth/demo"),
            ("127.0.0.1:5000/berth/demo".into(), "latest".into())
        );
        assert_eq!(pull_parts("x@sha256:ab"), ("x".into(), "sha256:ab".into()));
    }

    #[test]
    fn registry_hosts_are_a_name_or_address_and_an_optional_port() {
        for good in [
            "docker.io",
            "registry.example.com",
            "127.0.0.1:5000",
            "localhost:443",
        ] {
            assert!(check_registry(good).is_ok(), "{good}");
        }
        let hostile = [
            "",
            "evil/x",
            "a b",
            "host:0",
            "host:99999",
            "Upper.example",
            "x\n",
            "https://r.io",
            "r.io:",
            ":5000",
            "../../etc",
        ];
        for bad in hostile {
            let e = check_registry(bad).unwrap_err();
            assert!(
                e.to_string().contains("is not a registry host"),
                "{bad:?}: {e}"
            );
        }
    }

    #[test]
    fn a_mirror_serves_the_same_path_official_images_under_library() {
        let m = "127.0.0.1:5000";
        assert_eq!(
            on_mirror("wordpress:6", m),
            "127.0.0.1:5000/library/wordpress:6"
        );
        assert_eq!(
            on_mirror("docker.io/library/mariadb:11", m),
            "127.0.0.1:5000/library/mariadb:11"
        );
        assert_eq!(
            on_mirror("bitnami/redis", m),
            "127.0.0.1:5000/bitnami/redis"
        );
        assert_eq!(
            on_mirror("ghcr.io/acme/app:2", m),
            "127.0.0.1:5000/acme/app:2"
        );
    }
}
