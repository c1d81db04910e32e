//! Real-engine tests: three isolated demo tenants, hardening as inspected, secrets handling.

mod common;
use common::*;

#[test]
fn three_demo_tenants_answer_at_their_own_addresses_and_reach_only_their_own_database() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(11);
    h.start();
    for (t, title) in [
        ("alpha", "Alpha"),
        ("bravo", "Bravo"),
        ("charlie", "Charlie"),
    ] {
        h.cli_ok(&[
            "add",
            t,
            "--template",
            "demo",
            "--plan",
            "small",
            "--set",
            &format!("site_title={title}"),
            "--domain",
            &format!("{t}.example.test"),
        ]);
    }
    h.wait_running(&["alpha", "bravo", "charlie"]);
    for t in ["alpha", "bravo", "charlie"] {
        let port = h.web(t);
        let (code, page) = http_get(port, "/").expect("home page");
        assert_eq!(code, 200);
        assert!(page.contains(&format!("tenant={t} version=1")), "{page}");
        wait_for(
            std::time::Duration::from_secs(30),
            || {
                http_get(port, "/cgi-bin/db")
                    .is_some_and(|(c, b)| c == 200 && b.contains("db-ok app app"))
            },
            "db query",
        );
        // Nothing published on the host: the app's fixed address on its own network, above
        // the range the engine hands out on it.
        let app = h.container(t, "app");
        assert_eq!(docker_ok(&["port", &app]), "", "no published port");
        let f = format!(
            "{{{{(index .NetworkSettings.Networks \"{}-{t}\").IPAddress}}}}",
            h.ns
        );
        assert_eq!(
            docker_ok(&["inspect", "-f", &f, &app]),
            port.ip().to_string()
        );
        let range = h.ipam(t, "IPRange");
        let range: ipnet::Ipv4Net = range.parse().expect("a range");
        let std::net::IpAddr::V4(v4) = port.ip() else {
            panic!("{port}")
        };
        assert!(
            !range.contains(&v4),
            "{v4} is outside the engine's range {range}"
        );
    }

    // Logs come through the API from the engine.
    let db_logs = h.cli_ok(&["logs", "alpha", "--service", "db"]);
    assert!(
        db_logs.contains("database system is ready to accept connections"),
        "{db_logs}"
    );

    // Isolation: from alpha's app, bravo's app and database are unreachable, every time; alpha's
    // own database is reachable (so the probe itself works).
    let ip = |c: &str| {
        docker_ok(&[
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
            c,
        ])
    };
    let probe = |target: &str, port: &str| {
        let script = format!("</dev/tcp/{target}/{port}");
        docker(&[
            "exec",
            &h.container("alpha", "app"),
            "timeout",
            "1",
            "bash",
            "-c",
            &script,
        ])
        .status
        .success()
    };
    assert!(
        probe(&ip(&h.container("alpha", "db")), "5432"),
        "alpha must reach its own database"
    );
    let (b_app, b_db, c_db) = (
        ip(&h.container("bravo", "app")),
        ip(&h.container("bravo", "db")),
        ip(&h.container("charlie", "db")),
    );
    let mut reached = 0;
    for _ in 0..5 {
        reached += [
            probe(&b_app, "8080"),
            probe(&b_db, "5432"),
            probe(&c_db, "5432"),
        ]
        .iter()
        .filter(|r| **r)
        .count();
    }
    assert_eq!(
        reached, 0,
        "cross-tenant connections succeeded {reached} of 15 times"
    );
    // Each tenant has its own network holding only its own containers.
    let members = docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{end}}",
        &format!("{}-alpha", h.ns),
    ]);
    let mut members: Vec<&str> = members.split_whitespace().collect();
    members.sort();
    assert_eq!(
        members,
        vec![h.container("alpha", "app"), h.container("alpha", "db")]
    );
}

#[test]
fn containers_are_hardened_limited_and_never_see_secrets_in_their_environment() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(12);
    h.start();
    write_instance(
        &h,
        "delta",
        "template: demo\nplan: small\nlimits:\n  memory: 300m\n",
    );
    h.wait_running(&["delta"]);
    let db = h.container("delta", "db");
    let app = h.container("delta", "app");
    let f = |c: &str, fmt: &str| docker_ok(&["inspect", "-f", fmt, c]);
    // The plan's 300m / 0.5 CPU / 200 pids are split 2:1 between db and app.
    assert_eq!(
        f(&db, "{{.HostConfig.Memory}} {{.HostConfig.MemorySwap}}"),
        format!("{0} {0}", 200 << 20)
    );
    assert_eq!(
        f(&app, "{{.HostConfig.Memory}}"),
        (100u64 << 20).to_string()
    );
    assert_eq!(
        f(&db, "{{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}"),
        "333333333 133"
    );
    for c in [&db, &app] {
        assert_eq!(
            f(
                c,
                "{{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}} {{.HostConfig.Privileged}}"
            ),
            "[ALL] [no-new-privileges:true] false"
        );
        assert_eq!(
            f(
                c,
                "{{.HostConfig.ReadonlyRootfs}} {{.HostConfig.LogConfig.Type}} {{index .HostConfig.LogConfig.Config \"max-size\"}}"
            ),
            "true json-file 10m"
        );
        let status = docker_ok(&["exec", c, "cat", "/proc/1/status"]);
        assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        let mounts = f(c, "{{range .Mounts}}{{.Source}} {{end}}");
        assert!(!mounts.contains("docker.sock"), "{mounts}");
    }
    assert!(
        !docker(&["exec", &app, "touch", "/x"]).status.success(),
        "rootfs must be read-only"
    );

    // The generated password: 0600 on the host, a file in the container, in no env and no log.
    let secret_path = h.path("state/tenants/delta/secrets/db_password");
    let secret = std::fs::read_to_string(&secret_path).unwrap();
    assert_eq!(secret.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret_path)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(h.path("state/tenants/delta"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(
        docker_ok(&["exec", &app, "cat", "/run/secrets/db_password"]),
        secret
    );
    for c in [&db, &app] {
        assert!(
            !docker_ok(&["inspect", c]).contains(&secret),
            "secret visible in docker inspect of {c}"
        );
    }
    assert!(!h.agent_log().contains(&secret), "secret in the agent log");
    assert!(
        !h.cli_ok(&["status", "delta", "-o", "json"])
            .contains(&secret)
    );
}
