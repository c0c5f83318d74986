//! A node's configuration (XEP-0060 §8.2, the `pubsub#node_config` form of §16.4.4): what
//! a client may read and set, its defaults for the service and for PEP, and the
//! publish-options preconditions of §7.1.5.
//!
//! It is stored as the submitted form it reads back from, so a stored node needs no
//! schema change when a field is added.

use corvid_proto::forms;
use corvid_proto::{StanzaError, ns};
use corvid_xml::Element;

use super::errors;

/// Who may retrieve items and subscribe (XEP-0060 §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessModel {
    Open,
    Presence,
    Roster,
    Whitelist,
}

/// Who may publish (XEP-0060 §16.4.4 `pubsub#publish_model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishModel {
    Publishers,
    Subscribers,
    Open,
}

/// When the last item goes to a new subscriber (XEP-0060 §6.1.7, XEP-0163 §4.3.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendLast {
    Never,
    OnSub,
    OnSubAndPresence,
}

/// A leaf holds items; a collection holds nodes (XEP-0060 §4.3, `pubsub#node_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeType {
    Leaf,
    Collection,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub node_type: NodeType,
    /// The collection this node belongs to (`pubsub#collection`); empty: the root.
    pub collection: String,
    pub access_model: AccessModel,
    pub roster_groups_allowed: Vec<String>,
    pub publish_model: PublishModel,
    /// Items kept; at most the service's `max_items_per_node`.
    pub max_items: usize,
    pub persist_items: bool,
    pub deliver_payloads: bool,
    pub deliver_notifications: bool,
    pub notify_retract: bool,
    pub notify_delete: bool,
    pub notify_config: bool,
    pub send_last_published_item: SendLast,
    /// Seconds after which an item is gone (0: never).
    pub item_expire: u64,
    pub title: String,
    pub description: String,
    /// The payload namespace the node carries (`pubsub#type`).
    pub payload_type: String,
    /// `headline` or `normal` notifications.
    pub notification_type: String,
}

impl AccessModel {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessModel::Open => "open",
            AccessModel::Presence => "presence",
            AccessModel::Roster => "roster",
            AccessModel::Whitelist => "whitelist",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => AccessModel::Open,
            "presence" => AccessModel::Presence,
            "roster" => AccessModel::Roster,
            "whitelist" => AccessModel::Whitelist,
            _ => return None,
        })
    }
}

impl PublishModel {
    fn as_str(self) -> &'static str {
        match self {
            PublishModel::Publishers => "publishers",
            PublishModel::Subscribers => "subscribers",
            PublishModel::Open => "open",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "publishers" => PublishModel::Publishers,
            "subscribers" => PublishModel::Subscribers,
            "open" => PublishModel::Open,
            _ => return None,
        })
    }
}

impl SendLast {
    fn as_str(self) -> &'static str {
        match self {
            SendLast::Never => "never",
            SendLast::OnSub => "on_sub",
            SendLast::OnSubAndPresence => "on_sub_and_presence",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "never" => SendLast::Never,
            "on_sub" => SendLast::OnSub,
            "on_sub_and_presence" => SendLast::OnSubAndPresence,
            _ => return None,
        })
    }
}

/// XEP-0004 §3.3: boolean values are `0`/`1`/`false`/`true`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "1" } else { "0" }
}

impl NodeConfig {
    /// A node on the service, unless its creator says otherwise.
    pub fn service_default() -> Self {
        NodeConfig {
            node_type: NodeType::Leaf,
            collection: String::new(),
            access_model: AccessModel::Open,
            roster_groups_allowed: Vec::new(),
            publish_model: PublishModel::Publishers,
            max_items: 256,
            persist_items: true,
            deliver_payloads: true,
            deliver_notifications: true,
            notify_retract: true,
            notify_delete: true,
            notify_config: false,
            send_last_published_item: SendLast::Never,
            item_expire: 0,
            title: String::new(),
            description: String::new(),
            payload_type: String::new(),
            notification_type: "headline".into(),
        }
    }

    /// A PEP node (XEP-0163 §4.3): presence access, the last item only, sent to contacts
    /// as they come online.
    pub fn pep_default() -> Self {
        NodeConfig {
            access_model: AccessModel::Presence,
            max_items: 1,
            send_last_published_item: SendLast::OnSubAndPresence,
            ..Self::service_default()
        }
    }

    /// The `pubsub#node_config` form (XEP-0060 §8.2.1), filled with this configuration.
    pub fn to_form(&self, kind: &str) -> Element {
        let mut x = forms::form(kind);
        x.append_child(forms::form_type_field(ns::PUBSUB_NODE_CONFIG));
        let list = |var: &str, label: &str, value: &str, options: &[&str]| {
            let mut field = forms::field(var, "list-single", Some(label), &[value]);
            for option in options {
                field.append_child(
                    Element::new("option", ns::DATA_FORMS)
                        .with_child(Element::new("value", ns::DATA_FORMS).with_text(*option)),
                );
            }
            field
        };
        let boolean = |var: &str, label: &str, value: bool| {
            forms::field(var, "boolean", Some(label), &[bool_str(value)])
        };
        let text = |var: &str, label: &str, value: &str| {
            forms::field(var, "text-single", Some(label), &[value])
        };
        let groups: Vec<&str> = self
            .roster_groups_allowed
            .iter()
            .map(String::as_str)
            .collect();
        let fields = [
            text("pubsub#title", "A friendly name for the node", &self.title),
            text(
                "pubsub#description",
                "A description of the node",
                &self.description,
            ),
            list(
                "pubsub#access_model",
                "Who may subscribe and retrieve items",
                self.access_model.as_str(),
                &["open", "presence", "roster", "whitelist"],
            ),
            forms::field(
                "pubsub#roster_groups_allowed",
                "list-multi",
                Some("Roster groups allowed to subscribe"),
                &groups,
            ),
            list(
                "pubsub#publish_model",
                "Who may publish items",
                self.publish_model.as_str(),
                &["publishers", "subscribers", "open"],
            ),
            text(
                "pubsub#max_items",
                "Most items to keep",
                &self.max_items.to_string(),
            ),
            boolean(
                "pubsub#persist_items",
                "Keep items in storage",
                self.persist_items,
            ),
            boolean(
                "pubsub#deliver_notifications",
                "Deliver event notifications",
                self.deliver_notifications,
            ),
            boolean(
                "pubsub#deliver_payloads",
                "Deliver payloads with notifications",
                self.deliver_payloads,
            ),
            boolean(
                "pubsub#notify_retract",
                "Notify subscribers when items are removed",
                self.notify_retract,
            ),
            boolean(
                "pubsub#notify_delete",
                "Notify subscribers when the node is deleted",
                self.notify_delete,
            ),
            boolean(
                "pubsub#notify_config",
                "Notify subscribers when the configuration changes",
                self.notify_config,
            ),
            list(
                "pubsub#send_last_published_item",
                "When to send the last published item",
                self.send_last_published_item.as_str(),
                &["never", "on_sub", "on_sub_and_presence"],
            ),
            text(
                "pubsub#item_expire",
                "Seconds after which items are removed (0: never)",
                &self.item_expire.to_string(),
            ),
            text(
                "pubsub#type",
                "The type of payload data",
                &self.payload_type,
            ),
            list(
                "pubsub#notification_type",
                "Message type of notifications",
                &self.notification_type,
                &["headline", "normal"],
            ),
            list(
                "pubsub#node_type",
                "Node type",
                match self.node_type {
                    NodeType::Leaf => "leaf",
                    NodeType::Collection => "collection",
                },
                &["leaf", "collection"],
            ),
            text(
                "pubsub#collection",
                "The collection this node belongs to",
                &self.collection,
            ),
        ];
        for field in fields {
            x.append_child(field);
        }
        x
    }

    /// Stored form: the submitted form that reads back into this configuration.
    pub fn serialize(&self) -> String {
        self.to_form("submit").to_string()
    }

    /// Reads a stored configuration back over `defaults` (fields added since it was stored
    /// keep their defaults).
    pub fn deserialize(text: &str, defaults: &NodeConfig, max_items_limit: usize) -> NodeConfig {
        corvid_xml::parse_element(text, ns::DATA_FORMS)
            .ok()
            .and_then(|form| defaults.apply(&form, max_items_limit).ok())
            .unwrap_or_else(|| defaults.clone())
    }

    /// This configuration changed by a submitted form (XEP-0060 §8.2.4). A field with a
    /// value we cannot take makes the whole form `not-acceptable`; unknown fields too,
    /// since silently ignoring a setting would leave the node other than asked.
    pub fn apply(&self, form: &Element, max_items_limit: usize) -> Result<NodeConfig, StanzaError> {
        let mut config = self.clone();
        for field in form.children().filter(|f| f.is("field", ns::DATA_FORMS)) {
            let Some(var) = field.attr("var") else {
                continue;
            };
            let values: Vec<String> = field
                .children()
                .filter(|v| v.is("value", ns::DATA_FORMS))
                .map(Element::text)
                .collect();
            config.set(var, &values, max_items_limit)?;
        }
        Ok(config)
    }

    fn set(
        &mut self,
        var: &str,
        values: &[String],
        max_items_limit: usize,
    ) -> Result<(), StanzaError> {
        let first = values.first().map(String::as_str).unwrap_or("");
        let bad =
            || StanzaError::not_acceptable().with_text(format!("Unacceptable value for {var}"));
        let boolean = || parse_bool(first).ok_or_else(bad);
        match var {
            "FORM_TYPE" => {
                if first != ns::PUBSUB_NODE_CONFIG && first != ns::PUBSUB_PUBLISH_OPTIONS {
                    return Err(bad());
                }
            }
            "pubsub#title" => self.title = first.to_string(),
            "pubsub#description" => self.description = first.to_string(),
            "pubsub#type" => self.payload_type = first.to_string(),
            // XEP-0060 §4.5: the authorize model is optional, and not offered here.
            "pubsub#access_model" if first == "authorize" => {
                return Err(errors::unsupported("access-authorize"));
            }
            "pubsub#access_model" => {
                self.access_model = AccessModel::parse(first).ok_or_else(bad)?
            }
            "pubsub#roster_groups_allowed" => self.roster_groups_allowed = values.to_vec(),
            "pubsub#publish_model" => {
                self.publish_model = PublishModel::parse(first).ok_or_else(bad)?
            }
            "pubsub#max_items" => {
                self.max_items = if first == "max" {
                    max_items_limit
                } else {
                    let n: usize = first.trim().parse().map_err(|_| bad())?;
                    if n == 0 || n > max_items_limit {
                        return Err(bad().with_text(format!(
                            "pubsub#max_items must be between 1 and {max_items_limit}, or max"
                        )));
                    }
                    n
                }
            }
            "pubsub#persist_items" => self.persist_items = boolean()?,
            "pubsub#deliver_payloads" => self.deliver_payloads = boolean()?,
            "pubsub#deliver_notifications" => self.deliver_notifications = boolean()?,
            "pubsub#notify_retract" => self.notify_retract = boolean()?,
            "pubsub#notify_delete" => self.notify_delete = boolean()?,
            "pubsub#notify_config" => self.notify_config = boolean()?,
            "pubsub#send_last_published_item" => {
                self.send_last_published_item = SendLast::parse(first).ok_or_else(bad)?
            }
            "pubsub#item_expire" => {
                self.item_expire = if first.is_empty() {
                    0
                } else {
                    first.trim().parse().map_err(|_| bad())?
                }
            }
            "pubsub#notification_type" => match first {
                "headline" | "normal" => self.notification_type = first.to_string(),
                _ => return Err(bad()),
            },
            "pubsub#node_type" => {
                self.node_type = match first {
                    "leaf" | "" => NodeType::Leaf,
                    "collection" => NodeType::Collection,
                    _ => return Err(bad()),
                }
            }
            "pubsub#collection" => self.collection = first.to_string(),
            // A collection's children are set where the owner configures it (`owner.rs`).
            "pubsub#children" => {}
            // Registry fields (XEP-0060 §16.4.4) that change nothing here: notification
            // niceties, descriptive metadata, and a payload size the service's own limit
            // bounds anyway. Clients fill them in from forms of other servers.
            "pubsub#notify_sub"
            | "pubsub#presence_based_delivery"
            | "pubsub#purge_offline"
            | "pubsub#language"
            | "pubsub#contact"
            | "pubsub#body_xslt"
            | "pubsub#dataform_xslt"
            | "pubsub#itemreply"
            | "pubsub#max_payload_size"
            | "pubsub#children_association_policy"
            | "pubsub#children_association_whitelist"
            | "pubsub#children_max" => {}
            // Subscriptions are always allowed; asking to forbid them cannot be honoured.
            "pubsub#subscribe" if parse_bool(first) != Some(false) => {}
            _ => {
                return Err(StanzaError::not_acceptable()
                    .with_text(format!("Unsupported configuration field {var}")));
            }
        }
        Ok(())
    }

    /// XEP-0060 §7.1.5: every publish-option must equal the node's setting. Options are
    /// compared by meaning (`1` is `true`, `max` is the service's limit).
    pub fn meets(&self, options: &Element, max_items_limit: usize) -> Result<(), StanzaError> {
        let wanted = self
            .apply(options, max_items_limit)
            .map_err(|_| errors::precondition_not_met())?;
        if wanted == *self {
            Ok(())
        } else {
            Err(errors::precondition_not_met())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_form_reads_back_the_same_configuration() {
        let mut config = NodeConfig::pep_default();
        config.title = "Music <& more>".into();
        config.roster_groups_allowed = vec!["Friends".into(), "Work".into()];
        config.access_model = AccessModel::Roster;
        config.max_items = 42;
        let back =
            NodeConfig::deserialize(&config.serialize(), &NodeConfig::service_default(), 100);
        assert_eq!(back, config);
    }

    #[test]
    fn max_means_the_service_limit_and_zero_is_refused() {
        let defaults = NodeConfig::service_default();
        let form = forms::submit(&[("pubsub#max_items", "max")]);
        assert_eq!(defaults.apply(&form, 500).unwrap().max_items, 500);
        let form = forms::submit(&[("pubsub#max_items", "0")]);
        assert_eq!(
            defaults.apply(&form, 500).unwrap_err().condition,
            "not-acceptable"
        );
        let form = forms::submit(&[("pubsub#max_items", "501")]);
        assert!(defaults.apply(&form, 500).is_err());
    }

    #[test]
    fn publish_options_compare_by_meaning() {
        let mut node = NodeConfig::pep_default();
        node.persist_items = true;
        let same = forms::submit(&[
            ("FORM_TYPE", ns::PUBSUB_PUBLISH_OPTIONS),
            ("pubsub#persist_items", "true"),
            ("pubsub#access_model", "presence"),
        ]);
        assert!(node.meets(&same, 100).is_ok());
        let other = forms::submit(&[("pubsub#access_model", "open")]);
        let err = node.meets(&other, 100).unwrap_err();
        assert_eq!(err.condition, "conflict");
        assert!(err.app.is_some_and(|a| a.name() == "precondition-not-met"));
        let unknown = forms::submit(&[("pubsub#frobnicate", "1")]);
        assert!(node.meets(&unknown, 100).is_err());
    }

    #[test]
    fn unknown_or_invalid_fields_are_not_acceptable() {
        let defaults = NodeConfig::service_default();
        for (var, value) in [
            ("pubsub#access_model", "authorize-everyone"),
            ("pubsub#persist_items", "maybe"),
            ("pubsub#colour", "blue"),
        ] {
            let form = forms::submit(&[(var, value)]);
            assert!(defaults.apply(&form, 100).is_err(), "{var}={value}");
        }
    }
}
