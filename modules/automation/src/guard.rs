//! The SSRF guard for outgoing webhooks: destinations on loopback, private, link-local (and
//! other non-public) addresses are refused unless the administrator allows them. URLs are checked
//! when saved, and the address a host name resolves to is checked again at every delivery, by the
//! resolver the HTTP client connects through (so a name that later points inside is caught).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address is not public, or None for a public one.
pub(crate) fn non_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_broadcast() || v4.is_multicast() || o[0] >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if first & 0xfe00 == 0xfc00 {
                Some("private (unique local)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if v6.is_multicast() {
                Some("reserved")
            } else {
                None
            }
        }
    }
}

pub(crate) fn refusal(what: &str, kind: &str) -> String {
    format!(
        "{what} is a {kind} address; such destinations are refused unless the administrator sets \
         [automation] allow_private_destinations = true"
    )
}

/// Checks a destination URL as written: http or https, with a host, and (unless allowed) not an
/// address literal or `localhost` that is not public.
pub(crate) fn check_url(url: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    if url.chars().count() > 2_000 {
        return Err("a URL is at most 2,000 characters".into());
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("the URL must start with http:// or https://".into());
    }
    let host = match parsed.host() {
        Some(h) => h,
        None => return Err("the URL has no host".into()),
    };
    if !allow_private {
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(d) => {
                let d = d.trim_end_matches('.').to_ascii_lowercase();
                if d == "localhost" || d.ends_with(".localhost") {
                    return Err(refusal(&d, "loopback"));
                }
                None
            }
        };
        if let Some(ip) = ip
            && let Some(kind) = non_public(ip)
        {
            return Err(refusal(&ip.to_string(), kind));
        }
    }
    Ok(parsed)
}

/// A refused resolution, recognised in the client's error chain.
#[derive(Debug)]
pub(crate) struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The refusal behind a client error, if the guard refused the destination.
pub(crate) fn refused_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Refused>() {
            return Some(r.0.clone());
        }
        cur = err.source();
    }
    None
}

/// Resolves through the system resolver and refuses non-public addresses (unless allowed).
pub(crate) struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !allow
                && let Some((ip, kind)) = addrs
                    .iter()
                    .find_map(|a| non_public(a.ip()).map(|k| (a.ip(), k)))
            {
                return Err(Box::new(Refused(refusal(&format!("{host} ({ip})"), kind)))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_addresses_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/h",
            "http://10.1.2.3/h",
            "http://172.16.0.1/h",
            "http://192.168.1.1/h",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/h",
            "http://[fe80::1]/h",
            "http://[fd00::1]/h",
            "http://[::ffff:127.0.0.1]/h",
            "http://0.0.0.0/h",
            "http://100.64.0.1/h",
            "http://localhost:9/h",
        ] {
            assert!(check_url(url, false).is_err(), "{url}");
            assert!(check_url(url, true).is_ok(), "{url}");
        }
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("http://93.184.216.34/x", false).is_ok());
        assert!(check_url("ftp://example.com/x", true).is_err());
        assert!(check_url("not a url", true).is_err());
        let msg = check_url("http://127.0.0.1/", false).unwrap_err();
        assert!(msg.contains("loopback") && msg.contains("allow_private_destinations"));
    }

    #[tokio::test]
    async fn names_resolving_inside_are_refused_at_connect_time() {
        let guarded = GuardedResolver {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        let err = match guarded.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        let refused = refused_in(err.as_ref()).expect("a refusal");
        assert!(
            refused.contains("localhost") && refused.contains("loopback"),
            "{refused}"
        );
        let open = GuardedResolver {
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
    }
}
