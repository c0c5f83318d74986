//! The query plans that make every archive query an index range scan.

use sqlx::Row;

use super::{JULIET, ROMEO, open};
use crate::sql::SqlStore;
use crate::sql::archive::{
    DELETE_OLDER_THAN, DELETE_UP_TO_SEQ, EXPIRED_ARCHIVES, FIRST_AT_OR_AFTER, LAST_AT_OR_BEFORE,
    PAGE_ANY_NEWEST_FIRST, PAGE_ANY_OLDEST_FIRST, PAGE_BARE_NEWEST_FIRST, PAGE_BARE_OLDEST_FIRST,
    PAGE_FULL_NEWEST_FIRST, PAGE_FULL_OLDEST_FIRST,
};

/// SQLite's plan for a statement, one step per line.
async fn plan(store: &SqlStore, statement: &str, binds: usize) -> Vec<String> {
    let sql = format!("EXPLAIN QUERY PLAN {statement}");
    let mut explain = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(JULIET);
    for n in 1..binds.min(6) {
        explain = explain.bind(i64::try_from(n).unwrap());
    }
    if binds == 7 {
        explain = explain.bind(ROMEO);
    }
    let rows = explain.fetch_all(&store.pool).await.unwrap();
    rows.iter()
        .map(|row| row.try_get("detail").unwrap())
        .collect()
}

/// Every page walks the `seq` index of its `with` filter and a time window's ends are index
/// seeks, so a page costs the same in an archive of any size (SQLite's plan; PostgreSQL
/// gets its own check when it lands).
#[tokio::test]
async fn archive_queries_are_index_range_scans_without_sorting() {
    let (_dir, store) = open().await;
    let pages = [
        (
            PAGE_ANY_OLDEST_FIRST,
            6,
            "archive_messages_by_seq (archive=? AND seq>? AND seq<?)",
        ),
        (
            PAGE_ANY_NEWEST_FIRST,
            6,
            "archive_messages_by_seq (archive=? AND seq>? AND seq<?)",
        ),
        (
            PAGE_BARE_OLDEST_FIRST,
            7,
            "archive_messages_by_with_bare (archive=? AND with_bare=? AND seq>? AND seq<?)",
        ),
        (
            PAGE_BARE_NEWEST_FIRST,
            7,
            "archive_messages_by_with_bare (archive=? AND with_bare=? AND seq>? AND seq<?)",
        ),
        (
            PAGE_FULL_OLDEST_FIRST,
            7,
            "archive_messages_by_with_full (archive=? AND with_full=? AND seq>? AND seq<?)",
        ),
        (
            PAGE_FULL_NEWEST_FIRST,
            7,
            "archive_messages_by_with_full (archive=? AND with_full=? AND seq>? AND seq<?)",
        ),
        (
            FIRST_AT_OR_AFTER,
            2,
            "archive_messages_by_stamp (archive=? AND stamp_ms>?)",
        ),
        (
            LAST_AT_OR_BEFORE,
            2,
            "archive_messages_by_stamp (archive=? AND stamp_ms<?)",
        ),
    ];
    for (statement, binds, index) in pages {
        let steps = plan(&store, statement, binds).await;
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
}

/// Removal, trimming and expiry find what goes through an index too: their cost is what
/// they delete, not the size of the archive (or of all archives).
#[tokio::test]
async fn removals_find_their_messages_through_an_index() {
    let (_dir, store) = open().await;
    let deletes = [
        (
            DELETE_UP_TO_SEQ,
            "archive_messages_by_seq (archive=? AND seq<?)",
        ),
        (
            DELETE_OLDER_THAN,
            "archive_messages_by_stamp (archive=? AND stamp_ms<?)",
        ),
    ];
    for (statement, index) in deletes {
        let steps = plan(&store, statement, 3).await;
        assert!(
            steps.iter().any(|step| step.contains(index)),
            "{statement}: {steps:?}"
        );
        assert!(
            !steps.iter().any(|step| step.starts_with("SCAN")),
            "{statement} scans: {steps:?}"
        );
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {EXPIRED_ARCHIVES}"
    )))
    .bind(1000_i64)
    .fetch_all(&store.pool)
    .await
    .unwrap();
    let steps: Vec<String> = rows
        .iter()
        .map(|row| row.try_get("detail").unwrap())
        .collect();
    // Either the age index, or (with the planner's statistics saying archives are large) a
    // skip-scan of the stamp index, one seek per archive.
    assert!(
        steps.iter().any(|step| {
            step.contains("archive_messages_by_age (stamp_ms<?)")
                || step.contains("archive_messages_by_stamp (ANY(archive) AND stamp_ms<?)")
        }),
        "{steps:?}"
    );
    assert!(
        !steps.iter().any(|step| step.starts_with("SCAN")),
        "{steps:?}"
    );
}
