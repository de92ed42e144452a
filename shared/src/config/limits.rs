//! The API's request limits: `RATE_LIMIT_PER_MINUTE`, `TRUSTED_PROXIES` and
//! login throttling (`LOGIN_*`).

use std::net::IpAddr;
use std::time::Duration;

use super::Vars;

/// Request rates and login throttling, enforced across every API replica.
#[derive(Debug, Clone)]
pub struct LimitsConfig {
    /// `RATE_LIMIT_PER_MINUTE`: requests per user (per client IP when
    /// anonymous) in any 60 s; 0 turns the limit off.
    pub per_minute: u32,
    /// `TRUSTED_PROXIES`: addresses or CIDR blocks of the proxies in front
    /// of us; only through them is `X-Forwarded-For` believed.
    pub trusted_proxies: Vec<IpBlock>,
    /// `LOGIN_MAX_FAILURES`: failed logins per account in the window before
    /// further attempts get 429.
    pub login_max_failures: u32,
    /// `LOGIN_MAX_FAILURES_PER_IP`: the same per client IP.
    pub login_max_failures_per_ip: u32,
    /// `LOGIN_FAILURE_WINDOW_SECONDS`: the window failures are counted over.
    pub login_window: Duration,
}

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// Parses `addr` or `addr/prefix`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr =
            addr.trim().parse().map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { network, prefix })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

pub(super) fn read(v: &mut Vars) -> LimitsConfig {
    let mut trusted_proxies = Vec::new();
    for entry in v.list("TRUSTED_PROXIES") {
        match IpBlock::parse(&entry) {
            Ok(block) => trusted_proxies.push(block),
            Err(e) => v.problem("TRUSTED_PROXIES", e),
        }
    }
    LimitsConfig {
        per_minute: v.ranged("RATE_LIMIT_PER_MINUTE", 60, 0, 1_000_000),
        trusted_proxies,
        login_max_failures: v.ranged("LOGIN_MAX_FAILURES", 5, 1, 1000),
        login_max_failures_per_ip: v.ranged("LOGIN_MAX_FAILURES_PER_IP", 50, 1, 100_000),
        login_window: v.seconds("LOGIN_FAILURE_WINDOW_SECONDS", 900, 1, 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::IpBlock;

    #[test]
    fn blocks_contain_their_addresses_and_bad_ones_are_named() {
        let block = |s: &str| IpBlock::parse(s).expect(s);
        let ip = |s: &str| s.parse().expect(s);
        assert!(block("10.0.0.0/8").contains(ip("10.200.3.4")));
        assert!(!block("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(block("192.168.1.7").contains(ip("192.168.1.7")));
        assert!(!block("192.168.1.7").contains(ip("192.168.1.8")));
        assert!(block("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(block("2001:db8::/32").contains(ip("2001:db8:1::5")));
        assert!(!block("2001:db8::/32").contains(ip("2001:db9::5")));
        assert!(block("127.0.0.1").contains(ip("::ffff:127.0.0.1")), "IPv4-mapped");
        assert!(!block("::1").contains(ip("127.0.0.1")));
        assert!(IpBlock::parse("10.0.0.0/33").expect_err("33 bits").contains("0 to 32"));
        assert!(IpBlock::parse("proxy.local").expect_err("a name").contains("not an IP address"));
    }
}
