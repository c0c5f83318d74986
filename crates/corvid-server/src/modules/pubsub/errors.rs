//! XEP-0060's errors: a defined condition plus, where the XEP gives one, an
//! application-specific condition in `pubsub#errors` (XEP-0060 §7, §6, §8 error cases).

use corvid_proto::{ErrorType, StanzaError, ns};
use corvid_xml::Element;

fn app(name: &str) -> Element {
    Element::new(name, ns::PUBSUB_ERRORS)
}

/// `<feature-not-implemented/>` with `<unsupported feature=…/>` (XEP-0060 §7.1.3.5 and kin).
pub fn unsupported(feature: &str) -> StanzaError {
    StanzaError::feature_not_implemented()
        .with_app(app("unsupported").with_attr("feature", feature))
}

pub fn nodeid_required() -> StanzaError {
    StanzaError::bad_request().with_app(app("nodeid-required"))
}

pub fn item_required() -> StanzaError {
    StanzaError::bad_request().with_app(app("item-required"))
}

pub fn payload_required() -> StanzaError {
    StanzaError::bad_request().with_app(app("payload-required"))
}

pub fn item_forbidden() -> StanzaError {
    StanzaError::bad_request().with_app(app("item-forbidden"))
}

pub fn invalid_payload() -> StanzaError {
    StanzaError::bad_request().with_app(app("invalid-payload"))
}

pub fn invalid_jid() -> StanzaError {
    StanzaError::bad_request().with_app(app("invalid-jid"))
}

pub fn subid_required() -> StanzaError {
    StanzaError::bad_request().with_app(app("subid-required"))
}

pub fn invalid_subid() -> StanzaError {
    StanzaError::not_acceptable().with_app(app("invalid-subid"))
}

pub fn not_subscribed() -> StanzaError {
    StanzaError::unexpected_request()
        .with_kind(ErrorType::Cancel)
        .with_app(app("not-subscribed"))
}

pub fn payload_too_big() -> StanzaError {
    StanzaError::not_acceptable().with_app(app("payload-too-big"))
}

pub fn precondition_not_met() -> StanzaError {
    StanzaError::conflict().with_app(app("precondition-not-met"))
}

/// Access model `presence` (XEP-0060 §6.1.3.2).
pub fn presence_subscription_required() -> StanzaError {
    StanzaError::not_authorized().with_app(app("presence-subscription-required"))
}

/// Access model `roster` (XEP-0060 §6.1.3.3).
pub fn not_in_roster_group() -> StanzaError {
    StanzaError::not_authorized().with_app(app("not-in-roster-group"))
}

/// Access model `whitelist` (XEP-0060 §6.1.3.4).
pub fn closed_node() -> StanzaError {
    StanzaError::not_allowed().with_app(app("closed-node"))
}

/// A quota or limit was reached (XEP-0060 §7.1.3.6 `max-items-exceeded`, or a node limit).
pub fn resource_constraint(text: &str) -> StanzaError {
    StanzaError::resource_constraint()
        .with_kind(ErrorType::Wait)
        .with_text(text)
}

pub fn max_nodes_exceeded() -> StanzaError {
    StanzaError::not_allowed()
        .with_app(app("max-nodes-exceeded"))
        .with_text("Too many nodes")
}

/// A storage failure: nothing the requester can fix.
pub fn storage(err: corvid_store::StoreError) -> StanzaError {
    tracing::warn!(error = %err, "pubsub storage failed");
    StanzaError::internal_server_error()
}
