//! Tests of the SQL message archive (XEP-0313 storage): what a client paging through its
//! archive (`pages.rs`), or an operator removing from it (`upkeep.rs`), would observe, and
//! the query plans that keep a page cheap (`plans.rs`). Writer-specific tests (batching,
//! failures) live beside the writer in `archive_writer.rs`. Shared helpers here.

mod pages;
mod plans;
mod upkeep;

use super::SqlStore;
use super::test_db::{TestDb, test_store};
use std::sync::atomic::{AtomicI64, Ordering};

use crate::archive::STAMP_SHIFT;
use crate::{
    Archive, ArchiveEntry, ArchivePage, ArchiveQuery, ArchivedMessage, first_archive_seq_at,
};

pub(super) const JULIET: &str = "juliet@capulet.example";
pub(super) const ROMEO: &str = "romeo@montague.example";

pub(super) async fn open() -> (TestDb, SqlStore) {
    test_store().await
}

/// Numbers within a millisecond for [`entry`], in the order entries are made.
static NEXT_IN_MS: AtomicI64 = AtomicI64::new(0);

/// A message in `archive` exchanged with `with_full` at `stamp_ms`, its body `label` (what
/// [`ids`] reports it by). Entries made later at the same stamp get higher numbers.
pub(super) fn entry(archive: &str, label: &str, stamp_ms: i64, with_full: &str) -> ArchiveEntry {
    let with_bare = with_full.split('/').next().unwrap_or(with_full);
    let in_ms = NEXT_IN_MS.fetch_add(1, Ordering::Relaxed) % (1 << STAMP_SHIFT);
    ArchiveEntry {
        archive: archive.into(),
        seq: first_archive_seq_at(stamp_ms) + in_ms,
        with_bare: with_bare.into(),
        with_full: with_full.into(),
        stanza: format!("<message><body>{label}</body></message>"),
    }
}

/// Appends `count` messages to Juliet's archive, labelled `m0`, `m1` …, stamped 1000,
/// 1010 …, alternating between two of Romeo's resources; then syncs. Their labels.
pub(super) async fn fill(store: &SqlStore, count: usize) -> Vec<String> {
    let mut labels = Vec::with_capacity(count);
    for n in 0..count {
        let label = format!("m{n}");
        let resource = if n % 2 == 0 { "phone" } else { "laptop" };
        let stamp = 1000 + 10 * i64::try_from(n).unwrap();
        store
            .append_archive(entry(JULIET, &label, stamp, &format!("{ROMEO}/{resource}")))
            .await
            .unwrap();
        labels.push(label);
    }
    store.archive_sync().await.unwrap();
    labels
}

/// The label [`entry`] gave a message.
pub(super) fn label(message: &ArchivedMessage) -> String {
    let body = message.stanza.split("<body>").nth(1).unwrap_or_default();
    body.split("</body>").next().unwrap_or_default().to_string()
}

/// The archive id of the message labelled `label` in `archive`.
pub(super) async fn id_of(store: &SqlStore, archive: &str, label_wanted: &str) -> String {
    let page = query(store, archive, max(100_000)).await;
    page.messages
        .iter()
        .find(|message| label(message) == label_wanted)
        .map(|message| message.id.clone())
        .unwrap_or_else(|| panic!("no {label_wanted} in {archive}"))
}

pub(super) async fn query(store: &SqlStore, archive: &str, query: ArchiveQuery) -> ArchivePage {
    store.query_archive(archive, &query).await.unwrap()
}

/// The labels of a page's messages.
pub(super) fn ids(page: &ArchivePage) -> Vec<String> {
    page.messages.iter().map(label).collect()
}

pub(super) fn max(max: usize) -> ArchiveQuery {
    ArchiveQuery {
        max,
        ..Default::default()
    }
}
