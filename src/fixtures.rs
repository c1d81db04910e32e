//! Test fixtures: the shipped `demo` template turned into instances, and a host config.

use crate::{
    desired::{self, HostConfig, Instance, subnet::SubnetPool, template::Template},
    spec::{self, instance::InstanceFile},
};
use std::{collections::BTreeMap, path::PathBuf, time::Duration};

pub fn repo_templates() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("templates")
}

pub fn host() -> HostConfig {
    HostConfig {
        state_dir: "/var/lib/berth".into(),
        templates_dir: repo_templates(),
        instances_dir: "/nonexistent".into(),
        namespace: "berth".into(),
        base_domain: Some("apps.example.com".into()),
        api_socket: "/run/berth/berth.sock".into(),
        api_tcp: None,
        api_token_file: None,
        api_tls: None,
        subnet_pool: pool(),
        ports: (20000, 29999),
        resync: Duration::from_secs(30),
        parallelism: 4,
        admission: Default::default(),
        metrics: desired::host::MetricsConfig {
            listen: None,
            interval: Duration::from_secs(15),
        },
        probes: Default::default(),
        backup_dir: "/var/lib/berth/backups".into(),
        backup_repositories: vec![],
        plans: BTreeMap::new(),
        default_plan: None,
        shared_database: None,
        shared_mariadb: None,
        mail: None,
        db_name_key: None,
        registries: BTreeMap::new(),
        registry_mirrors: BTreeMap::new(),
        proxy: None,
        acme: None,
        domains: crate::desired::edge::DomainsConfig {
            resolver: None,
            http_port: 80,
        },
        engine: crate::desired::engine::Engine::Docker,
        engine_cpu: None,
    }
}

pub fn templates() -> BTreeMap<String, Template> {
    let (sources, errors) = spec::load_templates(&repo_templates());
    assert!(errors.is_empty(), "{errors}");
    sources
        .into_iter()
        .map(|(k, s)| (k.clone(), desired::template::validate(&k, s).unwrap()))
        .collect()
}

/// Parses an instance file text as if it were `instances/<stem>.yaml`.
pub fn instance_from(stem: &str, yaml: &str) -> Result<Instance, spec::SpecErrors> {
    let shown = PathBuf::from(format!("instances/{stem}.yaml"));
    let loaded =
        spec::parse_yaml::<InstanceFile>(&shown, yaml).map_err(|e| spec::SpecErrors(vec![e]))?;
    desired::instance::build(&loaded, stem, &templates(), &host())
}

/// The tenants' address pool of [`host`]: /28s of 10.240.0.0/16.
pub fn pool() -> SubnetPool {
    SubnetPool::parse("10.240.0.0/16", 28).expect("a valid pool")
}

/// A running `demo` instance at version 1.
pub fn demo_instance(tenant: &str) -> Instance {
    instance_from(tenant, &format!("tenant: {tenant}\ntemplate: demo\n")).unwrap()
}

/// The container spec of `service` of a demo instance of `tenant` in namespace `ns`.
pub fn container_spec(ns: &str, tenant: &str, service: &str) -> crate::runtime::ContainerSpec {
    let inst = demo_instance(tenant);
    crate::runtime::spec::container_spec(
        ns,
        &inst,
        inst.service(service).expect("demo service"),
        &crate::store::Allocation {
            subnet: 0,
            port: 20001,
            web_slot: 0,
            next_port: None,
        },
        Some(&pool()),
        &crate::store::Layout::new("/var/lib/berth".into()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_template_validates_and_renders_an_instance() {
        let cases = [
            ("demo", ""),
            ("demo-shared", ""),
            ("wordpress", "parameters:\n  admin_email: ops@shop.test\n"),
            ("mautic", "parameters:\n  admin_email: ops@shop.test\n"),
            ("osticket", "parameters:\n  admin_email: ops@shop.test\n"),
        ];
        let mut h = host();
        h.shared_database = Some(crate::desired::host::SharedDatabase {
            image: "berth/postgres:15".into(),
            memory: 1 << 30,
            connection_limit: 5,
        });
        let f: crate::spec::host::MailFile = serde_yaml::from_str("{}").unwrap();
        let with_mail = {
            let mut h = h.clone();
            h.mail = Some(
                crate::desired::mail::build(&f, Some("apps.test"), &|p| p.to_path_buf()).unwrap(),
            );
            h
        };
        for ((template, extra), h) in cases
            .iter()
            .flat_map(|c| [(c, &h), (c, &with_mail)])
            .map(|((t, e), h)| ((*t, *e), h))
        {
            let yaml = format!("tenant: shop\ntemplate: {template}\ndomains: [shop.test]\n{extra}");
            let shown = PathBuf::from("instances/shop.yaml");
            let loaded = spec::parse_yaml::<InstanceFile>(&shown, &yaml).unwrap();
            let inst = desired::instance::build(&loaded, "shop", &templates(), h)
                .unwrap_or_else(|e| panic!("{template}: {e}"));
            if template != "demo-shared" {
                assert_eq!(inst.mail.is_some(), h.mail.is_some(), "{template}");
            }
            assert!(!inst.services.is_empty(), "{template}");
            assert!(
                inst.services.iter().all(|s| !s.image.is_empty()),
                "{template}"
            );
        }
    }

    #[test]
    fn swarm_mode_refuses_an_instance_s_egress_allows_by_field() {
        let yaml = "tenant: shop\ntemplate: demo\nlimits: {egress: [\"10.1.2.3:5432\"]}\n";
        let loaded = spec::parse_yaml(std::path::Path::new("shop.yaml"), yaml).unwrap();
        let mut h = host();
        h.engine = desired::engine::Engine::Swarm(desired::engine::SwarmEngine {
            manager: "/run/m1.sock".into(),
            nodes: [("m1".to_string(), "/run/m1.sock".into())].into(),
            netguard_image: "berth/netguard:bookworm".into(),
        });
        let err = desired::instance::build(&loaded, "shop", &templates(), &h).unwrap_err();
        assert!(
            err.to_string().contains("limits.egress: swarm mode"),
            "{err}"
        );
        assert!(desired::instance::build(&loaded, "shop", &templates(), &host()).is_ok());
    }

    #[test]
    fn a_missing_required_parameter_is_named() {
        let err = instance_from("shop", "tenant: shop\ntemplate: wordpress\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("required parameter \"admin_email\" is missing"),
            "{err}"
        );
    }
}
