//! What this client can do, told to others: service discovery (XEP-0030) answers and
//! entity capabilities (XEP-0115); XMPPFramework's `XMPPCapabilities`.
//!
//! PEP (XEP-0163 §4) sends a contact's notifications only to resources whose caps carry
//! `<node>+notify`: the server reads our caps hash from our presence and asks our
//! disco#info what it stands for. [`Capabilities::attach`] answers those disco#info
//! queries with the features the modules and the application registered
//! ([`Capabilities::add_feature`]); [`Capabilities::decorate`] puts the `<c/>` with the
//! current hash into a presence before it is sent. A feature added after presence went out
//! is known to others only once presence is sent again.

use crate::lock;
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::ns;
use corvid_xml::Element;
use sha1::{Digest, Sha1};

use crate::client::{Client, Handled, StanzaHandler};

/// The caps node our hashes are published under, unless the application names its own.
pub const DEFAULT_NODE: &str = "https://corvid.chat/client";

/// A disco#info identity (XEP-0030 §3.1).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Identity {
    /// `client`, for an application.
    pub category: String,
    /// The identity's `type`: `pc`, `phone`, `web` …
    pub kind: String,
    /// The `xml:lang` of the name.
    pub lang: Option<String>,
    /// The software's name.
    pub name: Option<String>,
}

impl Identity {
    /// `client/pc` with this name, what most desktop applications say.
    pub fn client(name: &str) -> Self {
        Identity {
            category: "client".into(),
            kind: "pc".into(),
            lang: None,
            name: Some(name.to_owned()),
        }
    }
}

/// The client's disco#info and caps (XMPPCapabilities). Cheap to share.
#[derive(Debug)]
pub struct Capabilities {
    node: String,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    identities: BTreeSet<Identity>,
    features: BTreeSet<String>,
}

#[derive(Debug)]
struct Hook {
    caps: Arc<Capabilities>,
}

impl StanzaHandler for Hook {
    fn handle(&self, stanza: &Element) -> Handled {
        if stanza.name() != "iq" || stanza.attr("type") != Some("get") {
            return Handled::No;
        }
        let Some(query) = stanza.get_child("query", ns::DISCO_INFO) else {
            return Handled::No;
        };
        Handled::Reply(self.caps.answer(stanza, query.attr("node")))
    }
}

impl Capabilities {
    /// Answers `client`'s disco#info queries as `identity` with the disco and caps features;
    /// attach before connecting. `node` is the caps node (XEP-0115 §4: a URI that names the
    /// software), [`DEFAULT_NODE`] if `None`.
    pub fn attach(client: &Client, identity: Identity, node: Option<&str>) -> Arc<Capabilities> {
        let caps = Arc::new(Capabilities {
            node: node.unwrap_or(DEFAULT_NODE).to_owned(),
            state: Mutex::new(State {
                identities: BTreeSet::from([identity]),
                features: [ns::DISCO_INFO, ns::CAPS]
                    .into_iter()
                    .map(str::to_owned)
                    .collect(),
            }),
        });
        client.add_handler(Arc::new(Hook { caps: caps.clone() }));
        caps
    }

    /// Declares a feature (`urn:xmpp:avatar:metadata+notify`, say); in the next presence's
    /// hash (XMPPCapabilities' `myFeaturesForXMPPCapabilities:`).
    pub fn add_feature(&self, feature: &str) {
        lock(&self.state).features.insert(feature.to_owned());
    }

    /// Withdraws a feature.
    pub fn remove_feature(&self, feature: &str) {
        lock(&self.state).features.remove(feature);
    }

    /// The features declared, sorted.
    pub fn features(&self) -> Vec<String> {
        lock(&self.state).features.iter().cloned().collect()
    }

    /// The XEP-0115 §5.1 verification string of the current identities and features.
    pub fn ver(&self) -> String {
        let state = lock(&self.state);
        verification_string(&state.identities, &state.features)
    }

    /// Adds (or replaces) the caps `<c/>` of a presence we are about to send.
    pub fn decorate(&self, presence: &mut Element) {
        presence.remove_child("c", ns::CAPS);
        presence.append_child(
            Element::new("c", ns::CAPS)
                .with_attr("hash", "sha-1")
                .with_attr("node", self.node.as_str())
                .with_attr("ver", self.ver()),
        );
    }

    /// The disco#info result for `iq`: ours for no node or our caps node; `item-not-found`
    /// for any other node (XEP-0030 §3.2), including an outdated hash.
    fn answer(&self, iq: &Element, node: Option<&str>) -> Element {
        let state = lock(&self.state);
        let ver = verification_string(&state.identities, &state.features);
        let ours = format!("{}#{ver}", self.node);
        let mut reply = Element::new("iq", ns::CLIENT);
        if let Some(id) = iq.attr("id") {
            reply.set_attr("id", id);
        }
        if let Some(from) = iq.attr("from") {
            reply.set_attr("to", from);
        }
        if node.is_some_and(|n| n != ours) {
            reply.set_attr("type", "error");
            reply.append_child(
                Element::new("error", ns::CLIENT)
                    .with_attr("type", "cancel")
                    .with_child(Element::new("item-not-found", ns::STANZA_ERRORS)),
            );
            return reply;
        }
        let mut query = Element::new("query", ns::DISCO_INFO);
        if let Some(node) = node {
            query.set_attr("node", node);
        }
        for identity in &state.identities {
            let mut el = Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", identity.category.as_str())
                .with_attr("type", identity.kind.as_str());
            if let Some(lang) = &identity.lang {
                el.set_attr("xml:lang", lang.as_str());
            }
            if let Some(name) = &identity.name {
                el.set_attr("name", name.as_str());
            }
            query.append_child(el);
        }
        for feature in &state.features {
            query.append_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", feature));
        }
        reply.set_attr("type", "result");
        reply.with_child(query)
    }
}

/// XEP-0115 §5.1: identities `category/type/lang/name<` sorted, then features `var<` sorted
/// (byte order, which `BTreeSet<String>` keeps), SHA-1, base64.
fn verification_string(identities: &BTreeSet<Identity>, features: &BTreeSet<String>) -> String {
    let mut s = String::new();
    for identity in identities {
        s.push_str(&format!(
            "{}/{}/{}/{}<",
            identity.category,
            identity.kind,
            identity.lang.as_deref().unwrap_or_default(),
            identity.name.as_deref().unwrap_or_default()
        ));
    }
    for feature in features {
        s.push_str(feature);
        s.push('<');
    }
    B64.encode(Sha1::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// XEP-0115 §5.2's simple example.
    #[test]
    fn hashes_the_specs_example() {
        let identities = BTreeSet::from([Identity::client("Exodus 0.9.1")]);
        let features = [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(
            verification_string(&identities, &features),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }
}
