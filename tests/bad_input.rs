//! Bad input through the CLI and in files: exact messages, and nothing half-created.

mod common;
use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).trim().to_string()
}

#[test]
fn bad_input_is_rejected_with_exact_messages_and_nothing_half_created() {
    let Some(_serial) = docker_test() else { return };
    let mut h = Harness::new(31);
    // Admission counts with 900m of memory here: india (512m) fits, one more 512m instance
    // does not (the shared database server is not reserved: no tenant uses it). And with 1g
    // of disk, which a 2g plan does not fit.
    let mut cfg = std::fs::read_to_string(h.path("berth.yaml")).unwrap();
    cfg = cfg.replace("plans:\n", "plans:\n  bigdisk: {memory: 64m, disk: 2g}\n");
    cfg.push_str("admission:\n  memory: 900m\n  disk: 1g\n");
    std::fs::write(h.path("berth.yaml"), cfg).unwrap();
    h.start();
    h.cli_ok(&[
        "add",
        "india",
        "--template",
        "demo",
        "--domain",
        "shop.example.test",
    ]);
    let cases: [(&[&str], &str); 5] = [
        (
            &["add", "Bad_Name", "--template", "demo"],
            "error: invalid value 'Bad_Name' for '<TENANT>': \"Bad_Name\" is not a valid tenant name (a DNS label of at most 40 characters: a-z, 0-9, inner -)",
        ),
        (
            &["add", "juliet", "--template", "nope"],
            "error: instances/juliet.yaml:2:1: template: template \"nope\" does not exist; known: ",
        ),
        (
            &["add", "juliet", "--template", "demo", "--version", "9"],
            "error: instances/juliet.yaml:3:1: version: version \"9\" of template \"demo\" does not exist; known: 1, 2, 3",
        ),
        (
            &[
                "add",
                "juliet",
                "--template",
                "demo",
                "--domain",
                "india.apps.test",
            ],
            "error: instances/juliet.yaml:4:3: domains.0: \"india.apps.test\" is the host's base domain \"apps.test\" or under it; tenants get their own subdomain juliet.apps.test and may not claim others",
        ),
        (
            &[
                "add",
                "juliet",
                "--template",
                "demo",
                "--set",
                "brand_color=red",
            ],
            "error: instances/juliet.yaml:4:3: parameters.brand_color: \"red\" is not a colour like #3366cc",
        ),
    ];
    for (args, want) in cases {
        let o = h.cli(args);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(
            stderr(&o).starts_with(want),
            "{args:?}:\n got: {}\nwant: {want}",
            stderr(&o)
        );
    }
    hostile_names_are_refused_before_any_request(&h);
    let o = h.cli(&["add", "juliet", "--template", "demo"]);
    assert!(
        stderr(&o).contains(
            "not admitted: juliet needs 512m of memory; 512m is reserved already, so 1g in all, but this host allows 900m (900m × overcommit 1)"
        ),
        "{}",
        stderr(&o)
    );
    let o = h.cli(&["add", "juliet", "--template", "demo", "--plan", "bigdisk"]);
    assert_eq!(
        stderr(&o),
        "error: instances/juliet.yaml:3:1: plan: not admitted: juliet needs 2g of disk; 0 is reserved already, so 2g in all, but this host allows 1g (1g × overcommit 1)"
    );
    h.cli_ok(&["add", "mike", "--template", "demo", "--plan", "small"]);
    let cap: serde_json::Value =
        serde_json::from_str(&h.cli_ok(&["capacity", "-o", "json"])).unwrap();
    assert_eq!(cap["memory_reserved"], 768u64 << 20, "{cap}");
    assert_eq!(cap["memory_allowed"], 900u64 << 20, "{cap}");
    assert_eq!(cap["disk_allowed"], 1u64 << 30, "{cap}");
    assert_eq!(cap["disk_reserved"], 0, "{cap}");
    assert!(cap["disk_used"].as_u64().unwrap() > 0, "{cap}");
    assert!(!h.path("instances/juliet.yaml").exists());
    assert!(!h.path("instances/Bad_Name.yaml").exists());

    // A hand-written file with a typo: reported with its place, and nothing is created for it.
    std::fs::write(
        h.path("instances/kilo.yaml"),
        "tenant: kilo\ntemplate: demo\nlimits:\n  memroy: 1g\n",
    )
    .unwrap();
    std::fs::write(
        h.path("instances/lima.yaml"),
        "tenant: lima\ntemplate: demo\ndomains: [a.test\n",
    )
    .unwrap();
    h.wait_running(&["india"]);
    let kilo = h.status("kilo");
    assert_eq!(kilo["phase"], "invalid");
    assert!(
        kilo["error"].as_str().unwrap().starts_with(
            "instances/kilo.yaml:4:3: limits: unknown field \"memroy\", expected one of"
        ),
        "{kilo}"
    );
    assert_eq!(h.status("lima")["phase"], "invalid");
    let containers = h.owned("container");
    assert!(
        containers
            .iter()
            .all(|c| !c.contains("juliet") && !c.contains("kilo") && !c.contains("lima")),
        "{containers:?}"
    );
    for t in ["juliet", "kilo", "lima"] {
        assert!(
            !h.path(&format!("state/tenants/{t}")).exists(),
            "{t} has state"
        );
    }
    // `berth validate` lists every problem and exits non-zero.
    let dir = h.path("");
    let o = h.cli(&["validate", dir.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("instances/kilo.yaml:4:3: limits: unknown field \"memroy\""),
        "{err}"
    );
    assert!(err.contains("instances/lima.yaml:"), "{err}");
}

/// Names that once reached the API pasted into its URL (`rm 'x?purge=true&x='` purged x):
/// refused by the CLI with the argument and the reason, and india is untouched.
fn hostile_names_are_refused_before_any_request(h: &Harness) {
    let cases: [&[&str]; 5] = [
        &["rm", "india?purge=true&x="],
        &["status", "india?x=1"],
        &["logs", "india?tail=1&x="],
        &["status", "../india"],
        &["rm", "../india"],
    ];
    for args in cases {
        let o = h.cli(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        let want = format!(
            "error: invalid value '{}' for '<TENANT>': {:?} is not a valid tenant name",
            args[1], args[1]
        );
        assert!(stderr(&o).starts_with(&want), "{args:?}: {}", stderr(&o));
    }
    assert!(
        h.path("instances/india.yaml").exists(),
        "india's file is gone"
    );
    assert!(
        !h.path("state/purge/india").exists(),
        "india marked for purge"
    );
    h.reconcile();
    assert_eq!(h.status("india")["tenant"], "india");
    // Names that are not a tenant's to claim: an address, the provider's base domain.
    let o = h.cli(&["domain", "add", "india", "10.1.2.3"]);
    assert!(
        stderr(&o).starts_with(
            "error: invalid value '10.1.2.3' for '<DOMAIN>': \"10.1.2.3\" is an IP address, not a domain name"
        ),
        "{}",
        stderr(&o)
    );
    let o = h.cli(&["domain", "add", "india", "apps.test"]);
    assert!(
        stderr(&o).starts_with("error: \"apps.test\" is the host's base domain"),
        "{}",
        stderr(&o)
    );
    // The agent's own answer to a name it cannot use is never an empty `error: `.
    let o = h.cli(&["domain", "verify", "india", "nothing.example.test"]);
    assert!(stderr(&o).len() > "error: ".len() + 10, "{}", stderr(&o));
    // The agent's log is a file here: plain text, no terminal colour codes.
    assert!(!h.agent_log().contains('\u{1b}'), "ANSI codes in agent.log");
}
