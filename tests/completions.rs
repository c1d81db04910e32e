//! Shell completions: one script per shell, naming every command; bash parses its own.

use std::process::Command;

fn script(shell: &str) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["completions", shell])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

#[test]
fn completion_scripts_name_every_command_and_bash_parses_its_own() {
    for (shell, marker) in [
        ("bash", "_berth()"),
        ("zsh", "#compdef berth"),
        ("fish", "complete -c berth"),
    ] {
        let s = script(shell);
        assert!(s.contains(marker), "{shell}");
        for sub in [
            "token",
            "audit",
            "backup",
            "upgrade",
            "restore",
            "completions",
        ] {
            assert!(s.contains(sub), "{shell} lacks {sub}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("berth.bash");
    std::fs::write(&f, script("bash")).unwrap();
    let check = Command::new("bash").arg("-n").arg(&f).output().unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["completions", "powershell7"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("powershell7"));
}
