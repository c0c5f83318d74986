//! Finding the account's server (RFC 6120 §3.2, XEP-0368): DNS SRV records for direct TLS
//! (`_xmpps-client._tcp`) first, then for STARTTLS (`_xmpp-client._tcp`), then the domain
//! itself on the default port.
//!
//! Within each kind, records go by priority, and within a priority by a weighted random
//! draw (RFC 2782). A record whose target is `.` says the service is not offered there.
//! Whatever the host, the certificate is checked against the account's domain (RFC 7590),
//! so a forged record can divert the connection but not impersonate the server.

use std::net::SocketAddr;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;

use crate::error::ConnectError;
use crate::login::Security;

/// A place to try, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Candidate {
    pub host: String,
    pub port: u16,
    pub security: Security,
}

/// One SRV record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// Where to connect for `domain`: SRV records by `resolver` (the system's, or the given DNS
/// server), then the domain on the default port. `security` is the builder's: with
/// [`Security::DangerPlaintext`] only plaintext places are tried, with
/// [`Security::DirectTls`] only direct TLS ones.
pub(crate) async fn candidates(
    domain: &str,
    security: Security,
    dns_server: Option<SocketAddr>,
    random: &mut impl FnMut() -> u64,
) -> Result<Vec<Candidate>, ConnectError> {
    let resolver = resolver(dns_server)?;
    let lookup = async |service: &str| -> Vec<Srv> {
        let name = format!("{service}.{domain}.");
        match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(Srv {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_ascii(),
                    }),
                    _ => None,
                })
                .collect(),
            // No records (or no answer): the next way is tried.
            Err(e) => {
                tracing::debug!(%name, error = %e, "no SRV records");
                Vec::new()
            }
        }
    };
    let direct = if security == Security::DangerPlaintext {
        Vec::new()
    } else {
        lookup("_xmpps-client._tcp").await
    };
    let starttls = if security == Security::DirectTls {
        Vec::new()
    } else {
        lookup("_xmpp-client._tcp").await
    };
    Ok(order(domain, security, direct, starttls, random))
}

/// The candidates from the records found (see the module notes).
pub(crate) fn order(
    domain: &str,
    security: Security,
    direct: Vec<Srv>,
    starttls: Vec<Srv>,
    random: &mut impl FnMut() -> u64,
) -> Vec<Candidate> {
    let plain = match security {
        Security::DangerPlaintext => Security::DangerPlaintext,
        Security::StartTls | Security::DirectTls => Security::StartTls,
    };
    let mut places = Vec::new();
    for (records, security) in [(direct, Security::DirectTls), (starttls, plain)] {
        for srv in by_priority_and_weight(records, random) {
            let host = srv.target.trim_end_matches('.');
            if host.is_empty() {
                // "." : no such service at this domain.
                continue;
            }
            places.push(Candidate {
                host: host.to_owned(),
                port: srv.port,
                security,
            });
        }
    }
    if places.is_empty() {
        let port = if security == Security::DirectTls {
            5223
        } else {
            5222
        };
        let security = if security == Security::DirectTls {
            Security::DirectTls
        } else {
            plain
        };
        places.push(Candidate {
            host: domain.to_owned(),
            port,
            security,
        });
    }
    places
}

/// RFC 2782's order: lowest priority first; within one, a draw weighted by `weight` (a
/// weight of 0 has a small chance, before any drawn by weight when all are 0).
fn by_priority_and_weight(mut records: Vec<Srv>, random: &mut impl FnMut() -> u64) -> Vec<Srv> {
    records.sort_by_key(|r| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let (mut group, after) = (rest[..same].to_vec(), &rest[same..]);
        // Zero weights first, as RFC 2782 suggests, so they get a chance.
        group.sort_by_key(|r| r.weight != 0);
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut point = random() % (total + 1);
                group
                    .iter()
                    .position(|r| {
                        let weight = u64::from(r.weight);
                        if point <= weight {
                            true
                        } else {
                            point -= weight;
                            false
                        }
                    })
                    .unwrap_or(group.len() - 1)
            };
            ordered.push(group.remove(pick));
        }
        rest = after;
    }
    ordered
}

fn resolver(dns_server: Option<SocketAddr>) -> Result<TokioResolver, ConnectError> {
    let dns_error = |e: &dyn std::fmt::Display| ConnectError::Config(format!("DNS: {e}"));
    let builder = match dns_server {
        None => TokioResolver::builder_tokio().map_err(|e| dns_error(&e))?,
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let name_server = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![name_server]),
                TokioRuntimeProvider::default(),
            )
        }
    };
    builder.build().map_err(|e| dns_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.into(),
        }
    }

    fn ports(places: &[Candidate]) -> Vec<u16> {
        places.iter().map(|c| c.port).collect()
    }

    #[test]
    fn direct_tls_first_then_starttls_by_priority() {
        let mut random = || 7;
        let places = order(
            "example.org",
            Security::StartTls,
            vec![
                srv(10, 0, 5223, "b.example.org."),
                srv(5, 0, 443, "a.example.org."),
            ],
            vec![srv(0, 0, 5222, "c.example.org.")],
            &mut random,
        );
        assert_eq!(ports(&places), [443, 5223, 5222]);
        assert_eq!(places[0].host, "a.example.org");
        assert_eq!(places[0].security, Security::DirectTls);
        assert_eq!(places[2].security, Security::StartTls);
    }

    #[test]
    fn no_records_means_the_domain_on_the_default_port() {
        let mut random = || 0;
        let places = order(
            "example.org",
            Security::StartTls,
            vec![],
            vec![],
            &mut random,
        );
        assert_eq!(
            places,
            [Candidate {
                host: "example.org".into(),
                port: 5222,
                security: Security::StartTls
            }]
        );
        let places = order(
            "example.org",
            Security::DirectTls,
            vec![],
            vec![],
            &mut random,
        );
        assert_eq!(
            (places[0].port, places[0].security),
            (5223, Security::DirectTls)
        );
    }

    #[test]
    fn a_dot_target_offers_no_service() {
        let mut random = || 0;
        let places = order(
            "example.org",
            Security::StartTls,
            vec![srv(0, 0, 0, ".")],
            vec![srv(0, 0, 5222, "xmpp.example.org.")],
            &mut random,
        );
        assert_eq!(ports(&places), [5222]);
        // Nothing at all offered: the domain itself is still tried.
        let places = order(
            "example.org",
            Security::StartTls,
            vec![srv(0, 0, 0, ".")],
            vec![],
            &mut random,
        );
        assert_eq!(places[0].host, "example.org");
    }

    #[test]
    fn weights_share_out_the_first_place() {
        // Weights 1 and 3: drawn over 0..=4, the heavier record comes first 3 times in 5
        // (points 2, 3, 4), the lighter for points 0 and 1.
        let records = vec![srv(0, 1, 1, "light."), srv(0, 3, 2, "heavy.")];
        let firsts: Vec<u16> = (0..5)
            .map(|point| {
                let mut random = || point;
                by_priority_and_weight(records.clone(), &mut random)[0].port
            })
            .collect();
        assert_eq!(firsts, [1, 1, 2, 2, 2]);
        // Every record is kept, whatever is drawn.
        let mut random = || u64::MAX;
        assert_eq!(by_priority_and_weight(records, &mut random).len(), 2);
    }
}
