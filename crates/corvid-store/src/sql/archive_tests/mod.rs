//! Tests of the SQL message archive (XEP-0313 storage): what a client paging through its
//! archive (`pages.rs`), or an operator removing from it (`upkeep.rs`), would observe, and
//! the query plans that keep a page cheap (`plans.rs`). Writer-specific tests (batching,
//! failures) live beside the writer in `archive_writer.rs`. Shared helpers here.

mod pages;
mod plans;
mod upkeep;

use super::SqlStore;
use crate::{Archive, ArchiveEntry, ArchivePage, ArchiveQuery};

pub(super) const JULIET: &str = "juliet@capulet.example";
pub(super) const ROMEO: &str = "romeo@montague.example";

pub(super) async fn open() -> (tempfile::TempDir, SqlStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqlStore::open_in_dir(dir.path()).await.unwrap();
    (dir, store)
}

/// A message in `archive` with id `id`, exchanged with `with_full` at `stamp_ms`.
pub(super) fn entry(archive: &str, id: &str, stamp_ms: i64, with_full: &str) -> ArchiveEntry {
    let with_bare = with_full.split('/').next().unwrap_or(with_full);
    ArchiveEntry {
        archive: archive.into(),
        id: id.into(),
        stamp_ms,
        with_bare: with_bare.into(),
        with_full: with_full.into(),
        stanza: format!("<message id='{id}'><body>{id}</body></message>"),
    }
}

/// Appends `count` messages to Juliet's archive, ids `m0`, `m1` …, stamped 1000, 1010 …,
/// alternating between two of Romeo's resources; then syncs.
pub(super) async fn fill(store: &SqlStore, count: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let id = format!("m{n}");
        let resource = if n % 2 == 0 { "phone" } else { "laptop" };
        let stamp = 1000 + 10 * i64::try_from(n).unwrap();
        store
            .append_archive(entry(JULIET, &id, stamp, &format!("{ROMEO}/{resource}")))
            .await
            .unwrap();
        ids.push(id);
    }
    store.archive_sync().await.unwrap();
    ids
}

pub(super) async fn query(store: &SqlStore, archive: &str, query: ArchiveQuery) -> ArchivePage {
    store.query_archive(archive, &query).await.unwrap()
}

pub(super) fn ids(page: &ArchivePage) -> Vec<String> {
    page.messages.iter().map(|m| m.id.clone()).collect()
}

pub(super) fn max(max: usize) -> ArchiveQuery {
    ArchiveQuery {
        max,
        ..Default::default()
    }
}
