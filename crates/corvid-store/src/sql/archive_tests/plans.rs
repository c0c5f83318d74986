//! The query plans that make every archive query an index range scan.

use sqlx::Row;

use super::{JULIET, ROMEO, open};
use crate::sql::SqlStore;
use crate::sql::archive::{
    DELETE_UP_TO_SEQ, EXPIRE_UP_TO_SEQ, PAGE_ANY_NEWEST_FIRST, PAGE_ANY_OLDEST_FIRST,
    PAGE_BARE_NEWEST_FIRST, PAGE_BARE_OLDEST_FIRST, PAGE_FULL_NEWEST_FIRST, PAGE_FULL_OLDEST_FIRST,
};

/// A value bound for an `EXPLAIN QUERY PLAN`: which one barely matters, its type does.
#[derive(Clone, Copy)]
enum Bind {
    Text(&'static str),
    Int(i64),
}
use Bind::{Int, Text};

/// SQLite's plan for a statement, one step per line.
async fn plan(store: &SqlStore, statement: &str, binds: &[Bind]) -> Vec<String> {
    let sql = format!("EXPLAIN QUERY PLAN {statement}");
    let mut explain = sqlx::query(sqlx::AssertSqlSafe(sql));
    for bind in binds {
        explain = match *bind {
            Text(text) => explain.bind(text),
            Int(n) => explain.bind(n),
        };
    }
    let rows = explain.fetch_all(&store.pool).await.unwrap();
    rows.iter()
        .map(|row| row.try_get("detail").unwrap())
        .collect()
}

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
/// so a page costs the same in an archive of any size (SQLite's plan; PostgreSQL gets its own
/// check when it lands).
#[tokio::test]
async fn archive_queries_are_index_range_scans_without_sorting() {
    let (_dir, store) = open().await;
    let by_archive = "archive_messages_by_archive (archive=? AND seq>? AND seq<?)";
    let pages = [
        (PAGE_ANY_OLDEST_FIRST, PAGE),
        (PAGE_ANY_NEWEST_FIRST, PAGE),
        (PAGE_BARE_OLDEST_FIRST, PAGE_BARE),
        (PAGE_BARE_NEWEST_FIRST, PAGE_BARE),
        (PAGE_FULL_OLDEST_FIRST, PAGE_FULL),
        (PAGE_FULL_NEWEST_FIRST, PAGE_FULL),
    ];
    for (statement, binds) in pages {
        assert_seeks(&store, statement, binds, by_archive).await;
    }
    let by_seq = "USING INTEGER PRIMARY KEY (rowid=?)";
    assert_seeks(
        &store,
        super::super::archive::BY_SEQ,
        &[Int(1), Text(JULIET)],
        by_seq,
    )
    .await;
}

/// The statement's plan goes through `index` and neither scans a table nor sorts.
async fn assert_seeks(store: &SqlStore, statement: &str, binds: &[Bind], index: &str) {
    let steps = plan(store, statement, binds).await;
    assert!(
        steps.iter().any(|step| step.contains(index)),
        "{statement}: {steps:?}"
    );
    assert!(
        !steps
            .iter()
            .any(|step| step.contains("TEMP B-TREE") || step.starts_with("SCAN")),
        "{statement} scans or sorts: {steps:?}"
    );
}

/// Removal, trimming and expiry find what goes through an index too: their cost is what
/// they delete, not the size of the archive (or of all archives).
#[tokio::test]
async fn removals_find_their_messages_through_an_index() {
    let (_dir, store) = open().await;
    let deletes = [
        (
            DELETE_UP_TO_SEQ,
            &[Text(JULIET), Int(1), Int(2)][..],
            "archive_messages_by_archive (archive=? AND seq<?)",
        ),
        (
            EXPIRE_UP_TO_SEQ,
            &[Int(1), Int(2)][..],
            "USING INTEGER PRIMARY KEY (rowid<?)",
        ),
    ];
    for (statement, binds, index) in deletes {
        assert_seeks(&store, statement, binds, index).await;
    }
}
