//! The query plans that make every archive query an index range scan, on each backend.

use super::{JULIET, ROMEO, open};
use crate::sql::archive::{
    BY_SEQ, DELETE_UP_TO_SEQ, EXPIRE_UP_TO_SEQ, PAGE_ANY_NEWEST_FIRST, PAGE_ANY_OLDEST_FIRST,
    PAGE_BARE_NEWEST_FIRST, PAGE_BARE_OLDEST_FIRST, PAGE_FULL_NEWEST_FIRST, PAGE_FULL_OLDEST_FIRST,
};
use crate::sql::test_db::Bind::{self, Int, Text};
use crate::sql::test_db::plan;
use crate::sql::{Backend, SqlStore};

/// A page's binds: archive, `seq` range, limit, and the `with` JIDs.
const PAGE: &[Bind] = &[Text(JULIET), Int(1), Int(2), Int(3)];
const PAGE_BARE: &[Bind] = &[Text(JULIET), Int(1), Int(2), Int(3), Text(ROMEO)];
const PAGE_FULL: &[Bind] = &[
    Text(JULIET),
    Int(1),
    Int(2),
    Int(3),
    Text(ROMEO),
    Text("romeo@montague.example/phone"),
];

/// Every page walks the archive index in `seq` order, `with` filters checked on its entries,
/// so a page costs the same in an archive of any size.
#[tokio::test]
async fn archive_queries_are_index_range_scans_without_sorting() {
    let (_db, store) = open().await;
    let pages = [
        (PAGE_ANY_OLDEST_FIRST, PAGE, false),
        (PAGE_ANY_NEWEST_FIRST, PAGE, false),
        (PAGE_BARE_OLDEST_FIRST, PAGE_BARE, true),
        (PAGE_BARE_NEWEST_FIRST, PAGE_BARE, true),
        (PAGE_FULL_OLDEST_FIRST, PAGE_FULL, true),
        (PAGE_FULL_NEWEST_FIRST, PAGE_FULL, true),
    ];
    for (statement, binds, with) in pages {
        let expected: &[&str] = match (store.backend, with) {
            (Backend::Sqlite, _) => {
                &["archive_messages_by_archive (archive=? AND seq>? AND seq<?)"]
            }
            (Backend::Postgres, false) => &[
                "using archive_messages_by_archive",
                "Index Cond: ((archive = ",
            ],
            // The `with` JID is an index condition: checked on the entries, not the rows.
            (Backend::Postgres, true) => &[
                "using archive_messages_by_archive",
                "Index Cond: ((archive = ",
                "AND (with_bare = ",
            ],
        };
        assert_seeks(&store, statement, binds, expected).await;
    }
    let by_seq: &[&str] = match store.backend {
        Backend::Sqlite => &["USING INTEGER PRIMARY KEY (rowid=?)"],
        // An empty table's plan may take either index that holds `seq`.
        Backend::Postgres => &["Index Cond: ", "seq = "],
    };
    assert_seeks(&store, BY_SEQ, &[Int(1), Text(JULIET)], by_seq).await;
}

/// The statement's plan has every `expected` step and neither scans a table nor sorts.
async fn assert_seeks(store: &SqlStore, statement: &str, binds: &[Bind], expected: &[&str]) {
    let steps = plan(store, statement, binds).await;
    for step in expected {
        assert!(
            steps.iter().any(|s| s.contains(step)),
            "{statement}: no {step:?} in {steps:#?}"
        );
    }
    let scans_or_sorts = |step: &String| match store.backend {
        Backend::Sqlite => step.contains("TEMP B-TREE") || step.starts_with("SCAN"),
        Backend::Postgres => step.contains("Seq Scan") || step.contains("Sort"),
    };
    assert!(
        !steps.iter().any(scans_or_sorts),
        "{statement} scans or sorts: {steps:#?}"
    );
}

/// Removal, trimming and expiry find what goes through an index too: their cost is what
/// they delete, not the size of the archive (or of all archives).
#[tokio::test]
async fn removals_find_their_messages_through_an_index() {
    let (_db, store) = open().await;
    let (by_archive, by_seq): (&[&str], &[&str]) = match store.backend {
        Backend::Sqlite => (
            &["archive_messages_by_archive (archive=? AND seq<?)"],
            &["USING INTEGER PRIMARY KEY (rowid<?)"],
        ),
        Backend::Postgres => (
            &[
                "using archive_messages_by_archive",
                "Index Cond: ((archive = ",
            ],
            &["using archive_messages_pkey", "Index Cond: (seq <= "],
        ),
    };
    assert_seeks(
        &store,
        DELETE_UP_TO_SEQ,
        &[Text(JULIET), Int(1), Int(2)],
        by_archive,
    )
    .await;
    assert_seeks(&store, EXPIRE_UP_TO_SEQ, &[Int(1), Int(2)], by_seq).await;
}
