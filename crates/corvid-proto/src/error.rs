//! Stream errors (RFC 6120 §4.9) and stanza errors (RFC 6120 §8.3), mapped to their XML in one place.

use corvid_xml::Element;

use crate::ns;

/// A stream-level error condition (RFC 6120 §4.9.3). Sending one closes the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamErrorCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamErrorCondition {
    pub fn name(self) -> &'static str {
        use StreamErrorCondition::*;
        match self {
            BadFormat => "bad-format",
            BadNamespacePrefix => "bad-namespace-prefix",
            Conflict => "conflict",
            ConnectionTimeout => "connection-timeout",
            HostGone => "host-gone",
            HostUnknown => "host-unknown",
            ImproperAddressing => "improper-addressing",
            InternalServerError => "internal-server-error",
            InvalidFrom => "invalid-from",
            InvalidNamespace => "invalid-namespace",
            InvalidXml => "invalid-xml",
            NotAuthorized => "not-authorized",
            NotWellFormed => "not-well-formed",
            PolicyViolation => "policy-violation",
            RemoteConnectionFailed => "remote-connection-failed",
            Reset => "reset",
            ResourceConstraint => "resource-constraint",
            RestrictedXml => "restricted-xml",
            SeeOtherHost => "see-other-host",
            SystemShutdown => "system-shutdown",
            UndefinedCondition => "undefined-condition",
            UnsupportedEncoding => "unsupported-encoding",
            UnsupportedFeature => "unsupported-feature",
            UnsupportedStanzaType => "unsupported-stanza-type",
            UnsupportedVersion => "unsupported-version",
        }
    }

    /// Maps a condition name (as reported by the XML layer) back to the enum.
    pub fn from_name(name: &str) -> Option<Self> {
        use StreamErrorCondition::*;
        const ALL: [StreamErrorCondition; 25] = [
            BadFormat,
            BadNamespacePrefix,
            Conflict,
            ConnectionTimeout,
            HostGone,
            HostUnknown,
            ImproperAddressing,
            InternalServerError,
            InvalidFrom,
            InvalidNamespace,
            InvalidXml,
            NotAuthorized,
            NotWellFormed,
            PolicyViolation,
            RemoteConnectionFailed,
            Reset,
            ResourceConstraint,
            RestrictedXml,
            SeeOtherHost,
            SystemShutdown,
            UndefinedCondition,
            UnsupportedEncoding,
            UnsupportedFeature,
            UnsupportedStanzaType,
            UnsupportedVersion,
        ];
        ALL.into_iter().find(|c| c.name() == name)
    }
}

/// A stream error with optional human-readable text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: Option<String>,
    /// An application-specific condition (RFC 6120 §4.9.4), e.g. XEP-0198's
    /// `<handled-count-too-high/>`.
    pub app: Option<Box<Element>>,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
            app: None,
        }
    }

    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(text.into()),
            app: None,
        }
    }

    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(Box::new(app));
        self
    }

    /// `<stream:error>` element, in the streams namespace.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("error", ns::STREAM)
            .with_child(Element::new(self.condition.name(), ns::STREAM_ERRORS));
        if let Some(text) = &self.text {
            el.append_child(Element::new("text", ns::STREAM_ERRORS).with_text(text.as_str()));
        }
        if let Some(app) = &self.app {
            el.append_child((**app).clone());
        }
        el
    }
}

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.text {
            Some(text) => write!(f, "{} ({text})", self.condition.name()),
            None => f.write_str(self.condition.name()),
        }
    }
}

/// Stanza error type attribute (RFC 6120 §8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    Auth,
    Cancel,
    Continue,
    Modify,
    Wait,
}

impl ErrorType {
    pub fn name(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

/// A stanza error (RFC 6120 §8.3): type, defined condition, optional text, and an optional
/// application-specific condition (§8.3.4), such as XEP-0060's `<item-required/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    pub kind: ErrorType,
    pub condition: &'static str,
    pub text: Option<String>,
    pub app: Option<Box<Element>>,
}

macro_rules! stanza_errors {
    ($($fn_name:ident => ($kind:ident, $cond:literal)),* $(,)?) => {
        impl StanzaError {
            $(
                #[doc = concat!("`", $cond, "` with the type RFC 6120 §8.3.3 suggests.")]
                pub fn $fn_name() -> Self {
                    StanzaError { kind: ErrorType::$kind, condition: $cond, text: None, app: None }
                }
            )*
        }
    };
}

stanza_errors! {
    bad_request => (Modify, "bad-request"),
    conflict => (Cancel, "conflict"),
    feature_not_implemented => (Cancel, "feature-not-implemented"),
    forbidden => (Auth, "forbidden"),
    internal_server_error => (Cancel, "internal-server-error"),
    item_not_found => (Cancel, "item-not-found"),
    jid_malformed => (Modify, "jid-malformed"),
    not_acceptable => (Modify, "not-acceptable"),
    not_allowed => (Cancel, "not-allowed"),
    not_authorized => (Auth, "not-authorized"),
    policy_violation => (Modify, "policy-violation"),
    recipient_unavailable => (Wait, "recipient-unavailable"),
    registration_required => (Auth, "registration-required"),
    remote_server_not_found => (Cancel, "remote-server-not-found"),
    remote_server_timeout => (Wait, "remote-server-timeout"),
    resource_constraint => (Wait, "resource-constraint"),
    service_unavailable => (Cancel, "service-unavailable"),
    undefined_condition => (Cancel, "undefined-condition"),
    unexpected_request => (Wait, "unexpected-request"),
}

impl StanzaError {
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Adds an application-specific condition element (RFC 6120 §8.3.4).
    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(Box::new(app));
        self
    }

    /// The same condition with another error type.
    pub fn with_kind(mut self, kind: ErrorType) -> Self {
        self.kind = kind;
        self
    }

    /// The `<error/>` child element, in the stanza's content namespace.
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut el = Element::new("error", content_ns)
            .with_attr("type", self.kind.name())
            .with_child(Element::new(self.condition, ns::STANZA_ERRORS));
        if let Some(text) = &self.text {
            el.append_child(Element::new("text", ns::STANZA_ERRORS).with_text(text.as_str()));
        }
        if let Some(app) = &self.app {
            el.append_child((**app).clone());
        }
        el
    }

    /// Reads the error back from an `<error/>` element (used by clients and tests).
    pub fn from_element(el: &Element) -> Option<(String, String)> {
        let kind = el.attr("type")?.to_string();
        let cond = el
            .children()
            .find(|c| c.ns() == ns::STANZA_ERRORS && c.name() != "text")?;
        Some((kind, cond.name().to_string()))
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.name(), self.condition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_error_xml() {
        let err = StreamError::with_text(StreamErrorCondition::PolicyViolation, "too big");
        let xml = err.to_element().to_string();
        assert!(
            xml.contains("<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"),
            "{xml}"
        );
        assert!(xml.contains(">too big</text>"), "{xml}");
    }

    #[test]
    fn condition_names_round_trip() {
        for name in [
            "not-well-formed",
            "invalid-from",
            "unsupported-version",
            "restricted-xml",
        ] {
            assert_eq!(
                StreamErrorCondition::from_name(name).map(|c| c.name()),
                Some(name)
            );
        }
        assert_eq!(StreamErrorCondition::from_name("nope"), None);
    }

    #[test]
    fn stanza_error_xml() {
        let el = StanzaError::service_unavailable().to_element(ns::CLIENT);
        assert_eq!(el.attr("type"), Some("cancel"));
        assert!(el.has_child("service-unavailable", ns::STANZA_ERRORS));
        assert_eq!(
            StanzaError::from_element(&el),
            Some(("cancel".into(), "service-unavailable".into()))
        );
    }
}
