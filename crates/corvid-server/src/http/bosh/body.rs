//! The `<body/>` wrapper of BOSH (XEP-0124 §4): a client's request parsed into what it
//! asks for and the stanzas it carries, and the server's answers written out.

use bytes::Bytes;
use corvid_proto::ns;
use corvid_xml::escape;

/// The BOSH namespace of `<body/>`.
pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// XEP-0206's namespace for the `xmpp:` attributes.
pub const XBOSH: &str = "urn:xmpp:xbosh";

/// One request's `<body/>`.
#[derive(Debug)]
pub struct Body {
    pub rid: u64,
    pub sid: Option<String>,
    /// Session creation attributes (meaningful without `sid`).
    pub to: Option<String>,
    pub lang: Option<String>,
    pub wait: Option<u64>,
    pub hold: Option<u64>,
    /// XEP-0206 §5: the client restarts the stream (after SASL).
    pub restart: bool,
    /// `type='terminate'`: the client ends the session.
    pub terminate: bool,
    /// XEP-0124 §10: seconds the client will be away.
    pub pause: Option<u64>,
    /// The stanzas carried, serialized for the session's `jabber:client` stream.
    pub payload: Vec<Bytes>,
}

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("not a well-formed <body/>: {0}")]
    Malformed(String),
    #[error("the <body/> has no valid rid")]
    NoRid,
}

impl Body {
    pub fn parse(text: &str) -> Result<Body, BodyError> {
        // parse_element reads one element; an XML declaration before it is allowed.
        let text = match text.trim_start().strip_prefix("<?xml") {
            Some(rest) => rest.split_once("?>").map_or("", |(_, body)| body),
            None => text,
        };
        let el = corvid_xml::parse_element(text.trim(), HTTPBIND)
            .map_err(|e| BodyError::Malformed(e.to_string()))?;
        if !el.is("body", HTTPBIND) {
            return Err(BodyError::Malformed(format!("<{}/>", el.name())));
        }
        let number = |name: &str| el.attr(name).and_then(|v| v.trim().parse::<u64>().ok());
        let xbosh = |name: &str| el.attr(&format!("{{{XBOSH}}}{name}"));
        let rid = number("rid").ok_or(BodyError::NoRid)?;
        let payload = el
            .children()
            .map(|child| {
                // Stanzas that did not say their namespace inherited the wrapper's: they
                // are the stream's own (XEP-0206 §8).
                let child = child.clone().map_ns(HTTPBIND, ns::CLIENT);
                child.to_bytes(ns::CLIENT)
            })
            .collect();
        Ok(Body {
            rid,
            sid: el.attr("sid").map(str::to_owned),
            to: el.attr("to").map(str::to_owned),
            lang: el.attr("xml:lang").map(str::to_owned),
            wait: number("wait"),
            hold: number("hold"),
            restart: xbosh("restart").is_some_and(|v| v == "true" || v == "1"),
            terminate: el.attr("type") == Some("terminate"),
            pause: number("pause"),
            payload,
        })
    }
}

/// A response `<body/>` with `attrs` (already chosen by us; values are escaped) around
/// `elements` (standalone elements from the session).
pub fn response(attrs: &[(&str, String)], elements: &[Bytes]) -> Bytes {
    let mut out = format!("<body xmlns='{HTTPBIND}'");
    for (name, value) in attrs {
        out.push_str(&format!(" {name}='{}'", escape(value)));
    }
    if elements.is_empty() {
        out.push_str("/>");
        return Bytes::from(out);
    }
    out.push('>');
    let mut out = out.into_bytes();
    for element in elements {
        out.extend_from_slice(element);
    }
    out.extend_from_slice(b"</body>");
    Bytes::from(out)
}

/// The end of a session (XEP-0124 §17): `condition` when it ended in error.
pub fn terminate(condition: Option<&str>, elements: &[Bytes]) -> Bytes {
    let mut attrs = vec![("type", "terminate".to_owned())];
    if let Some(condition) = condition {
        attrs.push(("condition", condition.to_owned()));
    }
    response(&attrs, elements)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_read_with_its_stanzas_in_the_stream_namespace() {
        let body = Body::parse(
            "<?xml version='1.0'?><body xmlns='http://jabber.org/protocol/httpbind' rid='42' \
             sid='s1' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'>\
             <message xmlns='jabber:client' to='a@b'><body>hi</body></message>\
             <presence/></body>",
        )
        .unwrap();
        assert_eq!(body.rid, 42);
        assert_eq!(body.sid.as_deref(), Some("s1"));
        assert!(body.restart && !body.terminate);
        assert_eq!(
            body.payload,
            [
                Bytes::from_static(b"<message to='a@b'><body>hi</body></message>"),
                Bytes::from_static(b"<presence/>"),
            ]
        );
    }

    #[test]
    fn garbage_and_a_missing_rid_are_refused() {
        assert!(matches!(Body::parse("<body"), Err(BodyError::Malformed(_))));
        assert!(matches!(
            Body::parse("<body xmlns='http://jabber.org/protocol/httpbind'/>"),
            Err(BodyError::NoRid)
        ));
        assert!(matches!(
            Body::parse("<other xmlns='http://jabber.org/protocol/httpbind' rid='1'/>"),
            Err(BodyError::Malformed(_))
        ));
    }

    #[test]
    fn answers_are_written_with_escaped_attributes() {
        assert_eq!(
            &terminate(Some("item-not-found"), &[])[..],
            b"<body xmlns='http://jabber.org/protocol/httpbind' type='terminate' \
              condition='item-not-found'/>"
        );
        let answer = response(
            &[("sid", "a'b".into())],
            &[Bytes::from_static(b"<presence/>")],
        );
        assert_eq!(
            &answer[..],
            b"<body xmlns='http://jabber.org/protocol/httpbind' sid='a&apos;b'>\
              <presence/></body>"
        );
    }
}
