//! Who is viewing, without knowing who (SPEC §4): the client address
//! behind trusted proxies, the daily-salted `viewer_key`, and the rate
//! limiter's per-process client key.
//!
//! Must not: keep or return a raw IP address or User-Agent beyond the
//! request that carried it. Only keyed hashes leave this module.

use std::net::IpAddr;

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;

/// The client's address: the socket peer, unless the peer is a trusted
/// proxy, in which case `X-Forwarded-For` is walked from the right,
/// skipping further trusted proxies.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(xff) = forwarded_for else {
        return peer;
    };
    let mut client = peer;
    for hop in xff.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(&ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

/// `viewer_key` (SPEC §4): 64 bits of HMAC-SHA256 keyed by the daily salt
/// over (client IP, User-Agent, org). Never 0, which means "no key".
pub fn viewer_key(salt: &[u8], ip: IpAddr, user_agent: &str, org_id: &str) -> u64 {
    ViewerKeyer::new(salt).key(ip, user_agent, org_id)
}

/// [`viewer_key`] with the HMAC key schedule of one salt done once: a
/// pixel then costs only the hashing of its own input.
#[derive(Clone)]
pub struct ViewerKeyer(Hmac<Sha256>);

impl ViewerKeyer {
    pub fn new(salt: &[u8]) -> Self {
        ViewerKeyer(Hmac::<Sha256>::new_from_slice(salt).expect("HMAC takes keys of any length"))
    }

    /// The viewer key of (client IP, User-Agent, org) under this salt.
    pub fn key(&self, ip: IpAddr, user_agent: &str, org_id: &str) -> u64 {
        let mut m = self.0.clone();
        match ip {
            IpAddr::V4(v4) => m.update(&v4.octets()),
            IpAddr::V6(v6) => m.update(&v6.octets()),
        }
        m.update(b"\0");
        m.update(user_agent.as_bytes());
        m.update(b"\0");
        m.update(org_id.as_bytes());
        let out = m.finalize().into_bytes();
        let key = u64::from_be_bytes(out[..8].try_into().expect("8 bytes"));
        key.max(1)
    }
}

/// The rate limiter's key of a client: (IP, User-Agent) hashed with
/// `hasher`, a process-local random SipHash key. It never leaves the
/// process, so a fast keyed hash serves; no raw address is kept.
pub fn client_key(hasher: &std::hash::RandomState, ip: IpAddr, user_agent: &str) -> u64 {
    std::hash::BuildHasher::hash_one(hasher, (ip, user_agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer: IpAddr = "10.1.2.3".parse().unwrap();
        let outside: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(client_ip(outside, Some("1.2.3.4"), &trusted), outside);
        assert_eq!(
            client_ip(peer, Some("198.51.100.1, 10.2.2.2"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            client_ip(peer, Some("6.6.6.6, 198.51.100.1"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(peer, None, &trusted), peer);
        assert_eq!(client_ip(peer, Some("garbage"), &trusted), peer);
    }

    #[test]
    fn viewer_keys_depend_on_every_input() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let k = viewer_key(b"salt-a", ip, "UA", "acme");
        assert_eq!(k, viewer_key(b"salt-a", ip, "UA", "acme"));
        assert_ne!(k, viewer_key(b"salt-b", ip, "UA", "acme"));
        assert_ne!(
            k,
            viewer_key(b"salt-a", "198.51.100.8".parse().unwrap(), "UA", "acme")
        );
        assert_ne!(k, viewer_key(b"salt-a", ip, "UA2", "acme"));
        assert_ne!(k, viewer_key(b"salt-a", ip, "UA", "other"));
        assert_ne!(k, 0);
    }
}
