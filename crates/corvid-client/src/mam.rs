//! Reading the message archive (XEP-0313 `urn:xmpp:mam:2`): one page per call, paged with
//! XEP-0059 ids, as a client catching up after being away does.
//!
//! [`Mam::query`] sends the query with an id of its own and collects the `<result/>`
//! messages that carry it (from the archive's owner only: the account, or the room asked),
//! until the query's answer with its `<fin/>` arrives; those messages never reach the
//! application's events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use corvid_proto::{Jid, ns};
use corvid_xml::Element;

use crate::client::{Client, Handled, StanzaHandler};
use crate::error::RequestError;

/// What to read; everything unset is unfiltered.
#[derive(Clone, Debug, Default)]
pub struct MamQuery {
    /// The archive to read: the account's own (`None`) or a room's.
    pub archive: Option<String>,
    /// Only messages with this JID.
    pub with: Option<String>,
    /// Only messages archived at or after this time …
    pub start: Option<SystemTime>,
    /// … and at or before this one.
    pub end: Option<SystemTime>,
    /// The page after this archive id (paging forward) …
    pub after: Option<String>,
    /// … or the page before this one; `Some("")` for the last page.
    pub before: Option<String>,
    /// Messages per page.
    pub max: Option<usize>,
}

/// One archived message.
#[derive(Clone, Debug)]
pub struct ArchivedMessage {
    /// Its archive id (the stanza-id the archive gave it).
    pub id: String,
    /// When the archive got it.
    pub stamp: Option<SystemTime>,
    /// The message as it was sent.
    pub message: Element,
}

/// A page of the archive, oldest first.
#[derive(Clone, Debug)]
pub struct MamPage {
    /// The page's messages.
    pub messages: Vec<ArchivedMessage>,
    /// Nothing lies beyond this page in the direction paged.
    pub complete: bool,
    /// The ids to page on from (XEP-0059 `<first/>` and `<last/>`).
    pub first: Option<String>,
    /// See `first`.
    pub last: Option<String>,
}

/// Results being collected, by query id, with whom they must come from.
type Collecting = HashMap<String, (String, Vec<ArchivedMessage>)>;

#[derive(Debug, Default)]
struct Hook {
    collecting: Mutex<Collecting>,
}

impl StanzaHandler for Hook {
    fn handle(&self, stanza: &Element) -> Handled {
        let Some(result) = stanza.get_child("result", ns::MAM) else {
            return Handled::No;
        };
        let mut collecting = self.collecting.lock().unwrap_or_else(|e| e.into_inner());
        let Some((archive, messages)) =
            result.attr("queryid").and_then(|id| collecting.get_mut(id))
        else {
            return Handled::No;
        };
        let from = stanza
            .attr("from")
            .and_then(|f| Jid::new(f).ok())
            .map(|f| f.to_bare().to_string());
        if from.as_deref().is_some_and(|from| from != archive.as_str()) {
            return Handled::No;
        }
        let forwarded = result.get_child("forwarded", ns::FORWARD);
        let message = forwarded.and_then(|f| f.get_child("message", ns::CLIENT));
        if let (Some(id), Some(message)) = (result.attr("id"), message) {
            messages.push(ArchivedMessage {
                id: id.to_owned(),
                stamp: forwarded
                    .and_then(|f| f.get_child("delay", ns::DELAY))
                    .and_then(|d| d.attr("stamp"))
                    .and_then(corvid_proto::time::parse_datetime),
                message: message.clone(),
            });
        }
        Handled::Yes
    }
}

/// Archive queries for one client.
#[derive(Debug)]
pub struct Mam {
    client: Client,
    hook: Arc<Hook>,
}

impl Mam {
    /// Archive queries for `client` (XMPPMessageArchiveManagement's `activate:`).
    pub fn attach(client: &Client) -> Arc<Mam> {
        let hook = Arc::new(Hook::default());
        client.add_handler(hook.clone());
        Arc::new(Mam {
            client: client.clone(),
            hook,
        })
    }

    /// One page of the archive.
    pub async fn query(&self, query: &MamQuery) -> Result<MamPage, RequestError> {
        let query_id = self.client.new_id();
        let archive = query
            .archive
            .clone()
            .unwrap_or_else(|| self.client.account().to_string());
        let mut fields = vec![("FORM_TYPE", ns::MAM.to_owned())];
        if let Some(with) = &query.with {
            fields.push(("with", with.clone()));
        }
        if let Some(start) = query.start {
            fields.push(("start", corvid_proto::time::format_datetime(start)));
        }
        if let Some(end) = query.end {
            fields.push(("end", corvid_proto::time::format_datetime(end)));
        }
        let mut form = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
        for (var, value) in fields {
            let mut field = Element::new("field", ns::DATA_FORMS).with_attr("var", var);
            if var == "FORM_TYPE" {
                field.set_attr("type", "hidden");
            }
            form.append_child(
                field.with_child(Element::new("value", ns::DATA_FORMS).with_text(value)),
            );
        }
        let mut set = Element::new("set", ns::RSM);
        if let Some(max) = query.max {
            set.append_child(Element::new("max", ns::RSM).with_text(max.to_string()));
        }
        if let Some(after) = &query.after {
            set.append_child(Element::new("after", ns::RSM).with_text(after.clone()));
        }
        if let Some(before) = &query.before {
            set.append_child(Element::new("before", ns::RSM).with_text(before.clone()));
        }
        let mut iq = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_child(
                Element::new("query", ns::MAM)
                    .with_attr("queryid", query_id.clone())
                    .with_child(form)
                    .with_child(set),
            );
        if let Some(room) = &query.archive {
            iq.set_attr("to", room.clone());
        }
        self.collecting()
            .insert(query_id.clone(), (archive, Vec::new()));
        let answer = self.client.request(iq).await;
        let (_, messages) = self.collecting().remove(&query_id).unwrap_or_default();
        let answer = answer?;
        let fin = answer.get_child("fin", ns::MAM);
        let rsm = fin.and_then(|f| f.get_child("set", ns::RSM));
        let text_of = |name: &str| {
            rsm.and_then(|s| s.get_child(name, ns::RSM))
                .map(Element::text)
        };
        Ok(MamPage {
            messages,
            complete: fin.is_some_and(|f| f.attr("complete") == Some("true")),
            first: text_of("first"),
            last: text_of("last"),
        })
    }

    fn collecting(&self) -> std::sync::MutexGuard<'_, Collecting> {
        self.hook
            .collecting
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}
