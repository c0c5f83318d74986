//! The bench client's entity capabilities (XEP-0115): the `<c/>` it puts in its
//! presence, the verification string that names its feature set, and the disco#info
//! answer a server gets when it asks what that string stands for.
//!
//! PEP servers only notify a contact of a node when its caps advertise `<node>+notify`
//! (XEP-0163 "filtered notifications"), and they learn that by sending disco#info to
//! one full JID announcing a new `ver`, then caching the answer by `ver`. So the string
//! must be the real hash of the answer: Prosody recomputes it and keys its cache by the
//! result, ejabberd checks it before trusting the features.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::ns;
use sha1::{Digest, Sha1};

/// The `node` of our caps: who the software is (XEP-0115 §4, a URI of the client).
pub const CAPS_NODE: &str = "https://corvid.invalid/bench";
/// User tune (XEP-0118): the PEP node the bench publishes and listens to.
pub const TUNE: &str = "http://jabber.org/protocol/tune";

/// One disco identity (XEP-0030 §3.1).
#[derive(Clone, Copy, Debug)]
pub struct Identity {
    pub category: &'static str,
    pub kind: &'static str,
    pub lang: &'static str,
    pub name: &'static str,
}

/// What a session says it is and supports.
#[derive(Clone, Debug)]
pub struct Caps {
    pub identities: Vec<Identity>,
    pub features: Vec<String>,
    /// The XEP-0115 §5.1 verification string of the above.
    pub ver: String,
}

impl Caps {
    pub fn new(identities: Vec<Identity>, features: Vec<String>) -> Caps {
        let ver = verification_string(&identities, &features);
        Caps {
            identities,
            features,
            ver,
        }
    }

    /// A bench client: disco and caps, plus `TUNE+notify` when `notify` is set.
    pub fn bench_client(notify: bool) -> Caps {
        let mut features = vec![ns::DISCO_INFO.to_owned(), ns::CAPS.to_owned()];
        if notify {
            features.push(format!("{TUNE}+notify"));
        }
        let identity = Identity {
            category: "client",
            kind: "bot",
            lang: "",
            name: "corvid-bench",
        };
        Caps::new(vec![identity], features)
    }

    /// The `<c/>` element for presence (XEP-0115 §4).
    pub fn presence_element(&self) -> String {
        format!(
            "<c xmlns='{}' hash='sha-1' node='{CAPS_NODE}' ver='{}'/>",
            ns::CAPS,
            self.ver
        )
    }

    /// The disco#info result answering request `id` from `to`, for the `node` asked
    /// about (XEP-0115 §6.2: `node#ver`), already escaped for an attribute.
    pub fn disco_result(&self, id: &str, to: &str, node: Option<&str>) -> String {
        let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
        let mut out = format!(
            "<iq type='result' id='{id}' to='{to}'><query xmlns='{}'{node}>",
            ns::DISCO_INFO
        );
        for i in &self.identities {
            out.push_str(&format!(
                "<identity category='{}' type='{}' name='{}'/>",
                i.category, i.kind, i.name
            ));
        }
        for f in &self.features {
            out.push_str(&format!("<feature var='{f}'/>"));
        }
        out.push_str("</query></iq>");
        out
    }
}

/// XEP-0115 §5.1: identities sorted and written `category/type/lang/name<`, then
/// features sorted and written `var<`, hashed with SHA-1 and encoded in Base64.
pub fn verification_string(identities: &[Identity], features: &[String]) -> String {
    let mut ids: Vec<String> = identities
        .iter()
        .map(|i| format!("{}/{}/{}/{}<", i.category, i.kind, i.lang, i.name))
        .collect();
    ids.sort();
    let mut vars: Vec<&str> = features.iter().map(String::as_str).collect();
    vars.sort_unstable();
    let mut s = ids.concat();
    for var in vars {
        s.push_str(var);
        s.push('<');
    }
    B64.encode(Sha1::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_verification_string_matches_the_xep_0115_simple_example() {
        // XEP-0115 §5.2: Exodus 0.9.1 with caps, disco#info, disco#items and MUC.
        let identity = Identity {
            category: "client",
            kind: "pc",
            lang: "",
            name: "Exodus 0.9.1",
        };
        let features = [
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/disco#items",
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/caps",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            verification_string(&[identity], &features),
            "QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }

    #[test]
    fn notify_and_silent_clients_have_different_strings() {
        let notify = Caps::bench_client(true);
        let silent = Caps::bench_client(false);
        assert_ne!(notify.ver, silent.ver);
        assert!(notify.features.iter().any(|f| f.ends_with("+notify")));
        assert!(!silent.features.iter().any(|f| f.ends_with("+notify")));
    }

    #[test]
    fn the_disco_answer_lists_what_the_hash_covers() {
        let caps = Caps::bench_client(true);
        let node = format!("{CAPS_NODE}#{}", caps.ver);
        let xml = caps.disco_result("d1", "a@localhost", Some(&node));
        let el = corvid_xml::parse_element(&xml, ns::CLIENT).unwrap();
        let query = el.get_child("query", ns::DISCO_INFO).unwrap();
        assert_eq!(query.attr("node"), Some(node.as_str()));
        let features: Vec<String> = query
            .children()
            .filter_map(|c| c.attr("var").map(String::from))
            .collect();
        assert_eq!(features, caps.features);
        let id = query.get_child("identity", ns::DISCO_INFO).unwrap();
        let identity = Identity {
            category: "client",
            kind: "bot",
            lang: "",
            name: "corvid-bench",
        };
        assert_eq!(id.attr("name"), Some(identity.name));
        assert_eq!(verification_string(&[identity], &features), caps.ver);
        assert!(caps.presence_element().contains(&caps.ver));
    }
}
