//! Where a remote domain's server listens: the static `[s2s] hosts` map first (also
//! changeable at run time, for tests and operators), then DNS SRV `_xmpp-server._tcp`
//! (RFC 6120 §3.2.1), then the domain itself on port 5269 (§3.2.2).
//!
//! DNS sits behind [`Resolve`], so tests never depend on the network.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

/// The standard server-to-server port (RFC 6120 §14.7).
pub const S2S_PORT: u16 = 5269;

/// Host and port candidates for a domain, in the order to try them.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    async fn resolve(&self, domain: &str) -> Vec<(String, u16)>;
}

/// `HOST:PORT` (`[v6]:PORT` for IPv6 addresses) split in two.
pub fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// The static map in front of a DNS resolver.
pub struct Resolver {
    hosts: RwLock<HashMap<String, (String, u16)>>,
    dns: Box<dyn Resolve>,
}

impl Resolver {
    pub fn new(hosts: &std::collections::BTreeMap<String, String>, dns: Box<dyn Resolve>) -> Self {
        let hosts = hosts
            .iter()
            .filter_map(|(domain, addr)| {
                Some((domain.to_ascii_lowercase(), parse_host_port(addr)?))
            })
            .collect();
        Resolver {
            hosts: RwLock::new(hosts),
            dns,
        }
    }

    /// Sends `domain` to `host`:`port` from now on, whatever DNS says.
    pub fn map_host(&self, domain: &str, host: &str, port: u16) {
        self.hosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), (host.to_owned(), port));
    }

    pub async fn resolve(&self, domain: &str) -> Vec<(String, u16)> {
        let mapped = self
            .hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&domain.to_ascii_lowercase())
            .cloned();
        match mapped {
            Some(target) => vec![target],
            None => self.dns.resolve(domain).await,
        }
    }
}

/// DNS SRV records, else the domain on 5269.
pub struct Dns;

#[async_trait]
impl Resolve for Dns {
    async fn resolve(&self, domain: &str) -> Vec<(String, u16)> {
        use hickory_resolver::TokioResolver;
        use hickory_resolver::proto::rr::RData;
        let fallback = vec![(domain.to_owned(), S2S_PORT)];
        let resolver = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(resolver) => resolver,
            Err(e) => {
                tracing::debug!(error = %e, "no DNS resolver; trying the domain itself");
                return fallback;
            }
        };
        let name = format!("_xmpp-server._tcp.{domain}.");
        let mut records: Vec<(u16, String, u16)> = match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some((
                        srv.priority,
                        srv.target.to_ascii().trim_end_matches('.').to_owned(),
                        srv.port,
                    )),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(%name, error = %e, "no SRV records");
                Vec::new()
            }
        };
        // RFC 6120 §3.2.1: a single record with target "." means no service.
        if records.len() == 1 && records[0].1.is_empty() {
            return Vec::new();
        }
        records.retain(|r| !r.1.is_empty());
        if records.is_empty() {
            return fallback;
        }
        // Lower priority first; weights are not balanced here (one connection per domain).
        records.sort_by_key(|r| r.0);
        records
            .into_iter()
            .map(|(_, host, port)| (host, port))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    #[async_trait]
    impl Resolve for Nothing {
        async fn resolve(&self, _: &str) -> Vec<(String, u16)> {
            Vec::new()
        }
    }

    #[test]
    fn host_ports_parse() {
        assert_eq!(
            parse_host_port("127.0.0.1:5270"),
            Some(("127.0.0.1".into(), 5270))
        );
        assert_eq!(parse_host_port("[::1]:5269"), Some(("::1".into(), 5269)));
        assert_eq!(parse_host_port("example.org"), None);
        assert_eq!(parse_host_port(":5269"), None);
    }

    #[tokio::test]
    async fn the_static_map_comes_first() {
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert("A.test".to_string(), "127.0.0.1:1".to_string());
        let resolver = Resolver::new(&hosts, Box::new(Nothing));
        assert_eq!(
            resolver.resolve("a.test").await,
            [("127.0.0.1".to_string(), 1)]
        );
        assert!(resolver.resolve("b.test").await.is_empty());
        resolver.map_host("b.test", "127.0.0.2", 2);
        assert_eq!(
            resolver.resolve("b.test").await,
            [("127.0.0.2".to_string(), 2)]
        );
    }
}
