//! The SSRF guard of webhook deliveries (OWASP API7): loopback, private, link-local (the cloud
//! metadata address included), CGNAT, unspecified, multicast and IPv4-mapped forms of these are
//! refused when an endpoint is registered and again at connect time by the client's own resolver,
//! so a DNS answer that changes after registration (rebinding) cannot reach them either.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

/// Why an address may not be a webhook target, or None when it may.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4).map(|_| "an IPv4-mapped private address");
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if seg[0] == 0x64 && seg[1] == 0xff9b {
                // NAT64 of an IPv4 address: judge the embedded one.
                let v4 = Ipv4Addr::new(
                    (seg[6] >> 8) as u8,
                    seg[6] as u8,
                    (seg[7] >> 8) as u8,
                    seg[7] as u8,
                );
                forbidden_v4(v4).map(|_| "a NAT64 form of a private address")
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    if ip.is_loopback() {
        Some("loopback")
    } else if ip.is_private() {
        Some("private")
    } else if ip.is_link_local() {
        Some("link-local (cloud metadata)")
    } else if ip.is_unspecified() || o[0] == 0 {
        Some("unspecified")
    } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
        Some("shared (CGNAT)")
    } else if ip.is_broadcast() || ip.is_multicast() {
        Some("broadcast or multicast")
    } else if o[0] == 198 && (o[1] == 18 || o[1] == 19) {
        Some("benchmarking")
    } else {
        None
    }
}

/// A refused target, worded for the API and the delivery log.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{host} resolves to {ip} ({why}): webhook targets must be public (INSIGHTS_WEBHOOK_ALLOW_PRIVATE=true allows private ones)"
)]
pub struct Refused {
    pub host: String,
    pub ip: IpAddr,
    pub why: &'static str,
}

/// Why a host cannot be a target.
#[derive(Debug, Clone, thiserror::Error)]
pub enum HostError {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{0}")]
    Unresolved(String),
}

/// Resolves `host` and refuses it if any address it resolves to is forbidden.
pub async fn check_host(host: &str, port: u16) -> Result<Vec<SocketAddr>, HostError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| HostError::Unresolved(format!("cannot resolve {host}: {e}")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(HostError::Unresolved(format!(
            "{host} resolves to no address"
        )));
    }
    for a in &addrs {
        if let Some(why) = forbidden(a.ip()) {
            return Err(HostError::Refused(Refused {
                host: host.to_string(),
                ip: a.ip(),
                why,
            }));
        }
    }
    Ok(addrs)
}

/// reqwest resolver that drops forbidden addresses (and fails when none is left).
#[derive(Debug, Default)]
pub struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs = check_host(&host, 0).await.map_err(
                |e| -> Box<dyn std::error::Error + Send + Sync> { e.to_string().into() },
            )?;
            let iter: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(iter)
        })
    }
}

/// The delivery client: no redirects, the guard in its resolver unless private targets are allowed.
pub fn client(
    allow_private: bool,
    timeout: std::time::Duration,
) -> anyhow::Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!(
            "call-insights-webhooks/",
            env!("CARGO_PKG_VERSION")
        ))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(30));
    if !allow_private {
        b = b.dns_resolver(Arc::new(GuardedResolver));
    }
    Ok(b.build()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "224.0.0.1",
        ] {
            assert!(forbidden(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "100.128.0.1",
        ] {
            assert!(forbidden(ip.parse().unwrap()).is_none(), "{ip}");
        }
    }

    #[tokio::test]
    async fn literal_and_named_private_hosts_are_refused() {
        let e = check_host("127.0.0.1", 80).await.unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
        let e = check_host("[::ffff:169.254.169.254]", 80)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPv4-mapped"), "{e}");
        let e = check_host("localhost", 80).await.unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
    }
}
