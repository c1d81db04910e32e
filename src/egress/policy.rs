//! The egress policy as iptables rules (pure): tenants reach their own network and the public
//! internet; link-local, private and shared ranges and the host itself are dropped, except what
//! a plan allows and the host's DNS resolvers on port 53.

use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

pub use crate::desired::egress::{Allow, BLOCKED, Proto, parse_allow};

/// A tenant's network and what its plan allows beyond the default.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantNet {
    pub tenant: String,
    pub subnet: Ipv4Net,
    pub allow: Vec<Allow>,
}

/// Berth's two chains: one jumped to from Docker's `DOCKER-USER` (forwarded traffic), one
/// from `INPUT` (traffic to the host itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub forward: Vec<String>,
    pub input: Vec<String>,
}

/// The chain names of one namespace (iptables allows 28 characters; namespaces have ≤ 20).
pub fn chains(ns: &str) -> (String, String) {
    (format!("b-{ns}-fwd"), format!("b-{ns}-in"))
}

fn port_match(port: Option<(u16, Proto)>) -> String {
    match port {
        None => String::new(),
        Some((p, proto)) => format!(" -p {0} -m {0} --dport {p}", proto.name()),
    }
}

/// The rules, in the form `iptables -S` prints them back, so a pass compares text.
pub fn rules(ns: &str, pool: Ipv4Net, tenants: &[TenantNet], resolvers: &[Ipv4Addr]) -> Rules {
    let (fwd, input) = chains(ns);
    let mut f = vec![
        // Replies to connections made to the tenant, and traffic inside its own bridge.
        format!("-A {fwd} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"),
        format!("-A {fwd} -m physdev --physdev-is-bridged -j RETURN"),
    ];
    for t in tenants {
        for a in &t.allow {
            let p = port_match(a.port);
            f.push(format!(
                "-A {fwd} -s {} -d {}{p} -j RETURN",
                t.subnet, a.net
            ));
        }
    }
    let blocked: Vec<Ipv4Net> = BLOCKED.iter().map(|(n, _)| n.parse().unwrap()).collect();
    for r in resolvers
        .iter()
        .filter(|r| blocked.iter().any(|b| b.contains(*r)))
    {
        for proto in ["udp", "tcp"] {
            f.push(format!(
                "-A {fwd} -s {pool} -d {r}/32 -p {proto} -m {proto} --dport 53 -j RETURN"
            ));
        }
    }
    for b in &blocked {
        f.push(format!("-A {fwd} -s {pool} -d {b} -j DROP"));
    }
    let i = vec![
        format!("-A {input} -s {pool} -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"),
        format!("-A {input} -s {pool} -j DROP"),
    ];
    Rules {
        forward: f,
        input: i,
    }
}

/// One network a container is attached to: its range and the host's address on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attached {
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// The same policy inside one tenant container's own network namespace (`iptables-restore`
/// input for its filter table), so it holds while the host's chains are flushed or not yet
/// back: loopback and replies to connections made to the container pass; its own networks (not the host's address on them), its
/// plan's allows and the resolvers on port 53 are reached; the blocked ranges, the gateways
/// and the host's own addresses are dropped. The tenant cannot change it (no NET_ADMIN).
pub fn seal(
    nets: &[Attached],
    allow: &[Allow],
    resolvers: &[Ipv4Addr],
    host: &[Ipv4Addr],
) -> String {
    let mut r = vec![
        "*filter".to_string(),
        ":INPUT ACCEPT [0:0]".into(),
        ":FORWARD DROP [0:0]".into(),
        ":OUTPUT ACCEPT [0:0]".into(),
        "-A OUTPUT -o lo -j ACCEPT".into(),
        // Replies to connections made to the container only: a connection the tenant opened
        // (in the moment before the seal, say) is checked packet by packet like a new one.
        "-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED --ctdir REPLY -j ACCEPT".into(),
    ];
    for d in resolvers {
        for proto in ["udp", "tcp"] {
            r.push(format!(
                "-A OUTPUT -d {d}/32 -p {proto} -m {proto} --dport 53 -j ACCEPT"
            ));
        }
    }
    // The host, on every address it has (gateways included), before any allow: a plan's
    // allow of a private range never opens the host itself (its INPUT chain agrees).
    let gateways = nets.iter().map(|n| n.gateway);
    let mut hosts: Vec<Ipv4Addr> = gateways.chain(host.iter().copied()).collect();
    hosts.sort();
    hosts.dedup();
    for h in hosts {
        r.push(format!("-A OUTPUT -d {h}/32 -j DROP"));
    }
    for n in nets {
        r.push(format!("-A OUTPUT -d {} -j ACCEPT", n.subnet));
    }
    for a in allow {
        r.push(format!(
            "-A OUTPUT -d {}{} -j ACCEPT",
            a.net,
            port_match(a.port)
        ));
    }
    for (net, _) in BLOCKED {
        r.push(format!("-A OUTPUT -d {net} -j DROP"));
    }
    r.push("COMMIT".into());
    r.join("\n") + "\n"
}

/// The host's DNS resolvers (nameserver lines of resolv.conf files), for the port-53 allow.
pub fn resolvers(texts: &[String]) -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|a| a.trim().parse().ok())
        .filter(|a: &Ipv4Addr| !a.is_loopback())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_are_a_network_with_an_optional_port() {
        let a = parse_allow("10.1.2.3:587").unwrap();
        assert_eq!(a.to_string(), "10.1.2.3/32:587");
        assert_eq!(
            parse_allow("192.168.50.0/24").unwrap().to_string(),
            "192.168.50.0/24"
        );
        assert_eq!(
            parse_allow("10.0.0.53:53/udp").unwrap().port,
            Some((53, Proto::Udp))
        );
        for bad in [
            "10.1.2.3/33",
            "10.1.2.0/16",
            "x",
            "10.1.2.3:0",
            "10.1.2.3:99999",
            "::1",
        ] {
            assert!(parse_allow(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn every_tenant_is_denied_the_private_ranges_and_the_host_with_its_allows_first() {
        let pool: Ipv4Net = "10.240.0.0/16".parse().unwrap();
        let t = TenantNet {
            tenant: "acme".into(),
            subnet: "10.240.0.16/28".parse().unwrap(),
            allow: vec![parse_allow("192.168.9.9:25").unwrap()],
        };
        let r = rules("berth", pool, &[t], &["10.0.0.2".parse().unwrap()]);
        let allow =
            "-A b-berth-fwd -s 10.240.0.16/28 -d 192.168.9.9/32 -p tcp -m tcp --dport 25 -j RETURN";
        let dns =
            "-A b-berth-fwd -s 10.240.0.0/16 -d 10.0.0.2/32 -p udp -m udp --dport 53 -j RETURN";
        let meta = "-A b-berth-fwd -s 10.240.0.0/16 -d 169.254.0.0/16 -j DROP";
        let pos = |x: &str| r.forward.iter().position(|l| l == x).expect(x);
        assert!(pos(allow) < pos(meta) && pos(dns) < pos(meta));
        for (net, _) in BLOCKED {
            pos(&format!("-A b-berth-fwd -s 10.240.0.0/16 -d {net} -j DROP"));
        }
        assert_eq!(
            r.input.last().unwrap(),
            "-A b-berth-in -s 10.240.0.0/16 -j DROP"
        );
    }

    #[test]
    fn public_and_loopback_resolvers_need_no_rule() {
        let conf =
            "# x\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nnameserver 1.1.1.1\n".to_string();
        assert_eq!(
            resolvers(&[conf]),
            vec![
                "1.1.1.1".parse::<Ipv4Addr>().unwrap(),
                "10.0.0.2".parse().unwrap()
            ]
        );
        let pool: Ipv4Net = "10.240.0.0/16".parse().unwrap();
        let r = rules("b", pool, &[], &["1.1.1.1".parse().unwrap()]);
        assert!(!r.forward.iter().any(|l| l.contains("--dport 53")));
    }

    #[test]
    fn a_sealed_namespace_reaches_its_network_and_allows_but_no_gateway_range_or_host() {
        let net = Attached {
            subnet: "10.240.0.16/28".parse().unwrap(),
            gateway: "10.240.0.17".parse().unwrap(),
        };
        let allow = [parse_allow("192.168.9.9:25").unwrap()];
        let host: [Ipv4Addr; 2] = ["10.0.0.5".parse().unwrap(), "8.8.4.4".parse().unwrap()];
        let allow = [allow[0].clone(), parse_allow("10.0.0.0/8:5432").unwrap()];
        let text = seal(&[net], &allow, &["10.0.0.2".parse().unwrap()], &host);
        let lines: Vec<&str> = text.lines().collect();
        let pos = |x: &str| lines.iter().position(|l| *l == x).expect(x);
        let gw = pos("-A OUTPUT -d 10.240.0.17/32 -j DROP");
        let own = pos("-A OUTPUT -d 10.240.0.16/28 -j ACCEPT");
        let smtp = pos("-A OUTPUT -d 192.168.9.9/32 -p tcp -m tcp --dport 25 -j ACCEPT");
        let dns = pos("-A OUTPUT -d 10.0.0.2/32 -p udp -m udp --dport 53 -j ACCEPT");
        let meta = pos("-A OUTPUT -d 169.254.0.0/16 -j DROP");
        let private = pos("-A OUTPUT -d 10.0.0.0/8 -j DROP");
        let pg = pos("-A OUTPUT -d 10.0.0.0/8 -p tcp -m tcp --dport 5432 -j ACCEPT");
        assert!(pos("-A OUTPUT -o lo -j ACCEPT") < gw && gw < own);
        assert!(own < private && smtp < private && dns < meta);
        // Every address of the host is dropped before any allow (a private one too), and
        // the resolvers on 53 before that.
        for h in ["8.8.4.4", "10.0.0.5"] {
            let at = pos(&format!("-A OUTPUT -d {h}/32 -j DROP"));
            assert!(dns < at && at < smtp && at < pg && at < own, "{h}");
        }
        assert_eq!((lines[0], *lines.last().unwrap()), ("*filter", "COMMIT"));
    }
}
