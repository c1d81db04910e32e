//! What may talk to what: everything denied, then the ingress controller to the web service,
//! the tenant's pods to each other (the app to its database), DNS, and the plan's egress
//! allows; and the Ingress that puts the tenant on its domains.

use super::{Input, workload};
use k8s_openapi::{
    api::networking::v1::{
        HTTPIngressPath, HTTPIngressRuleValue, IPBlock, Ingress, IngressBackend, IngressRule,
        IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyEgressRule,
        NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec,
        ServiceBackendPort,
    },
    apimachinery::pkg::{apis::meta::v1::LabelSelector, util::intstr::IntOrString},
};
use std::collections::BTreeMap;

fn all_pods() -> LabelSelector {
    LabelSelector::default()
}

fn namespace_named(name: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".into(),
            name.to_string(),
        )])),
        ..Default::default()
    }
}

fn port(p: u16, proto: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(p.into())),
        protocol: Some(proto.into()),
        ..Default::default()
    }
}

fn policy(i: &Input, name: &str, spec: NetworkPolicySpec) -> NetworkPolicy {
    NetworkPolicy {
        metadata: i.meta(name),
        spec: Some(spec),
    }
}

pub fn policies(i: &Input) -> Vec<NetworkPolicy> {
    let types = |t: &[&str]| Some(t.iter().map(|s| s.to_string()).collect());
    let same_namespace = NetworkPolicyPeer {
        pod_selector: Some(all_pods()),
        ..Default::default()
    };
    let mut out = vec![
        policy(
            i,
            "default-deny",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: types(&["Ingress", "Egress"]),
                ..Default::default()
            },
        ),
        policy(
            i,
            "allow-ingress-controller",
            NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(workload::selector(i, &i.inst.web.service)),
                    ..Default::default()
                }),
                policy_types: types(&["Ingress"]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(namespace_named(&i.opts.ingress_namespace)),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port(i.inst.web.port, "TCP")]),
                }]),
                ..Default::default()
            },
        ),
        policy(
            i,
            "allow-within-tenant",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: types(&["Ingress", "Egress"]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace.clone()]),
                    ports: None,
                }]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![same_namespace]),
                    ports: None,
                }]),
            },
        ),
        policy(
            i,
            "allow-dns",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: types(&["Egress"]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(namespace_named("kube-system")),
                        pod_selector: Some(LabelSelector {
                            match_labels: Some(BTreeMap::from([(
                                "k8s-app".into(),
                                "kube-dns".into(),
                            )])),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ports: Some(vec![port(53, "UDP"), port(53, "TCP")]),
                }]),
                ..Default::default()
            },
        ),
    ];
    if !i.inst.egress.is_empty() {
        let rules = i.inst.egress.iter().map(|a| NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                ip_block: Some(IPBlock {
                    cidr: a.net.to_string(),
                    except: None,
                }),
                ..Default::default()
            }]),
            ports: a.port.map(|(p, proto)| {
                let proto = match proto {
                    crate::egress::policy::Proto::Tcp => "TCP",
                    crate::egress::policy::Proto::Udp => "UDP",
                };
                vec![port(p, proto)]
            }),
        });
        out.push(policy(
            i,
            "allow-plan-egress",
            NetworkPolicySpec {
                pod_selector: Some(all_pods()),
                policy_types: types(&["Egress"]),
                egress: Some(rules.collect()),
                ..Default::default()
            },
        ));
    }
    out
}

/// The hosts the tenant answers on: its subdomain of the base domain and its own domains.
fn hosts(i: &Input) -> Vec<String> {
    let mut h: Vec<String> = i
        .host
        .base_domain
        .iter()
        .map(|b| format!("{}.{b}", i.inst.tenant))
        .collect();
    h.extend(i.inst.domains.iter().cloned());
    h.extend(i.inst.aliases.iter().cloned());
    h.sort();
    h.dedup();
    h
}

pub fn ingress(i: &Input) -> Option<Ingress> {
    let backend = IngressBackend {
        service: Some(IngressServiceBackend {
            name: i.inst.web.service.clone(),
            port: Some(ServiceBackendPort {
                number: Some(i.inst.web.port.into()),
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    let path = |prefix: &str| HTTPIngressPath {
        path: Some(if prefix.is_empty() {
            "/".into()
        } else {
            prefix.to_string()
        }),
        path_type: "Prefix".into(),
        backend: backend.clone(),
    };
    let mut rules: Vec<IngressRule> = hosts(i)
        .into_iter()
        .map(|h| IngressRule {
            host: Some(h),
            http: Some(HTTPIngressRuleValue {
                paths: vec![path("")],
            }),
        })
        .collect();
    for m in &i.inst.paths {
        rules.push(IngressRule {
            host: Some(m.host.clone()),
            http: Some(HTTPIngressRuleValue {
                paths: vec![path(&m.prefix)],
            }),
        });
    }
    if rules.is_empty() {
        return None;
    }
    let mut tls_hosts: Vec<String> = rules.iter().filter_map(|r| r.host.clone()).collect();
    tls_hosts.dedup();
    let mut meta = i.meta("web");
    meta.annotations = Some(BTreeMap::from([(
        "cert-manager.io/cluster-issuer".into(),
        i.opts.cluster_issuer.clone(),
    )]));
    Some(Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: Some(i.opts.ingress_class.clone()),
            tls: Some(vec![IngressTLS {
                hosts: Some(tls_hosts),
                secret_name: Some("web-tls".into()),
            }]),
            rules: Some(rules),
            ..Default::default()
        }),
        ..Default::default()
    })
}
