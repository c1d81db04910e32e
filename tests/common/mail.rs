//! The internet's mail servers for relay tests: an aiosmtpd sink (tests/support/mail_sink.py)
//! on a test host in a network namespace (198.18.<octet>.25:2525, the host side of its veth at
//! .1), and dkimpy to check what arrives.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

pub struct MailSink {
    child: Child,
    ns: String,
    veth: String,
    pub dir: PathBuf,
    pub addr: String,
}

impl MailSink {
    /// A sink keeping messages in `dir`; `octet` picks its /24 in 198.18.0.0/15.
    pub fn start(dir: &Path, octet: u16) -> MailSink {
        let (ns, veth) = (format!("berth-mail-{octet}"), format!("bt-ml{octet}"));
        cleanup(&ns, &veth);
        std::fs::create_dir_all(dir).unwrap();
        let sink = format!("198.18.{octet}.25");
        super::sh(&format!(
            "ip netns add {ns} && ip link add {veth}h type veth peer name {veth}n && \
             ip link set {veth}n netns {ns} && ip addr add 198.18.{octet}.1/24 dev {veth}h && \
             ip link set {veth}h up && ip -n {ns} addr add {sink}/24 dev {veth}n && \
             ip -n {ns} link set {veth}n up && ip -n {ns} link set lo up && \
             ip -n {ns} route add default via 198.18.{octet}.1"
        ));
        let py = python();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(&py)
            .arg(repo().join("tests/support/mail_sink.py"))
            .args([dir.to_str().unwrap(), &sink, "2525"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        MailSink {
            child,
            ns,
            veth,
            dir: dir.to_path_buf(),
            addr: format!("{sink}:2525"),
        }
    }

    /// The envelope sender of each message held, with the message's path, in order.
    pub fn received(&self) -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .map(|p| {
                let j: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                let from = j["from"].as_str().unwrap_or("").to_string();
                (from, p.with_extension("eml"))
            })
            .collect();
        v.sort_by(|a, b| a.1.cmp(&b.1));
        v
    }
}

impl Drop for MailSink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        cleanup(&self.ns, &self.veth);
    }
}

fn cleanup(ns: &str, veth: &str) {
    let _ = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ip netns pids {ns} 2>/dev/null | xargs -r kill; ip netns del {ns} 2>/dev/null; \
             ip link del {veth}h 2>/dev/null"
        ))
        .status();
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn python() -> PathBuf {
    let py = repo().join("target/py/bin/python");
    assert!(
        py.exists(),
        "{} is missing: scripts/test.sh installs aiosmtpd and dkimpy there",
        py.display()
    );
    py
}

/// dkimpy's verdict on a message against the tenant's published records (`berth mail dns T`):
/// `ok <d=>` or `bad <d=>`.
pub fn dkim_check(h: &super::Harness, tenant: &str, eml: &Path) -> String {
    let records = h.cli_ok(&["mail", "dns", tenant, "-o", "json"]);
    let file = h.path(&format!("{tenant}-dns.json"));
    std::fs::write(&file, records).unwrap();
    let o = Command::new(python())
        .arg(repo().join("tests/support/dkim_verify.py"))
        .arg(eml)
        .arg(&file)
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}
