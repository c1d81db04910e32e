//! The tenants' address pool: one subnet per tenant, and inside each the two fixed addresses
//! its web container takes (current and blue-green next) above the range the engine hands out
//! to everything else on the network.

use std::net::Ipv4Addr;

/// The largest subnet prefix: a /28 holds the two web addresses above a /29 of six dynamic
/// ones (the tenant's other services, and the shared database server when attached).
pub const MAX_SUBNET_PREFIX: u8 = 28;

/// The smallest: no tenant network is bigger than a /16.
pub const MIN_SUBNET_PREFIX: u8 = 16;

/// An IPv4 range cut into equal subnets, numbered from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubnetPool {
    pub base: Ipv4Addr,
    pub pool_prefix: u8,
    pub subnet_prefix: u8,
}

impl SubnetPool {
    pub fn parse(cidr: &str, subnet_prefix: u8) -> Result<SubnetPool, super::Invalid> {
        use super::Invalid;
        let (ip, len) = cidr
            .split_once('/')
            .ok_or_else(|| Invalid::NotCidr(cidr.into()))?;
        let base: Ipv4Addr = ip.parse().map_err(|_| Invalid::NotIpv4(ip.into()))?;
        let pool_prefix: u8 = len
            .parse()
            .map_err(|_| Invalid::NotPrefixLength(len.into()))?;
        if pool_prefix > 30
            || !(MIN_SUBNET_PREFIX..=MAX_SUBNET_PREFIX).contains(&subnet_prefix)
            || subnet_prefix < pool_prefix
        {
            return Err(Invalid::SubnetDoesNotFit {
                subnet: subnet_prefix,
                pool: pool_prefix,
            });
        }
        if u32::from(base) & !mask(pool_prefix) != 0 {
            return Err(Invalid::HostBits(cidr.into()));
        }
        Ok(SubnetPool {
            base,
            pool_prefix,
            subnet_prefix,
        })
    }

    /// The whole pool as one network (the egress policy's default rules are keyed by it).
    pub fn net(&self) -> ipnet::Ipv4Net {
        ipnet::Ipv4Net::new(self.base, self.pool_prefix).expect("prefix checked at parse")
    }

    pub fn capacity(&self) -> u32 {
        1u32 << (self.subnet_prefix - self.pool_prefix)
    }

    fn start(&self, n: u32) -> u32 {
        u32::from(self.base) + (n << (32 - self.subnet_prefix))
    }

    /// The n-th subnet as `a.b.c.d/p`, and its gateway (first address).
    pub fn subnet(&self, n: u32) -> (String, String) {
        let start = self.start(n);
        (
            format!("{}/{}", Ipv4Addr::from(start), self.subnet_prefix),
            Ipv4Addr::from(start + 1).to_string(),
        )
    }

    /// The lower half of the n-th subnet: where the engine picks addresses on its own, so it
    /// never hands out a web address (the upper half) to another container.
    pub fn dynamic_range(&self, n: u32) -> String {
        format!(
            "{}/{}",
            Ipv4Addr::from(self.start(n)),
            self.subnet_prefix + 1
        )
    }

    /// How many addresses the engine can hand out in a tenant's range (its lower half, less
    /// the network address and the gateway).
    pub fn dynamic_capacity(&self) -> u32 {
        (1 << (32 - self.subnet_prefix - 1)) - 2
    }

    /// The fixed address of the n-th tenant's web container in `slot` (0 or 1; a blue-green
    /// upgrade starts the new container in the other one): the last two below broadcast.
    pub fn web_ip(&self, n: u32, slot: u8) -> Ipv4Addr {
        let broadcast = self.start(n) + ((1 << (32 - self.subnet_prefix)) - 1);
        Ipv4Addr::from(broadcast - 1 - u32::from(slot & 1))
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_16_pool_of_slash_28_subnets_holds_4096_tenants() {
        let p = SubnetPool::parse("10.240.0.0/16", 28).unwrap();
        assert_eq!(p.capacity(), 4096);
        assert_eq!(p.subnet(0), ("10.240.0.0/28".into(), "10.240.0.1".into()));
        assert_eq!(
            p.subnet(17),
            ("10.240.1.16/28".into(), "10.240.1.17".into())
        );
    }

    #[test]
    fn pools_with_host_bits_or_too_small_subnets_are_refused() {
        assert!(
            SubnetPool::parse("10.240.0.1/16", 28)
                .unwrap_err()
                .to_string()
                .contains("host bits")
        );
        assert!(SubnetPool::parse("10.240.0.0/16", 30).is_err());
    }

    #[test]
    fn web_addresses_sit_above_the_engine_s_range_and_the_two_slots_differ() {
        let p = SubnetPool::parse("10.240.0.0/16", 28).unwrap();
        assert_eq!(p.dynamic_range(17), "10.240.1.16/29");
        assert_eq!(p.dynamic_capacity(), 6, ".2 to .7");
        assert_eq!(p.web_ip(17, 0), Ipv4Addr::new(10, 240, 1, 30));
        assert_eq!(p.web_ip(17, 1), Ipv4Addr::new(10, 240, 1, 29));
        let range: ipnet::Ipv4Net = p.dynamic_range(17).parse().unwrap();
        let subnet: ipnet::Ipv4Net = p.subnet(17).0.parse().unwrap();
        for slot in [0, 1] {
            assert!(!range.contains(&p.web_ip(17, slot)));
            assert!(subnet.contains(&p.web_ip(17, slot)));
            assert_ne!(p.web_ip(17, slot), subnet.broadcast());
        }
    }

    #[test]
    fn a_subnet_too_small_for_the_web_addresses_and_a_range_is_refused() {
        let e = SubnetPool::parse("10.240.0.0/16", 29)
            .unwrap_err()
            .to_string();
        assert!(e.contains("/16 to /28"), "{e}");
        assert!(
            SubnetPool::parse("0.0.0.0/0", 0).is_err(),
            "no shift past 31"
        );
    }

    #[test]
    fn the_last_subnet_of_the_address_space_has_its_web_addresses_below_broadcast() {
        let p = SubnetPool::parse("255.255.255.0/24", 28).unwrap();
        assert_eq!(p.web_ip(15, 0), Ipv4Addr::new(255, 255, 255, 254));
        assert_eq!(p.web_ip(15, 1), Ipv4Addr::new(255, 255, 255, 253));
    }
}
