use super::*;
use serde_json::Value;

/// The shipped templates with tenants acme (demo, a custom domain) and globex (wordpress).
fn world(
    instances: &[(&str, &str)],
) -> (
    tempfile::TempDir,
    crate::desired::HostConfig,
    crate::desired::Desired,
) {
    let dir = tempfile::tempdir().unwrap();
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    let cfg = format!(
        "state_dir: state\ntemplates_dir: {templates}\ninstances_dir: instances\nnamespace: berth\nbase_domain: apps.example.com\nshared_database: {{image: berth/postgres:15}}\n"
    );
    std::fs::write(dir.path().join("berth.yaml"), cfg).unwrap();
    std::fs::create_dir_all(dir.path().join("instances")).unwrap();
    for (t, body) in instances {
        std::fs::write(dir.path().join(format!("instances/{t}.yaml")), body).unwrap();
    }
    let host = crate::desired::host::load(&dir.path().join("berth.yaml")).unwrap();
    let loaded = crate::desired::load(&host);
    assert!(loaded.errors.is_empty(), "{}", loaded.errors);
    (dir, host, loaded.desired)
}

fn objects(
    host: &crate::desired::HostConfig,
    inst: &Instance,
    secret: &dyn Fn(&str) -> Option<String>,
) -> Vec<Value> {
    let opts = Options::default();
    let input = Input {
        host,
        inst,
        secret,
        opts: &opts,
    };
    documents(&input)
        .unwrap()
        .iter()
        .map(|d| serde_yaml::from_str::<Value>(d).unwrap())
        .collect()
}

fn find<'a>(objs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

#[test]
fn each_tenant_is_a_namespace_with_its_isolation_objects() {
    let (_d, host, desired) = world(&[
        (
            "acme",
            "tenant: acme\ntemplate: demo\ndomains: [shop.acme.example]\n",
        ),
        (
            "globex",
            "tenant: globex\ntemplate: wordpress\nparameters: {admin_email: ops@globex.example}\n",
        ),
    ]);
    for (t, inst) in &desired.instances {
        let ns = format!("berth-{t}");
        let objs = objects(&host, inst, &|_| None);
        let n = find(&objs, "Namespace", &ns);
        assert_eq!(
            n["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
            "baseline"
        );
        for o in &objs[1..] {
            assert_eq!(o["metadata"]["namespace"], ns.as_str(), "{o}");
        }
        let deny = find(&objs, "NetworkPolicy", "default-deny");
        assert_eq!(deny["spec"]["podSelector"], serde_json::json!({}));
        assert_eq!(
            deny["spec"]["policyTypes"],
            serde_json::json!(["Ingress", "Egress"])
        );
        // Nothing is let in from another namespace but the ingress controller's (and DNS out).
        for p in objs.iter().filter(|o| o["kind"] == "NetworkPolicy") {
            let text = p.to_string();
            for peer in text.split("kubernetes.io/metadata.name").skip(1) {
                let other = peer.split('"').nth(2).unwrap();
                assert!(
                    ["ingress-nginx", "kube-system"].contains(&other),
                    "{t}: {other}: {p}"
                );
            }
        }
        let web = find(&objs, "NetworkPolicy", "allow-ingress-controller");
        assert_eq!(
            web["spec"]["podSelector"]["matchLabels"]["io.berth.service"],
            inst.web.service.as_str()
        );
        let quota = find(&objs, "ResourceQuota", "plan");
        assert_eq!(
            quota["spec"]["hard"]["limits.memory"],
            inst.limits.memory.to_string()
        );
        find(&objs, "LimitRange", "defaults");
        assert_eq!(
            find(&objs, "ServiceAccount", "tenant")["automountServiceAccountToken"],
            false
        );
        for svc in &inst.services {
            let d = find(&objs, "Deployment", &svc.name);
            let pod = &d["spec"]["template"]["spec"];
            assert_eq!(pod["serviceAccountName"], "tenant");
            assert_eq!(pod["automountServiceAccountToken"], false);
            let c = &pod["containers"][0];
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(
                c["securityContext"]["capabilities"]["drop"],
                serde_json::json!(["ALL"])
            );
            assert!(c["resources"]["limits"]["memory"].is_string());
        }
        find(&objs, "Service", &inst.web.service);
        let ing = find(&objs, "Ingress", "web");
        assert_eq!(
            ing["metadata"]["annotations"]["cert-manager.io/cluster-issuer"],
            "letsencrypt"
        );
        let hosts = ing["spec"]["tls"][0]["hosts"].to_string();
        assert!(hosts.contains(&format!("{t}.apps.example.com")), "{hosts}");
        assert_eq!(hosts.contains("shop.acme.example"), t == "acme", "{hosts}");
        for v in &inst.volumes {
            find(
                &objs,
                "PersistentVolumeClaim",
                &format!("vol-{}", v.replace('_', "-")),
            );
        }
    }
}

#[test]
fn secrets_keep_this_hosts_values_and_new_ones_come_from_the_csprng() {
    let (_d, host, desired) = world(&[("acme", "tenant: acme\ntemplate: demo\n")]);
    let inst = &desired.instances["acme"];
    let name = inst
        .secrets
        .keys()
        .next()
        .expect("the demo has a secret")
        .clone();
    let kept = objects(&host, inst, &|n| {
        (n == name).then(|| "kept-value".to_string())
    });
    assert_eq!(
        find(&kept, "Secret", "secrets")["stringData"][&name],
        "kept-value"
    );
    let a = objects(&host, inst, &|_| None);
    let b = objects(&host, inst, &|_| None);
    let (va, vb) = (
        &find(&a, "Secret", "secrets")["stringData"][&name],
        &find(&b, "Secret", "secrets")["stringData"][&name],
    );
    assert_ne!(va, vb);
    assert!(va.as_str().unwrap().len() >= 32, "{va}");
}

#[test]
fn what_kubernetes_cannot_take_is_refused_with_the_tenant_and_the_reason() {
    let (_d, host, desired) = world(&[("shared", "tenant: shared\ntemplate: demo-shared\n")]);
    let opts = Options::default();
    let input = Input {
        host: &host,
        inst: &desired.instances["shared"],
        secret: &|_| None,
        opts: &opts,
    };
    let e = documents(&input).unwrap_err().to_string();
    assert!(
        e.contains("tenant shared") && e.contains("shared database"),
        "{e}"
    );
    let (_d, host, desired) = world(&[("acme", "tenant: acme\ntemplate: demo\n")]);
    let mut inst = desired.instances["acme"].clone();
    inst.jobs.insert(
        "tick".into(),
        crate::desired::model::Job {
            schedule: "30 */5 * * * *".into(),
            service: inst.web.service.clone(),
            command: vec!["true".into()],
            timeout: std::time::Duration::from_secs(60),
            wake: false,
        },
    );
    let input = Input {
        host: &host,
        inst: &inst,
        secret: &|_| None,
        opts: &opts,
    };
    let e = documents(&input).unwrap_err().to_string();
    assert!(e.contains("job tick") && e.contains("second"), "{e}");
    inst.jobs.get_mut("tick").unwrap().schedule = "0 */5 * * * *".into();
    let input = Input {
        host: &host,
        inst: &inst,
        secret: &|_| None,
        opts: &opts,
    };
    let docs: Vec<Value> = documents(&input)
        .unwrap()
        .iter()
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let cron = find(&docs, "CronJob", "job-tick");
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let labels = &cron["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"];
    assert_eq!(
        labels["io.berth.role"], "job",
        "a job pod is never selected as its service"
    );
}
