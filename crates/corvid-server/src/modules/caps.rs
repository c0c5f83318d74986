//! XEP-0115 Entity Capabilities: the server announces its own caps in stream features,
//! and learns (and caches, by verification string) what its clients' caps hashes mean, by
//! asking the first client that presents an unknown one and checking the hash.
//!
//! Clients choose both the hash and the disco#info that proves it, so the cache is bounded
//! (`limits.caps_cache_entries`/`caps_cache_bytes`, least recently used out first, at most
//! `caps_max_features` per entry) and a session has at most one query outstanding.
//!
//! Remote contacts' caps come in the presence their servers send our users: those are
//! learnt the same way (the query goes across the federation), and the available
//! resources of each remote contact are kept (`limits.caps_remote_resources` in all, a few
//! per contact) so that PEP can notify them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use corvid_proto::{BareJid, FullJid, Jid, ns};
use corvid_xml::Element;
use dashmap::DashMap;
use sha1::{Digest, Sha1};

use crate::module::{Ctx, Direction, Flow, Module, SessionEvent};
use crate::server::Server;
use crate::sessions::Queued;

/// The node our own caps are published under.
pub const NODE: &str = "https://corvid.chat/caps";

/// The module: announces our caps and feeds the server's [`CapsCache`] (`Server::caps`).
#[derive(Default)]
pub struct Caps {
    /// Our own hash: the enabled modules do not change while running.
    own_ver: std::sync::OnceLock<String>,
}

/// What verification strings mean, and which one each available resource presented: PEP
/// asks it which resources want which notifications (XEP-0163 §4, `+notify`).
#[derive(Default)]
pub struct CapsCache {
    /// The verification string each available resource last presented.
    resources: DashMap<FullJid, String>,
    /// Woken whenever a verification string is learned.
    learned: tokio::sync::Notify,
    /// Verification string → the disco#info it stands for (features only).
    known: Mutex<Lru>,
    /// Verification strings being looked up, so one client's burst asks once.
    asking: DashMap<String, ()>,
    /// Sessions with a query outstanding: one each.
    asked: DashMap<FullJid, ()>,
    /// The available resources, with caps, of remote contacts (learnt from the presence
    /// they send local users).
    remote: DashMap<BareJid, Vec<FullJid>>,
}

/// Resources followed per remote contact.
const REMOTE_RESOURCES_PER_CONTACT: usize = 16;

/// A least-recently-used map from verification string to features, bounded in entries and
/// bytes.
#[derive(Default)]
struct Lru {
    entries: HashMap<String, LruEntry>,
    /// Last use → verification string; the first is the next to go.
    by_use: BTreeMap<u64, String>,
    clock: u64,
    bytes: usize,
}

struct LruEntry {
    features: Arc<Vec<String>>,
    last_use: u64,
    bytes: usize,
}

impl Lru {
    fn get(&mut self, ver: &str) -> Option<Arc<Vec<String>>> {
        self.clock += 1;
        let entry = self.entries.get_mut(ver)?;
        self.by_use.remove(&entry.last_use);
        entry.last_use = self.clock;
        self.by_use.insert(self.clock, ver.to_string());
        Some(entry.features.clone())
    }

    fn insert(&mut self, ver: String, features: Vec<String>, max_entries: usize, max_bytes: usize) {
        let bytes = ver.len() + features.iter().map(String::len).sum::<usize>();
        if bytes > max_bytes || max_entries == 0 {
            return;
        }
        self.remove(&ver);
        while self.entries.len() >= max_entries || self.bytes + bytes > max_bytes {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            self.remove(&oldest);
        }
        self.clock += 1;
        self.by_use.insert(self.clock, ver.clone());
        self.bytes += bytes;
        let entry = LruEntry {
            features: Arc::new(features),
            last_use: self.clock,
            bytes,
        };
        self.entries.insert(ver, entry);
    }

    fn remove(&mut self, ver: &str) {
        if let Some(entry) = self.entries.remove(ver) {
            self.by_use.remove(&entry.last_use);
            self.bytes -= entry.bytes;
        }
    }
}

#[async_trait]
impl Module for Caps {
    fn name(&self) -> &'static str {
        "caps"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::CAPS]
    }

    fn stream_features(&self, server: &Server) -> Vec<Element> {
        vec![
            Element::new("c", ns::CAPS)
                .with_attr("hash", "sha-1")
                .with_attr("node", NODE)
                .with_attr(
                    "ver",
                    self.own_ver.get_or_init(|| server_ver(server)).as_str(),
                ),
        ]
    }

    async fn on_session(&self, ctx: &Ctx, event: &SessionEvent) {
        if let SessionEvent::Closed { jid, .. } | SessionEvent::Gone { jid } = event {
            ctx.server.caps.resources.remove(jid);
        }
    }

    async fn on_presence(&self, ctx: &Ctx, pres: &mut Element, dir: Direction) -> Flow {
        let Some(Ok(from)) = pres.attr("from").map(|f| f.parse::<FullJid>()) else {
            return Flow::Continue;
        };
        let config = &ctx.server.config;
        // Who asks for the caps: the client's own domain for a local client's broadcast,
        // the addressed user's for a remote contact's presence.
        let (asker, remote) = match dir {
            Direction::FromClient if pres.attr("to").is_none() => {
                (from.domain().as_str().to_owned(), false)
            }
            Direction::ToClient if !config.serves(from.domain().as_str()) => {
                match pres.attr("to").and_then(|t| Jid::new(t).ok()) {
                    Some(to) if config.serves(to.domain().as_str()) => {
                        (to.domain().as_str().to_owned(), true)
                    }
                    _ => return Flow::Continue,
                }
            }
            _ => return Flow::Continue,
        };
        note_caps(&ctx.server, pres, from, asker, remote);
        Flow::Continue
    }
}

/// What a resource of another node of the cluster presents, from its presence as that node
/// announced it: learnt here too, so that this node's PEP and its other users see its
/// features (`cluster/`).
pub fn note_cluster_presence(server: &Arc<crate::server::Server>, presence: &Element) {
    let Some(Ok(from)) = presence.attr("from").map(|f| f.parse::<FullJid>()) else {
        return;
    };
    let asker = from.domain().as_str().to_owned();
    note_caps(server, presence, from, asker, false);
}

/// Records the caps a presence from `from` carries, and asks for their features (as
/// `asker`) when they are new.
fn note_caps(
    server: &Arc<crate::server::Server>,
    pres: &Element,
    from: FullJid,
    asker: String,
    remote: bool,
) {
    {
        let config = &server.config;
        let cache = &server.caps;
        let caps = pres.get_child("c", ns::CAPS).and_then(|c| {
            match (c.attr("node"), c.attr("ver"), c.attr("hash")) {
                (Some(node), Some(ver), Some("sha-1")) => Some((node, ver)),
                _ => None,
            }
        });
        let (node, ver) = match (pres.attr("type"), caps) {
            (None, Some(caps)) => caps,
            (None, None) | (Some("unavailable"), _) => {
                cache.forget(&from);
                return;
            }
            (Some(_), _) => return,
        };
        // Bounded like the rest: a verification string is a base64 SHA-1.
        if ver.len() > 64 {
            return;
        }
        if remote && !cache.follow_remote(&from, config.limits.caps_remote_resources) {
            return;
        }
        cache.resources.insert(from.clone(), ver.to_string());
        if cache.features_of(ver).is_some() || cache.asked.contains_key(&from) {
            return;
        }
        if cache.asking.insert(ver.to_string(), ()).is_some() {
            return;
        }
        cache.asked.insert(from.clone(), ());
        let (node, ver) = (node.to_string(), ver.to_string());
        let server = server.clone();
        tokio::spawn(async move {
            let cache = &server.caps;
            cache.learn(&server, &asker, &from, &node, &ver).await;
            cache.asking.remove(&ver);
            cache.asked.remove(&from);
            cache.learned.notify_waiters();
        });
    }
}

impl CapsCache {
    /// Forgets what a resource presented (it went away, or dropped its caps).
    fn forget(&self, resource: &FullJid) {
        self.resources.remove(resource);
        let bare = resource.to_bare();
        if let Some(mut known) = self.remote.get_mut(&bare) {
            known.retain(|r| r != resource);
        }
        self.remote.remove_if(&bare, |_, known| known.is_empty());
    }

    /// Follows a remote contact's resource, unless that would pass the limits.
    fn follow_remote(&self, resource: &FullJid, limit: usize) -> bool {
        let bare = resource.to_bare();
        if let Some(known) = self.remote.get(&bare) {
            if known.contains(resource) {
                return true;
            }
            if known.len() >= REMOTE_RESOURCES_PER_CONTACT {
                return false;
            }
        }
        // An estimate (the contacts, not their resources, are counted exactly): cheap, and
        // within a few times the limit whatever a remote server sends.
        if self.remote.len() >= limit {
            return false;
        }
        self.remote.entry(bare).or_default().push(resource.clone());
        true
    }

    /// The available resources of a remote contact that presented caps.
    pub fn remote_resources(&self, contact: &BareJid) -> Vec<FullJid> {
        self.remote
            .get(contact)
            .map(|known| known.clone())
            .unwrap_or_default()
    }

    /// The verification string an available resource presented.
    pub fn ver_of(&self, resource: &FullJid) -> Option<String> {
        self.resources.get(resource).map(|v| v.clone())
    }

    /// The features of an available resource, once its caps are known.
    pub fn resource_features(&self, resource: &FullJid) -> Option<Arc<Vec<String>>> {
        let ver = self.ver_of(resource)?;
        self.features_of(&ver)
    }

    /// The features a verification string stands for, waiting (up to `timeout`) for a
    /// lookup under way to finish.
    pub async fn features_when_learned(
        &self,
        ver: &str,
        timeout: Duration,
    ) -> Option<Arc<Vec<String>>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let learned = self.learned.notified();
            if let Some(features) = self.features_of(ver) {
                return Some(features);
            }
            if !self.asking.contains_key(ver) {
                return None;
            }
            if tokio::time::timeout_at(deadline, learned).await.is_err() {
                return self.features_of(ver);
            }
        }
    }

    /// The features a verification string stands for, once learned.
    pub fn features_of(&self, ver: &str) -> Option<Arc<Vec<String>>> {
        self.lru().get(ver)
    }

    fn lru(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn learn(
        &self,
        server: &Arc<Server>,
        asker: &str,
        from: &FullJid,
        node: &str,
        ver: &str,
    ) {
        let (id, rx) = server.iq_tracker.register(from.clone().into());
        let query = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", id.as_str())
            .with_attr("from", asker)
            .with_attr("to", from.as_str())
            .with_child(
                Element::new("query", ns::DISCO_INFO).with_attr("node", format!("{node}#{ver}")),
            );
        let _ = crate::router::deliver_to_full(server, from, Queued::of(&query));
        let answer = server
            .iq_tracker
            .wait(&id, rx, Duration::from_secs(30))
            .await;
        let info = answer
            .as_ref()
            .filter(|a| a.attr("type") == Some("result"))
            .and_then(|a| a.get_child("query", ns::DISCO_INFO));
        if let Some(info) = info {
            // XEP-0115 §5.4: only a hash that checks out is cached (no poisoning).
            if verification_string(info).map(|s| hash(&s)) == Some(ver.to_string()) {
                let limits = &server.config.limits;
                let features: Vec<String> = info
                    .children()
                    .filter(|c| c.is("feature", ns::DISCO_INFO))
                    .filter_map(|f| f.attr("var"))
                    .map(str::to_string)
                    .collect();
                if features.len() <= limits.caps_max_features {
                    self.lru().insert(
                        ver.to_string(),
                        features,
                        limits.caps_cache_entries,
                        limits.caps_cache_bytes,
                    );
                }
            }
        }
    }
}

fn hash(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

/// XEP-0115 §5.1: identities and features sorted, joined with `<`. Extended forms are
/// not supported: info carrying them is not cached.
fn verification_string(info: &Element) -> Option<String> {
    if info.children().any(|c| c.is("x", ns::DATA_FORMS)) {
        return None;
    }
    let mut identities: Vec<String> = info
        .children()
        .filter(|c| c.is("identity", ns::DISCO_INFO))
        .map(|i| {
            format!(
                "{}/{}/{}/{}",
                i.attr("category").unwrap_or_default(),
                i.attr("type").unwrap_or_default(),
                i.attr("xml:lang").unwrap_or_default(),
                i.attr("name").unwrap_or_default()
            )
        })
        .collect();
    identities.sort();
    let mut features: Vec<&str> = info
        .children()
        .filter(|c| c.is("feature", ns::DISCO_INFO))
        .filter_map(|f| f.attr("var"))
        .collect();
    features.sort_unstable();
    let mut s = String::new();
    for part in identities.iter().map(String::as_str).chain(features) {
        s.push_str(part);
        s.push('<');
    }
    Some(s)
}

/// Our own verification string's hash, from the same disco#info the disco module serves.
pub fn server_ver(server: &Server) -> String {
    let info = super::disco::server_info_of(server);
    verification_string(&info)
        .map(|s| hash(&s))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("f{i}")).collect()
    }

    #[test]
    fn lru_forgets_the_least_recently_used_beyond_its_entry_cap() {
        let mut lru = Lru::default();
        lru.insert("a".into(), features(1), 2, 1000);
        lru.insert("b".into(), features(1), 2, 1000);
        assert!(lru.get("a").is_some());
        lru.insert("c".into(), features(1), 2, 1000);
        assert!(lru.get("b").is_none(), "b was the least recently used");
        assert!(lru.get("a").is_some() && lru.get("c").is_some());
        assert_eq!(lru.entries.len(), 2);
    }

    #[test]
    fn lru_stays_within_its_byte_cap() {
        let mut lru = Lru::default();
        // "v0" + 10 × "fN" = 22 bytes each.
        for i in 0..10 {
            lru.insert(format!("v{i}"), features(10), 100, 50);
            assert!(lru.bytes <= 50, "{} bytes", lru.bytes);
        }
        assert_eq!(lru.entries.len(), 2);
        assert!(lru.get("v9").is_some());
        // An entry larger than the whole cap is not cached at all.
        lru.insert("big".into(), features(100), 100, 50);
        assert!(lru.get("big").is_none());
    }

    #[test]
    fn xep_0115_simple_example_hash() {
        // XEP-0115 §5.2 example: Exodus 0.9.1.
        let info = Element::new("query", ns::DISCO_INFO)
            .with_child(
                Element::new("identity", ns::DISCO_INFO)
                    .with_attr("category", "client")
                    .with_attr("type", "pc")
                    .with_attr("name", "Exodus 0.9.1"),
            )
            .with_child(
                Element::new("feature", ns::DISCO_INFO)
                    .with_attr("var", "http://jabber.org/protocol/disco#info"),
            )
            .with_child(
                Element::new("feature", ns::DISCO_INFO)
                    .with_attr("var", "http://jabber.org/protocol/disco#items"),
            )
            .with_child(
                Element::new("feature", ns::DISCO_INFO)
                    .with_attr("var", "http://jabber.org/protocol/muc"),
            )
            .with_child(
                Element::new("feature", ns::DISCO_INFO)
                    .with_attr("var", "http://jabber.org/protocol/caps"),
            );
        assert_eq!(
            hash(&verification_string(&info).unwrap()),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }
}
