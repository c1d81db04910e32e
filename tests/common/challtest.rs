//! pebble-challtestsrv (Debian's `pebble` package) as a DNS server the tests control: started
//! on loopback ports, records set through its management API, killed on drop.

use std::process::{Child, Command, Stdio};

pub struct ChallTest {
    child: Child,
    pub dns: u16,
    pub mgmt: u16,
}

impl ChallTest {
    /// Serves DNS on 127.0.0.1:`dns` (every A query answers 127.0.0.1) and its management API
    /// on 127.0.0.1:`mgmt`; its HTTP/TLS challenge servers stay off.
    pub fn start(dns: u16, mgmt: u16) -> ChallTest {
        let child = Command::new("pebble-challtestsrv")
            .args(["-management", &format!("127.0.0.1:{mgmt}")])
            .args(["-dns01", &format!("127.0.0.1:{dns}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv6", "", "-defaultIPv4", "127.0.0.1"])
            .stdout(Stdio::null())
            .spawn()
            .expect("pebble-challtestsrv runs (apt-get install pebble)");
        let c = ChallTest { child, dns, mgmt };
        super::wait_for(
            std::time::Duration::from_secs(10),
            || std::net::TcpStream::connect(("127.0.0.1", mgmt)).is_ok(),
            "challtestsrv management port",
        );
        c
    }

    /// POSTs `body` to a management endpoint (`/set-txt`, `/clear-txt`, `/add-a`, …).
    pub fn call(&self, path: &str, body: serde_json::Value) {
        let out = Command::new("curl")
            .args(["-sSf", "-X", "POST", "-d", &body.to_string()])
            .arg(format!("http://127.0.0.1:{}{path}", self.mgmt))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "challtestsrv {path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Publishes exactly one TXT value at `name` (replacing earlier ones).
    pub fn set_txt(&self, name: &str, value: &str) {
        let host = format!("{name}.");
        self.call("/clear-txt", serde_json::json!({ "host": host }));
        self.call(
            "/set-txt",
            serde_json::json!({ "host": host, "value": value }),
        );
    }
}

impl Drop for ChallTest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
