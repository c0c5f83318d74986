//! Archive queries (XEP-0313 §4): the data form and XEP-0059 `<set/>` read into an
//! [`ArchiveQuery`], the page read from the store, each message sent to the requesting
//! session as a `<result/>` (XEP-0297 forwarded, XEP-0203 delay), then the `<fin/>`.
//!
//! The query is answered by the requesting client's own task, which is also the task that
//! drains its queue: results are queued without waiting for room, and a page is bounded in
//! bytes (`[mam] max_page_bytes`, and half the session queue) so it always fits; a page cut
//! short says `complete='false'` and the client pages on from its `<last/>` (or `<first/>`).

use corvid_proto::rsm::PageRequest;
use corvid_proto::time::{format_datetime, parse_datetime};
use corvid_proto::{FullJid, Jid, StanzaError, ns};
use corvid_store::{Archive as _, ArchivePage, ArchiveQuery, ArchivedMessage, StoreError, With};
use corvid_xml::Element;
use std::time::{Duration, UNIX_EPOCH};

use crate::config::MamConfig;
use crate::module::{Ctx, IqResult};
use crate::sessions::{Delivery, Queued, StanzaClass};

/// A parsed query.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub queryid: Option<String>,
    pub query: ArchiveQuery,
    /// §4.3.3 (#extended): the page's results are sent newest first.
    pub flip: bool,
}

/// Whose archive a query reads, and so what its results may show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// The account's own archive: everything, as archived.
    Owner,
    /// A room's archive: the senders' real JIDs (the muc#user `<x/>` the room archived)
    /// only to those who may see them (XEP-0313 §7.1.2: non-anonymous rooms, moderators).
    RoomVisitor { real_jids: bool },
}

/// §5.2 (field discovery): the fields a query's form may use.
pub fn fields_form() -> Element {
    use corvid_proto::forms::{field, form, form_type_field};
    let mut x = form("form");
    x.append_child(form_type_field(ns::MAM));
    x.append_child(field("with", "jid-single", Some("With"), &[]));
    x.append_child(field("start", "text-single", Some("Start"), &[]));
    x.append_child(field("end", "text-single", Some("End"), &[]));
    // #extended (§4.1.3, §4.1.4).
    x.append_child(field("after-id", "text-single", Some("After id"), &[]));
    x.append_child(field("before-id", "text-single", Some("Before id"), &[]));
    x.append_child(field("ids", "text-multi", Some("Ids"), &[]));
    Element::new("query", ns::MAM).with_child(x)
}

/// Reads a query: its form (§4.1) and its `<set/>` (§4.3, XEP-0059).
pub fn parse(payload: &Element, config: &MamConfig) -> Result<Request, StanzaError> {
    let mut query = ArchiveQuery::default();
    if let Some(form) = payload.get_child("x", ns::DATA_FORMS) {
        read_form(form, &mut query)?;
    }
    let page = match payload.get_child("set", ns::RSM) {
        Some(set) => PageRequest::parse(set)
            .map_err(|_| StanzaError::bad_request().with_text("invalid result set request"))?,
        None => PageRequest::default(),
    };
    if page.index.is_some() {
        return Err(StanzaError::feature_not_implemented()
            .with_text("paging by index is not supported; use after or before"));
    }
    query.max = page.max.unwrap_or(config.default_page).min(config.max_page);
    // The page's <after/> and <before/> lie inside the range the form selects.
    if let Some(after) = page.after {
        query.after_id = Some(after);
    }
    if let Some(before) = page.before {
        query.from_end = true;
        if !before.is_empty() {
            query.before_id = Some(before);
        }
    }
    Ok(Request {
        queryid: payload.attr("queryid").map(str::to_string),
        query,
        flip: payload.has_child("flip-page", ns::MAM),
    })
}

fn read_form(form: &Element, query: &mut ArchiveQuery) -> Result<(), StanzaError> {
    for field in form.children().filter(|c| c.is("field", ns::DATA_FORMS)) {
        let values: Vec<String> = field
            .children()
            .filter(|v| v.is("value", ns::DATA_FORMS))
            .map(|v| v.text().trim().to_string())
            .filter(|v| !v.is_empty())
            .collect();
        let first = values.first().cloned();
        let var = field.attr("var").unwrap_or_default();
        match var {
            "FORM_TYPE" if first.as_deref() == Some(ns::MAM) => {}
            "FORM_TYPE" => {
                return Err(
                    StanzaError::bad_request().with_text("FORM_TYPE must be urn:xmpp:mam:2")
                );
            }
            "with" => {
                if let Some(with) = first {
                    let jid = Jid::new(&with).map_err(|_| bad_field("with"))?;
                    query.with = Some(if jid.resource().is_some() {
                        With::Full(jid.to_string())
                    } else {
                        With::Bare(jid.to_string())
                    });
                }
            }
            "start" => query.start_ms = first.map(|v| stamp_ms(&v, "start")).transpose()?,
            "end" => query.end_ms = first.map(|v| stamp_ms(&v, "end")).transpose()?,
            "after-id" => query.after_id = first,
            "before-id" => query.before_id = first,
            "ids" => query.ids = values,
            _ => {
                let var: String = var.chars().take(100).collect();
                return Err(StanzaError::bad_request().with_text(format!("unknown field {var}")));
            }
        }
    }
    Ok(())
}

fn bad_field(var: &str) -> StanzaError {
    StanzaError::bad_request().with_text(format!("invalid value for {var}"))
}

/// A XEP-0082 DateTime as milliseconds since the epoch.
fn stamp_ms(value: &str, var: &str) -> Result<i64, StanzaError> {
    parse_datetime(value)
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| bad_field(var))
}

fn stamp(ms: i64) -> String {
    format_datetime(UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or_default()))
}

fn store_error(e: StoreError) -> StanzaError {
    match e {
        // §4.1.3 / XEP-0059 §2.6: an after or before naming no message of the archive.
        StoreError::NotFound => {
            StanzaError::item_not_found().with_text("no message with that id in the archive")
        }
        e => {
            tracing::warn!(error = %e, "mam: archive query failed");
            StanzaError::internal_server_error()
        }
    }
}

/// Runs a query on `archive` (an account's or a room's bare JID) for `requester`: the
/// results go to its session, the returned `<fin/>` is the IQ's result.
pub async fn run(
    ctx: &Ctx,
    archive: &str,
    requester: &FullJid,
    reader: Reader,
    payload: &Element,
) -> IqResult {
    let mut request = parse(payload, &ctx.server.config.mam)?;
    let limits = ctx.server.sessions.queue_limits();
    // However the server is configured, a page fits in half the session's queue.
    request.query.max = request.query.max.min((limits.stanzas / 2).max(1));
    let store = &ctx.server.store;
    let page = if request.query.max == 0 {
        // XEP-0059 §2.7: max 0 asks for no items.
        ArchivePage::default()
    } else {
        // What was archived before the query (a message its sender already saw delivered)
        // is in its answer: appends are queued, so wait for them first.
        store.archive_sync().await.map_err(store_error)?;
        store
            .query_archive(archive, &request.query)
            .await
            .map_err(store_error)?
    };
    let budget = ctx.server.config.mam.max_page_bytes.min(limits.bytes / 2);
    let (fin, sent) = deliver_page(ctx, archive, requester, reader, &request, page, budget);
    if reader == Reader::Owner {
        remember_fetched(ctx, requester, sent);
    }
    Ok(Some(fin))
}

/// Most ids remembered per session as fetched before its initial presence.
const MAX_REMEMBERED: usize = 10_000;

/// A session that has not sent its initial presence yet fetched these messages from its
/// own archive: its offline backlog will not bring them again (XEP-0313 §7.1.1).
fn remember_fetched(ctx: &Ctx, requester: &FullJid, ids: Vec<String>) {
    let fetched = ctx.server.sessions.update(requester, |s| {
        (!s.available).then(|| {
            s.fetched_from_archive
                .get_or_insert_with(Default::default)
                .clone()
        })
    });
    if let Some(Some(fetched)) = fetched {
        let mut fetched = fetched.lock().unwrap_or_else(|e| e.into_inner());
        let room = MAX_REMEMBERED.saturating_sub(fetched.len());
        fetched.extend(ids.into_iter().take(room));
    }
}

/// Queues the page's results for `requester` (oldest first) and returns the `<fin/>` and
/// the ids of the results queued.
fn deliver_page(
    ctx: &Ctx,
    archive: &str,
    requester: &FullJid,
    reader: Reader,
    request: &Request,
    page: ArchivePage,
    budget: usize,
) -> (Element, Vec<String>) {
    let from_end = request.query.from_end;
    let mut results: Vec<(&ArchivedMessage, Queued)> = Vec::new();
    let mut complete = page.complete;
    let mut bytes = 0;
    // Cut on the side away from the paging direction, so the next page follows this one.
    let ordered: Box<dyn Iterator<Item = &ArchivedMessage>> = if from_end {
        Box::new(page.messages.iter().rev())
    } else {
        Box::new(page.messages.iter())
    };
    for message in ordered {
        let result = result_message(
            archive,
            requester,
            reader,
            request.queryid.as_deref(),
            message,
        );
        let Some(result) = result else {
            continue;
        };
        let bytes_of = result.to_bytes(ns::CLIENT);
        if bytes + bytes_of.len() > budget && !results.is_empty() {
            complete = false;
            break;
        }
        bytes += bytes_of.len();
        results.push((message, Queued::new(bytes_of, StanzaClass::of(&result))));
    }
    if from_end {
        results.reverse();
    }
    let mut set = Element::new("set", ns::RSM);
    if let (Some((first, _)), Some((last, _))) = (results.first(), results.last()) {
        set.append_child(Element::new("first", ns::RSM).with_text(first.id.as_str()));
        set.append_child(Element::new("last", ns::RSM).with_text(last.id.as_str()));
    }
    // A flipped page (#extended) is the same page sent the other way round.
    if request.flip {
        results.reverse();
    }
    let mut sent = Vec::with_capacity(results.len());
    for (message, queued) in results {
        if ctx.server.sessions.deliver_to_full(requester, queued) != Delivery::Delivered {
            break;
        }
        sent.push(message.id.clone());
    }
    let mut fin = Element::new("fin", ns::MAM).with_child(set);
    if complete {
        fin.set_attr("complete", "true");
    }
    (fin, sent)
}

/// §4.2: `<message><result><forwarded><delay/><message/></forwarded></result></message>`.
fn result_message(
    archive: &str,
    requester: &FullJid,
    reader: Reader,
    queryid: Option<&str>,
    message: &ArchivedMessage,
) -> Option<Element> {
    let mut archived = match corvid_xml::parse_element(&message.stanza, ns::CLIENT) {
        Ok(archived) => archived,
        Err(e) => {
            tracing::warn!(error = %e, id = %message.id, "mam: skipping an unreadable archived message");
            return None;
        }
    };
    if reader == (Reader::RoomVisitor { real_jids: false }) {
        archived.remove_children(|c| c.is("x", ns::MUC_USER));
    }
    let forwarded = Element::new("forwarded", ns::FORWARD)
        .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", stamp(message.stamp_ms)))
        .with_child(archived);
    let mut result = Element::new("result", ns::MAM).with_attr("id", message.id.as_str());
    if let Some(queryid) = queryid {
        result.set_attr("queryid", queryid);
    }
    Some(
        Element::new("message", ns::CLIENT)
            .with_attr("to", requester.as_str())
            .with_attr("from", archive)
            .with_attr("id", crate::random_id())
            .with_child(result.with_child(forwarded)),
    )
}

/// XEP-0313 §5.1 (current): the first and last message of an archive.
pub async fn metadata(ctx: &Ctx, archive: &str) -> IqResult {
    let bounds = ctx
        .server
        .store
        .archive_bounds(archive)
        .await
        .map_err(store_error)?;
    let mut metadata = Element::new("metadata", ns::MAM);
    if let Some((first, last)) = bounds {
        for (name, message) in [("start", first), ("end", last)] {
            metadata.append_child(
                Element::new(name, ns::MAM)
                    .with_attr("id", message.id)
                    .with_attr("timestamp", stamp(message.stamp_ms)),
            );
        }
    }
    Ok(Some(metadata))
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid_proto::forms::submit;

    fn query(form: Option<Element>, set: &[(&str, &str)]) -> Element {
        let mut q = Element::new("query", ns::MAM).with_attr("queryid", "q1");
        if let Some(form) = form {
            q.append_child(form);
        }
        if !set.is_empty() {
            let mut s = Element::new("set", ns::RSM);
            for (name, text) in set {
                s.append_child(Element::new(*name, ns::RSM).with_text(*text));
            }
            q.append_child(s);
        }
        q
    }

    #[test]
    fn a_full_form_and_set_become_one_query() {
        let form = submit(&[
            ("FORM_TYPE", ns::MAM),
            ("with", "Juliet@Capulet.lit"),
            ("start", "2010-06-07T00:00:00Z"),
            ("end", "2010-07-07T13:23:54.5Z"),
            ("after-id", "a"),
        ]);
        let request = parse(
            &query(Some(form), &[("max", "1000"), ("before", "")]),
            &MamConfig::default(),
        )
        .unwrap();
        let q = request.query;
        assert_eq!(request.queryid.as_deref(), Some("q1"));
        assert_eq!(q.with, Some(With::Bare("juliet@capulet.lit".into())));
        assert_eq!(q.start_ms, Some(1_275_868_800_000));
        assert_eq!(q.end_ms, Some(1_278_509_034_500));
        assert_eq!(
            (q.after_id.as_deref(), q.before_id.as_deref()),
            (Some("a"), None)
        );
        assert_eq!((q.max, q.from_end), (250, true));
    }

    #[test]
    fn defaults_a_full_with_and_rsm_before() {
        let form = submit(&[("with", "romeo@montague.lit/orchard")]);
        let q = parse(
            &query(Some(form), &[("before", "x9")]),
            &MamConfig::default(),
        )
        .unwrap()
        .query;
        assert_eq!(
            q.with,
            Some(With::Full("romeo@montague.lit/orchard".into()))
        );
        assert_eq!(
            (q.max, q.from_end, q.before_id.as_deref()),
            (50, true, Some("x9"))
        );
        let q = parse(&query(None, &[]), &MamConfig::default())
            .unwrap()
            .query;
        assert_eq!((q.max, q.from_end), (50, false));
    }

    #[test]
    fn malformed_queries_are_bad_requests() {
        for fields in [
            &[("start", "yesterday")][..],
            &[("FORM_TYPE", "urn:xmpp:mam:1")],
            &[("colour", "blue")],
            &[("with", "@@")],
        ] {
            let err = parse(&query(Some(submit(fields)), &[]), &MamConfig::default()).unwrap_err();
            assert_eq!(err.condition, "bad-request", "{fields:?}");
        }
        let err = parse(&query(None, &[("index", "3")]), &MamConfig::default()).unwrap_err();
        assert_eq!(err.condition, "feature-not-implemented");
    }
}
