//! The real firewall: iptables (nft or legacy, whichever the host's `iptables` is, the same one
//! Docker uses). Berth's chains are replaced in one `iptables-restore --noflush` commit, so a
//! pass never leaves a half-written policy; the jumps into them are checked every pass.

use super::{EgressError, Firewall, policy::Rules};
use std::{
    io::Write,
    process::{Command, Stdio},
};

pub struct Iptables {
    forward: String,
    input: String,
}

impl Iptables {
    /// The firewall for namespace `ns`, or why this host cannot have one.
    pub fn probe(ns: &str) -> Result<Iptables, EgressError> {
        let (forward, input) = super::policy::chains(ns);
        let fw = Iptables { forward, input };
        fw.run(&["-w", "-S", "INPUT"])
            .map_err(|e| EgressError::Command(format!("iptables does not answer: {e}")))?;
        Ok(fw)
    }

    fn run(&self, args: &[&str]) -> Result<String, EgressError> {
        let out = Command::new("iptables")
            .args(args)
            .output()
            .map_err(|e| EgressError::Command(format!("iptables {}: {e}", args.join(" "))))?;
        if !out.status.success() {
            return Err(EgressError::Command(format!(
                "iptables {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The rules of one chain as `-A` lines; empty when it does not exist.
    fn chain(&self, name: &str) -> Vec<String> {
        self.run(&["-w", "-S", name])
            .map(|t| {
                t.lines()
                    .filter(|l| l.starts_with("-A "))
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// True when the first rule of `parent` jumps to `chain`.
    fn hooked_first(&self, parent: &str, chain: &str) -> bool {
        let first = self.chain(parent).into_iter().next();
        first.as_deref() == Some(&format!("-A {parent} -j {chain}"))
    }

    /// Makes the jump from `parent` to `chain` its first rule, and the only such jump.
    fn hook(&self, parent: &str, chain: &str) -> Result<(), EgressError> {
        if self.hooked_first(parent, chain) {
            return Ok(());
        }
        while self.run(&["-w", "-D", parent, "-j", chain]).is_ok() {}
        self.run(&["-w", "-I", parent, "1", "-j", chain])
            .map(|_| ())
    }

    /// Docker's hook for user rules; FORWARD itself when dockerd runs without iptables.
    fn forward_parent(&self) -> &'static str {
        if self.run(&["-w", "-S", "DOCKER-USER"]).is_ok() {
            "DOCKER-USER"
        } else {
            "FORWARD"
        }
    }

    fn restore(&self, rules: &Rules) -> Result<(), EgressError> {
        let mut text = format!(
            "*filter\n:{} - [0:0]\n:{} - [0:0]\n",
            self.forward, self.input
        );
        for l in rules.forward.iter().chain(&rules.input) {
            text.push_str(l);
            text.push('\n');
        }
        text.push_str("COMMIT\n");
        let mut child = Command::new("iptables-restore")
            .args(["-w", "--noflush"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| EgressError::Command(format!("iptables-restore: {e}")))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(text.as_bytes())
                .map_err(|e| EgressError::Command(format!("iptables-restore: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| EgressError::Command(format!("iptables-restore: {e}")))?;
        if !out.status.success() {
            return Err(EgressError::Command(format!(
                "iptables-restore: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

impl Firewall for Iptables {
    fn current(&self) -> Result<Option<Rules>, EgressError> {
        let parent = self.forward_parent();
        if !self.hooked_first(parent, &self.forward) || !self.hooked_first("INPUT", &self.input) {
            return Ok(None);
        }
        Ok(Some(Rules {
            forward: self.chain(&self.forward),
            input: self.chain(&self.input),
        }))
    }

    fn install(&self, rules: &Rules) -> Result<(), EgressError> {
        // Chains first (filled in one commit), then the jumps into them.
        self.restore(rules)?;
        self.hook(self.forward_parent(), &self.forward)?;
        self.hook("INPUT", &self.input)
    }
}
