//! Reading an archive: pages both ways, `complete`, and every filter.

use super::{JULIET, ROMEO, entry, fill, id_of, ids, label, max, open, query};
use crate::{Archive, ArchiveEntry, ArchiveQuery, StoreError, With, archive_id, archive_stamp};

#[tokio::test]
async fn appended_messages_are_read_back_after_sync() {
    let (_dir, store) = open().await;
    let sent = entry(JULIET, "a1", 1_700_000_000_123, &format!("{ROMEO}/phone"));
    store.append_archive(sent.clone()).await.unwrap();
    store.archive_sync().await.unwrap();
    let page = query(&store, JULIET, max(10)).await;
    assert!(page.complete);
    assert_eq!(page.messages.len(), 1);
    let got = &page.messages[0];
    assert_eq!(archive_stamp(sent.seq), 1_700_000_000_123);
    assert_eq!(
        (&got.id, got.stamp_ms, &got.with_full, &got.stanza),
        (
            &archive_id(sent.seq),
            archive_stamp(sent.seq),
            &sent.with_full,
            &sent.stanza
        )
    );
    // Another archive sees nothing of it.
    let other = query(&store, ROMEO, max(10)).await;
    assert!(other.messages.is_empty() && other.complete);
}

#[tokio::test]
async fn paging_forward_by_after_id_returns_every_message_once_in_order() {
    let (_dir, store) = open().await;
    let all = fill(&store, 5000).await;
    let mut seen = Vec::new();
    let mut after_id = None;
    let mut pages = 0;
    loop {
        let page = query(
            &store,
            JULIET,
            ArchiveQuery {
                after_id: after_id.clone(),
                max: 100,
                ..Default::default()
            },
        )
        .await;
        pages += 1;
        seen.extend(ids(&page));
        after_id = page.messages.last().map(|m| m.id.clone());
        if page.complete {
            break;
        }
        assert_eq!(page.messages.len(), 100);
        assert!(pages < 100, "paging does not end");
    }
    assert_eq!(seen, all);
    assert_eq!(pages, 50);
}

#[tokio::test]
async fn paging_backward_by_before_id_from_the_end_returns_every_message_once() {
    let (_dir, store) = open().await;
    let all = fill(&store, 1234).await;
    let mut pages_newest_first: Vec<Vec<String>> = Vec::new();
    let mut before_id = None;
    loop {
        let page = query(
            &store,
            JULIET,
            ArchiveQuery {
                before_id: before_id.clone(),
                max: 100,
                from_end: true,
                ..Default::default()
            },
        )
        .await;
        let page_ids = ids(&page);
        before_id = page.messages.first().map(|m| m.id.clone());
        pages_newest_first.push(page_ids);
        if page.complete {
            break;
        }
        assert!(pages_newest_first.len() < 100, "paging does not end");
    }
    // The first page is the newest 100, oldest first; the last holds the 34 oldest.
    assert_eq!(pages_newest_first[0], all[1134..]);
    assert_eq!(pages_newest_first.last().unwrap(), &all[..34]);
    let seen: Vec<String> = pages_newest_first.into_iter().rev().flatten().collect();
    assert_eq!(seen, all);
}

#[tokio::test]
async fn complete_is_set_only_when_nothing_lies_beyond_the_page() {
    let (_dir, store) = open().await;
    let empty = query(&store, JULIET, max(10)).await;
    assert!(empty.messages.is_empty() && empty.complete);
    let all = fill(&store, 25).await;

    let first = query(&store, JULIET, max(10)).await;
    assert_eq!(ids(&first), all[..10]);
    assert!(!first.complete);
    let exact = query(&store, JULIET, max(25)).await;
    assert_eq!(ids(&exact), all);
    assert!(exact.complete);

    let last = query(
        &store,
        JULIET,
        ArchiveQuery {
            max: 10,
            from_end: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&last), all[15..]);
    assert!(!last.complete);
    // Paging forward from the tenth message to the end: complete; backward from the
    // eleventh to the start: complete too.
    let tail = query(
        &store,
        JULIET,
        ArchiveQuery {
            after_id: Some(id_of(&store, JULIET, &all[14]).await),
            max: 10,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&tail), all[15..]);
    assert!(tail.complete);
    let head = query(
        &store,
        JULIET,
        ArchiveQuery {
            before_id: Some(id_of(&store, JULIET, &all[10]).await),
            max: 10,
            from_end: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&head), all[..10]);
    assert!(head.complete);

    // max = 0 (XEP-0059 §2.7: a count request): no messages, but not complete.
    let none = query(&store, JULIET, max(0)).await;
    assert!(none.messages.is_empty());
    assert!(!none.complete);
    let none_after_last = query(
        &store,
        JULIET,
        ArchiveQuery {
            after_id: Some(id_of(&store, JULIET, &all[24]).await),
            max: 0,
            ..Default::default()
        },
    )
    .await;
    assert!(none_after_last.messages.is_empty() && none_after_last.complete);
}

#[tokio::test]
async fn with_a_bare_jid_matches_every_resource_and_a_full_jid_one() {
    let (_dir, store) = open().await;
    let all = fill(&store, 10).await; // even: phone, odd: laptop
    store
        .append_archive(entry(JULIET, "n0", 2000, "nurse@capulet.example/home"))
        .await
        .unwrap();
    store.archive_sync().await.unwrap();

    let bare = query(
        &store,
        JULIET,
        ArchiveQuery {
            with: Some(With::Bare(ROMEO.into())),
            max: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&bare), all);
    let phone = query(
        &store,
        JULIET,
        ArchiveQuery {
            with: Some(With::Full(format!("{ROMEO}/phone"))),
            max: 100,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&phone), ["m0", "m2", "m4", "m6", "m8"]);
    assert!(phone.complete);
    // A bare JID given as `Full` matches only messages with no resource: none here.
    let bare_as_full = query(
        &store,
        JULIET,
        ArchiveQuery {
            with: Some(With::Full(ROMEO.into())),
            max: 100,
            ..Default::default()
        },
    )
    .await;
    assert!(bare_as_full.messages.is_empty());
    // Paging within a `with` filter: the last laptop message, then the two before it.
    let laptop_last = query(
        &store,
        JULIET,
        ArchiveQuery {
            with: Some(With::Full(format!("{ROMEO}/laptop"))),
            max: 1,
            from_end: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&laptop_last), ["m9"]);
    assert!(!laptop_last.complete);
    let laptop_before = query(
        &store,
        JULIET,
        ArchiveQuery {
            with: Some(With::Full(format!("{ROMEO}/laptop"))),
            before_id: Some(id_of(&store, JULIET, "m9").await),
            max: 2,
            from_end: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&laptop_before), ["m5", "m7"]);
    assert!(!laptop_before.complete);
}

#[tokio::test]
async fn a_time_window_includes_both_ends() {
    let (_dir, store) = open().await;
    fill(&store, 10).await; // stamps 1000, 1010, … 1090
    let window = |start_ms, end_ms| ArchiveQuery {
        start_ms,
        end_ms,
        max: 100,
        ..Default::default()
    };
    let inner = query(&store, JULIET, window(Some(1020), Some(1050))).await;
    assert_eq!(ids(&inner), ["m2", "m3", "m4", "m5"]);
    assert!(inner.complete);
    let between = query(&store, JULIET, window(Some(1015), Some(1045))).await;
    assert_eq!(ids(&between), ["m2", "m3", "m4"]);
    let from = query(&store, JULIET, window(Some(1085), None)).await;
    assert_eq!(ids(&from), ["m9"]);
    let until = query(&store, JULIET, window(None, Some(1000))).await;
    assert_eq!(ids(&until), ["m0"]);
    let after_all = query(&store, JULIET, window(Some(5000), None)).await;
    assert!(after_all.messages.is_empty() && after_all.complete);
    let before_all = query(&store, JULIET, window(None, Some(999))).await;
    assert!(before_all.messages.is_empty() && before_all.complete);
    let inverted = query(&store, JULIET, window(Some(1050), Some(1020))).await;
    assert!(inverted.messages.is_empty() && inverted.complete);

    // Combined with paging and `with`: the newest two phone messages of the window.
    let combined = query(
        &store,
        JULIET,
        ArchiveQuery {
            with: Some(With::Full(format!("{ROMEO}/phone"))),
            start_ms: Some(1000),
            end_ms: Some(1070),
            max: 2,
            from_end: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(ids(&combined), ["m4", "m6"]);
    assert!(!combined.complete);
}

#[tokio::test]
async fn an_ids_filter_returns_only_the_named_messages_in_archive_order() {
    let (_dir, store) = open().await;
    fill(&store, 10).await;
    store
        .append_archive(entry(ROMEO, "r1", 1000, JULIET))
        .await
        .unwrap();
    store.archive_sync().await.unwrap();
    let [m2, m5, m7] = [
        id_of(&store, JULIET, "m2").await,
        id_of(&store, JULIET, "m5").await,
        id_of(&store, JULIET, "m7").await,
    ];
    let r1 = id_of(&store, ROMEO, "r1").await;
    let named = |ids: &[&str], max: usize, from_end: bool| ArchiveQuery {
        ids: ids.iter().map(|id| id.to_string()).collect(),
        max,
        from_end,
        ..Default::default()
    };
    // Unknown ids and another archive's ids are left out; duplicates count once.
    let page = query(
        &store,
        JULIET,
        named(&[&m7, "nope", &m2, &r1, &m5, &m2], 10, false),
    )
    .await;
    assert_eq!(ids(&page), ["m2", "m5", "m7"]);
    assert!(page.complete);
    let first_two = query(&store, JULIET, named(&[&m7, &m2, &m5], 2, false)).await;
    assert_eq!(ids(&first_two), ["m2", "m5"]);
    assert!(!first_two.complete);
    let last_two = query(&store, JULIET, named(&[&m7, &m2, &m5], 2, true)).await;
    assert_eq!(ids(&last_two), ["m5", "m7"]);
    assert!(!last_two.complete);
    // Other filters still apply.
    let with_phone = ArchiveQuery {
        with: Some(With::Full(format!("{ROMEO}/phone"))),
        after_id: Some(m2.clone()),
        ..named(
            &[
                &m2,
                &id_of(&store, JULIET, "m3").await,
                &id_of(&store, JULIET, "m4").await,
                &id_of(&store, JULIET, "m8").await,
            ],
            10,
            false,
        )
    };
    assert_eq!(ids(&query(&store, JULIET, with_phone).await), ["m4", "m8"]);
}

#[tokio::test]
async fn an_unknown_anchor_is_not_found() {
    let (_dir, store) = open().await;
    fill(&store, 3).await;
    store
        .append_archive(entry(ROMEO, "r1", 1000, JULIET))
        .await
        .unwrap();
    store.archive_sync().await.unwrap();
    // Not an archive id; another archive's id.
    for anchor in ["nope".to_string(), id_of(&store, ROMEO, "r1").await] {
        let after = store
            .query_archive(
                JULIET,
                &ArchiveQuery {
                    after_id: Some(anchor.clone()),
                    max: 10,
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(after, Err(StoreError::NotFound)), "{after:?}");
        let before = store
            .query_archive(
                JULIET,
                &ArchiveQuery {
                    before_id: Some(anchor.clone()),
                    max: 10,
                    from_end: true,
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(before, Err(StoreError::NotFound)), "{before:?}");
    }
}

#[tokio::test]
async fn a_message_archived_twice_is_kept_once() {
    let (_dir, store) = open().await;
    let first = entry(JULIET, "dup", 1000, ROMEO);
    let again = ArchiveEntry {
        stanza: "<message><body>again</body></message>".into(),
        ..first.clone()
    };
    store.append_archive(first.clone()).await.unwrap();
    store.append_archive(again.clone()).await.unwrap(); // likely the same batch
    store.archive_sync().await.unwrap();
    store.append_archive(again).await.unwrap(); // a later batch
    store
        .append_archive(entry(JULIET, "next", 1001, ROMEO))
        .await
        .unwrap();
    store.archive_sync().await.unwrap();
    let page = query(&store, JULIET, max(10)).await;
    assert_eq!(ids(&page), ["dup", "next"]);
    assert_eq!(page.messages[0].stanza, first.stanza);
}

#[tokio::test]
async fn bounds_are_the_oldest_and_newest_message() {
    let (_dir, store) = open().await;
    assert_eq!(store.archive_bounds(JULIET).await.unwrap(), None);
    fill(&store, 7).await;
    let (oldest, newest) = store.archive_bounds(JULIET).await.unwrap().unwrap();
    assert_eq!((label(&oldest).as_str(), oldest.stamp_ms), ("m0", 1000));
    assert_eq!((label(&newest).as_str(), newest.stamp_ms), ("m6", 1060));
    assert_eq!(store.archive_bounds(ROMEO).await.unwrap(), None);
}
