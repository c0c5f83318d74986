//! Where a remote domain's server listens, and whether it speaks TLS at once: the static
//! `[s2s] hosts` map first (also changeable at run time, for tests and operators), then DNS
//! SRV `_xmpps-server._tcp` (direct TLS, XEP-0368) and `_xmpp-server._tcp` (STARTTLS,
//! RFC 6120 §3.2.1) mixed into one order by priority and weight, then the domain itself on
//! port 5269 with STARTTLS (§3.2.2).
//!
//! DNS sits behind [`Resolve`], so tests never depend on the network.

use std::collections::HashMap;
use std::sync::RwLock;

use async_trait::async_trait;

/// The standard server-to-server port (RFC 6120 §14.7).
pub const S2S_PORT: u16 = 5269;

/// What a `[s2s] hosts` value starts with when the server there speaks TLS at once.
pub const DIRECT_TLS_PREFIX: &str = "tls://";

/// One place to try: a host, a port, and whether TLS starts at once (XEP-0368) or after
/// STARTTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
    pub direct_tls: bool,
}

impl Target {
    pub fn starttls(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
            direct_tls: false,
        }
    }

    pub fn direct_tls(host: &str, port: u16) -> Target {
        Target {
            host: host.to_owned(),
            port,
            direct_tls: true,
        }
    }
}

/// One SRV record (RFC 2782); `target` without its final dot, empty for ".".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Srv {
    pub priority: u16,
    pub weight: u16,
    pub port: u16,
    pub target: String,
}

/// DNS, as far as federation needs it.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// The SRV records at `name` (e.g. `_xmpp-server._tcp.example.org.`); none when there
    /// are none or DNS cannot be asked.
    async fn srv(&self, name: &str) -> Vec<Srv>;
}

/// `HOST:PORT` (`[v6]:PORT` for IPv6 addresses) split in two.
pub fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

/// A `[s2s] hosts` value: `HOST:PORT` for STARTTLS, `tls://HOST:PORT` for direct TLS (any
/// other `scheme://` is a mistake, not a host name).
pub fn parse_target(text: &str) -> Option<Target> {
    match text.strip_prefix(DIRECT_TLS_PREFIX) {
        Some(address) => {
            parse_host_port(address).map(|(host, port)| Target::direct_tls(&host, port))
        }
        None if text.contains("://") => None,
        None => parse_host_port(text).map(|(host, port)| Target::starttls(&host, port)),
    }
}

/// The static map in front of DNS.
pub struct Resolver {
    hosts: RwLock<HashMap<String, Target>>,
    dns: Box<dyn Resolve>,
}

impl Resolver {
    pub fn new(hosts: &std::collections::BTreeMap<String, String>, dns: Box<dyn Resolve>) -> Self {
        let hosts = hosts
            .iter()
            .filter_map(|(domain, text)| Some((domain.to_ascii_lowercase(), parse_target(text)?)))
            .collect();
        Resolver {
            hosts: RwLock::new(hosts),
            dns,
        }
    }

    /// Sends `domain` to `host`:`port` with STARTTLS from now on, whatever DNS says.
    pub fn map_host(&self, domain: &str, host: &str, port: u16) {
        self.map(domain, Target::starttls(host, port));
    }

    /// Sends `domain` to `host`:`port` with direct TLS from now on, whatever DNS says.
    pub fn map_host_direct_tls(&self, domain: &str, host: &str, port: u16) {
        self.map(domain, Target::direct_tls(host, port));
    }

    fn map(&self, domain: &str, target: Target) {
        self.hosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(domain.to_ascii_lowercase(), target);
    }

    /// The places to try for `domain`, in order.
    pub async fn resolve(&self, domain: &str) -> Vec<Target> {
        let mapped = self
            .hosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&domain.to_ascii_lowercase())
            .cloned();
        if let Some(target) = mapped {
            return vec![target];
        }
        let direct = format!("_xmpps-server._tcp.{domain}.");
        let starttls = format!("_xmpp-server._tcp.{domain}.");
        let (direct, starttls) = tokio::join!(self.dns.srv(&direct), self.dns.srv(&starttls));
        candidates(domain, direct, starttls, &mut random_up_to)
    }
}

/// Orders the targets of both SRV record sets, or falls back to the domain on 5269.
/// `pick(n)` is a uniformly random number in `0..=n` (RFC 2782's weighted choice).
fn candidates(
    domain: &str,
    direct: Vec<Srv>,
    starttls: Vec<Srv>,
    pick: &mut dyn FnMut(u32) -> u32,
) -> Vec<Target> {
    if direct.is_empty() && starttls.is_empty() {
        return vec![Target::starttls(domain, S2S_PORT)];
    }
    // RFC 2782, RFC 6120 §3.2.1: a lone record with target "." means "no such service
    // here". XEP-0368 §5: no direct TLS then, but STARTTLS records still count, and there is
    // no fallback to the domain itself either way (the domain does publish SRV records).
    let usable = |records: Vec<Srv>| -> Vec<Srv> {
        if records.len() == 1 && records[0].target.is_empty() {
            return Vec::new();
        }
        records
            .into_iter()
            .filter(|r| !r.target.is_empty())
            .collect()
    };
    // Direct TLS records listed first: among zero weights, where no draw decides, they are
    // tried first (XEP-0368 §3 lets the initiating side prefer one kind; it saves round
    // trips).
    let records: Vec<(Srv, bool)> = usable(direct)
        .into_iter()
        .map(|r| (r, true))
        .chain(usable(starttls).into_iter().map(|r| (r, false)))
        .collect();
    rfc2782_order(records, pick)
        .into_iter()
        .map(|(srv, direct_tls)| Target {
            host: srv.target,
            port: srv.port,
            direct_tls,
        })
        .collect()
}

/// XEP-0368 §3: both services' records in one RFC 2782 order: lower priority first; within
/// a priority, repeatedly a weighted random choice among those left, zero weights placed
/// first (so they are chosen only when the draw is 0, or when nothing else is left).
fn rfc2782_order(
    mut records: Vec<(Srv, bool)>,
    pick: &mut dyn FnMut(u32) -> u32,
) -> Vec<(Srv, bool)> {
    // Stable sorts: between equals, the given order stands.
    records.sort_by_key(|(r, _)| r.weight != 0);
    records.sort_by_key(|(r, _)| r.priority);
    let mut ordered = Vec::with_capacity(records.len());
    while !records.is_empty() {
        let priority = records[0].0.priority;
        let same = records
            .iter()
            .take_while(|(r, _)| r.priority == priority)
            .count();
        let mut group: Vec<(Srv, bool)> = records.drain(..same).collect();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|(r, _)| u32::from(r.weight)).sum();
            let draw = pick(total).min(total);
            let mut running = 0;
            let chosen = group
                .iter()
                .position(|(r, _)| {
                    running += u32::from(r.weight);
                    running >= draw
                })
                .unwrap_or(0);
            ordered.push(group.remove(chosen));
        }
    }
    ordered
}

/// A uniformly random number in `0..=max` (the modulo bias is negligible for SRV weights).
fn random_up_to(max: u32) -> u32 {
    let random = u64::from(getrandom::u32().unwrap_or(0));
    (random % (u64::from(max) + 1)) as u32
}

/// The system's DNS resolver.
pub struct Dns;

#[async_trait]
impl Resolve for Dns {
    async fn srv(&self, name: &str) -> Vec<Srv> {
        use hickory_resolver::TokioResolver;
        use hickory_resolver::proto::rr::RData;
        let resolver = match TokioResolver::builder_tokio().and_then(|b| b.build()) {
            Ok(resolver) => resolver,
            Err(e) => {
                tracing::debug!(error = %e, "no DNS resolver; trying the domain itself");
                return Vec::new();
            }
        };
        match resolver.srv_lookup(name).await {
            Ok(lookup) => lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(Srv {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_ascii().trim_end_matches('.').to_owned(),
                    }),
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::debug!(%name, error = %e, "no SRV records");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fixed SRV records by name.
    #[derive(Default)]
    struct FakeDns(HashMap<String, Vec<Srv>>);

    impl FakeDns {
        fn with(mut self, name: &str, records: &[(u16, u16, &str, u16)]) -> Self {
            let records = records
                .iter()
                .map(|&(priority, weight, target, port)| Srv {
                    priority,
                    weight,
                    port,
                    target: target.trim_end_matches('.').to_owned(),
                })
                .collect();
            self.0.insert(name.to_owned(), records);
            self
        }
    }

    #[async_trait]
    impl Resolve for FakeDns {
        async fn srv(&self, name: &str) -> Vec<Srv> {
            self.0.get(name).cloned().unwrap_or_default()
        }
    }

    const XMPPS: &str = "_xmpps-server._tcp.example.org.";
    const XMPP: &str = "_xmpp-server._tcp.example.org.";

    fn resolver(dns: FakeDns) -> Resolver {
        Resolver::new(&Default::default(), Box::new(dns))
    }

    fn srv(priority: u16, weight: u16, target: &str, port: u16) -> Srv {
        Srv {
            priority,
            weight,
            port,
            target: target.to_owned(),
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

    #[test]
    fn host_values_name_starttls_or_direct_tls() {
        assert_eq!(
            parse_target("127.0.0.1:5269"),
            Some(Target::starttls("127.0.0.1", 5269))
        );
        assert_eq!(
            parse_target("tls://[::1]:5270"),
            Some(Target::direct_tls("::1", 5270))
        );
        assert_eq!(parse_target("tls://example.org"), None);
        assert_eq!(parse_target("xmpps://example.org:5270"), None);
    }

    #[tokio::test]
    async fn the_static_map_comes_first() {
        let mut hosts = std::collections::BTreeMap::new();
        hosts.insert("A.test".to_string(), "127.0.0.1:1".to_string());
        hosts.insert("c.test".to_string(), "tls://127.0.0.3:3".to_string());
        let dns = FakeDns::default().with(
            "_xmpp-server._tcp.a.test.",
            &[(0, 0, "elsewhere.test", 5269)],
        );
        let resolver = Resolver::new(&hosts, Box::new(dns));
        assert_eq!(
            resolver.resolve("a.test").await,
            [Target::starttls("127.0.0.1", 1)]
        );
        assert_eq!(
            resolver.resolve("c.test").await,
            [Target::direct_tls("127.0.0.3", 3)]
        );
        resolver.map_host("b.test", "127.0.0.2", 2);
        assert_eq!(
            resolver.resolve("b.test").await,
            [Target::starttls("127.0.0.2", 2)]
        );
        resolver.map_host_direct_tls("b.test", "127.0.0.2", 5);
        assert_eq!(
            resolver.resolve("b.test").await,
            [Target::direct_tls("127.0.0.2", 5)]
        );
    }

    #[tokio::test]
    async fn without_srv_records_the_domain_is_tried_on_5269_with_starttls() {
        let resolver = resolver(FakeDns::default());
        assert_eq!(
            resolver.resolve("example.org").await,
            [Target::starttls("example.org", S2S_PORT)]
        );
    }

    #[tokio::test]
    async fn both_services_are_mixed_by_priority() {
        let dns = FakeDns::default()
            .with(
                XMPPS,
                &[
                    (10, 0, "tls-b.example.org.", 5270),
                    (5, 0, "tls-a.example.org.", 443),
                ],
            )
            .with(
                XMPP,
                &[
                    (7, 0, "plain.example.org.", 5269),
                    (20, 0, "last.example.org.", 5269),
                ],
            );
        assert_eq!(
            resolver(dns).resolve("example.org").await,
            [
                Target::direct_tls("tls-a.example.org", 443),
                Target::starttls("plain.example.org", 5269),
                Target::direct_tls("tls-b.example.org", 5270),
                Target::starttls("last.example.org", 5269),
            ]
        );
    }

    #[tokio::test]
    async fn only_starttls_records_give_starttls_targets() {
        let dns = FakeDns::default().with(XMPP, &[(0, 5, "xmpp.example.org.", 5269)]);
        assert_eq!(
            resolver(dns).resolve("example.org").await,
            [Target::starttls("xmpp.example.org", 5269)]
        );
    }

    #[tokio::test]
    async fn a_dot_record_withdraws_its_service_and_the_fallback() {
        // No direct TLS, STARTTLS as published (XEP-0368 §5).
        let dns = FakeDns::default()
            .with(XMPPS, &[(0, 0, ".", 0)])
            .with(XMPP, &[(0, 0, "xmpp.example.org.", 5269)]);
        assert_eq!(
            resolver(dns).resolve("example.org").await,
            [Target::starttls("xmpp.example.org", 5269)]
        );
        // Direct TLS only.
        let dns = FakeDns::default()
            .with(XMPPS, &[(0, 0, "tls.example.org.", 5270)])
            .with(XMPP, &[(0, 0, ".", 0)]);
        assert_eq!(
            resolver(dns).resolve("example.org").await,
            [Target::direct_tls("tls.example.org", 5270)]
        );
        // No federation at all, and no A/AAAA fallback (RFC 6120 §3.2.1, XEP-0368 §5).
        let dns = FakeDns::default().with(XMPP, &[(0, 0, ".", 0)]);
        assert!(resolver(dns).resolve("example.org").await.is_empty());
        let dns = FakeDns::default().with(XMPPS, &[(0, 0, ".", 0)]);
        assert!(resolver(dns).resolve("example.org").await.is_empty());
    }

    #[test]
    fn weights_share_a_priority_by_a_weighted_draw() {
        let direct = vec![srv(1, 10, "tls.example.org", 5270)];
        let starttls = vec![
            srv(1, 30, "heavy.example.org", 5269),
            srv(1, 0, "zero.example.org", 5269),
            srv(2, 50, "backup.example.org", 5269),
        ];
        let order = |draws: &[u32]| {
            let mut draws = draws.iter().copied();
            let mut pick = |_: u32| draws.next().unwrap_or(0);
            candidates("example.org", direct.clone(), starttls.clone(), &mut pick)
                .into_iter()
                .map(|t| t.host)
                .collect::<Vec<_>>()
        };
        // Priority 1 as zero, tls (10), heavy (30): running sums 0, 10, 40.
        // A draw of 0 takes the zero-weight record first.
        assert_eq!(
            order(&[0, 0, 0, 0]),
            [
                "zero.example.org",
                "tls.example.org",
                "heavy.example.org",
                "backup.example.org"
            ]
        );
        // 25 is past tls's 10: heavy; then of zero and tls (sums 0, 10), 5 takes tls.
        assert_eq!(
            order(&[25, 5, 0, 0]),
            [
                "heavy.example.org",
                "tls.example.org",
                "zero.example.org",
                "backup.example.org"
            ]
        );
        // Listed first, direct TLS takes the draws up to its weight.
        let tie = |draw| {
            candidates(
                "example.org",
                vec![srv(0, 10, "tls.example.org", 5270)],
                vec![srv(0, 10, "plain.example.org", 5269)],
                &mut |_| draw,
            )[0]
            .clone()
        };
        assert_eq!(tie(10), Target::direct_tls("tls.example.org", 5270));
        assert_eq!(tie(11), Target::starttls("plain.example.org", 5269));
    }
}
