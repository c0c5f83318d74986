//! How attribute names carry their namespace inside an [`Element`](crate::Element).
//!
//! Nearly every XMPP attribute is unqualified, so attributes are stored as
//! plain strings: `to`, `type`. The two exceptions are spelled so that the
//! common case needs no extra field:
//! - the XML namespace keeps its reserved prefix: `xml:lang`;
//! - any other namespace is written `{uri}localname` (Clark notation). The
//!   serializer declares a generated prefix for it on the element.

use rxml::XMLNS_XML;

/// An attribute name split into its parts.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum AttrName<'a> {
    /// No namespace.
    Plain(&'a str),
    /// In the XML namespace; the local name (`lang` for `xml:lang`).
    Xml(&'a str),
    /// In namespace `ns` (never empty, never the XML namespace).
    Namespaced { ns: &'a str, local: &'a str },
}

/// Splits a stored attribute name into namespace and local name.
pub(crate) fn split(name: &str) -> AttrName<'_> {
    if let Some(local) = name.strip_prefix("xml:") {
        return AttrName::Xml(local);
    }
    let Some(clark) = name.strip_prefix('{') else {
        return AttrName::Plain(name);
    };
    // A local name cannot contain `}` but a namespace URI can, so the last
    // `}` is the separator.
    match clark.rfind('}') {
        Some(end) => {
            let (ns, local) = (&clark[..end], &clark[end + 1..]);
            if ns.is_empty() {
                AttrName::Plain(local)
            } else if ns == XMLNS_XML {
                AttrName::Xml(local)
            } else {
                AttrName::Namespaced { ns, local }
            }
        }
        None => AttrName::Plain(name),
    }
}

/// Spells the attribute `local` in namespace `ns` (`""` for none).
pub(crate) fn join(ns: &str, local: String) -> String {
    if ns.is_empty() {
        local
    } else if ns == XMLNS_XML {
        format!("xml:{local}")
    } else {
        format!("{{{ns}}}{local}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_their_namespace() {
        assert_eq!(split("to"), AttrName::Plain("to"));
        assert_eq!(split("xml:lang"), AttrName::Xml("lang"));
        assert_eq!(
            split("{urn:a}b}c"),
            AttrName::Namespaced {
                ns: "urn:a}b",
                local: "c"
            }
        );
        assert_eq!(split("{}c"), AttrName::Plain("c"));
        assert_eq!(
            split(&join(XMLNS_XML, "lang".into())),
            AttrName::Xml("lang")
        );
    }

    #[test]
    fn join_and_split_are_inverse() {
        for (ns, local) in [("", "id"), ("urn:x", "id"), ("urn:a}b", "c")] {
            let joined = join(ns, local.to_owned());
            let back = match split(&joined) {
                AttrName::Plain(l) => ("", l),
                AttrName::Xml(l) => (XMLNS_XML, l),
                AttrName::Namespaced { ns, local } => (ns, local),
            };
            assert_eq!(back, (ns, local));
        }
    }
}
