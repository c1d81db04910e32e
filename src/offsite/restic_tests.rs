//! `restic.rs`'s unit tests.
use super::*;

fn restic(url: &str) -> Restic {
    let repo = crate::desired::repository::Repository {
        name: "off".into(),
        url: url.into(),
        password_file: "/k".into(),
        env_file: None,
        plans: Default::default(),
        tenants: Default::default(),
        timeout: std::time::Duration::from_secs(60),
        create: false,
        check: None,
    };
    Restic::new(repo, "/tmp/none".into(), "berth")
}

#[test]
fn what_restic_said_keeps_the_servers_answer_and_drops_stack_frames_and_the_password() {
    let r = restic("rest:http://u:pa%24s@127.0.0.1:8000/");
    let stderr = "Remove(<snapshot/ed71>) returned error, retrying after 552ms: blob not removed, server response: 403 Forbidden (403)\n\
                  Remove(<snapshot/ed71>) returned error, retrying after 1.08s: blob not removed, server response: 403 Forbidden (403)\n\
                  unable to open rest:http://u:pa$s@127.0.0.1:8000/ and u:pa%24s\n\
                  github.com/restic/restic/internal/backend.(*RetryBackend).Remove\n\
                  \tgithub.com/restic/restic/internal/backend/backend_retry.go:107\n\
                  runtime.goexit\n";
    let said = r.said(stderr.as_bytes());
    assert!(said.contains("403 Forbidden"), "{said}");
    assert_eq!(said.matches("403 Forbidden (403)").count(), 1, "{said}");
    assert!(!said.contains("pa%24s") && !said.contains("pa$s"), "{said}");
    assert!(!said.contains(".go:") && !said.contains("goexit"), "{said}");
}
