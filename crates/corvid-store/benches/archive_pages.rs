//! What a page of a message archive (XEP-0313) costs, in an archive of 1,000 messages and
//! in one of 100,000 sharing the database with others: the first page, a page in the middle
//! of the archive (an RSM `<after/>` anchor), the last page (an empty `<before/>`), a page of
//! one correspondent (one message in ten), a page of a rare correspondent (one in a
//! thousand: the index entries of the others are skipped), and a time window. Keyset paging
//! makes each but the rare correspondent's the same in both sizes.
//!
//! Run: `cargo bench -p corvid-store --bench archive_pages`

use std::hint::black_box;

use corvid_store::{
    Archive, ArchiveEntry, ArchiveQuery, SqlStore, With, archive_id, first_archive_seq_at,
};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// The archive sizes compared.
const SIZES: [usize; 2] = [1_000, 100_000];
/// Messages per page, as clients ask.
const PAGE: usize = 50;
/// Correspondents in each archive.
const CONTACTS: usize = 10;
/// One message in this many is with the rare correspondent.
const RARE_EVERY: usize = 1000;
/// Milliseconds between two messages of one archive.
const STEP_MS: i64 = 10;

fn archive_name(size: usize) -> String {
    format!("user{size}@example.org")
}

/// The `n`th message of the archive of `size` messages (each archive has its own number
/// within the millisecond).
fn seq(size: usize, n: usize) -> i64 {
    let slot = SIZES.iter().position(|&s| s == size).unwrap_or(SIZES.len());
    first_archive_seq_at(stamp(n)) + i64::try_from(slot).unwrap()
}

fn id(size: usize, n: usize) -> String {
    archive_id(seq(size, n))
}

fn stamp(n: usize) -> i64 {
    1_700_000_000_000 + STEP_MS * i64::try_from(n).unwrap()
}

/// Both archives filled side by side, in time order (as a server numbers them, going
/// back), with a third archive's messages between theirs, as a server's would be.
async fn fill(store: &SqlStore) {
    let largest = SIZES.iter().copied().max().unwrap_or(0);
    for n in 0..largest {
        let contact = if n % RARE_EVERY == RARE_EVERY - 1 {
            "rare@example.net".to_string()
        } else {
            format!("contact{}@example.net", n % CONTACTS)
        };
        let stanza = format!(
            "<message xmlns='jabber:client' type='chat' id='m{n}'><body>message {n} of a \
             conversation that goes on and on</body></message>"
        );
        let mut archives: Vec<(String, i64)> = SIZES
            .iter()
            .filter(|&&size| n < size)
            .map(|&size| (archive_name(size), seq(size, n)))
            .collect();
        archives.push(("other@example.org".into(), seq(0, n)));
        for (archive, seq) in archives {
            let entry = ArchiveEntry {
                archive,
                seq,
                with_bare: contact.clone(),
                with_full: format!("{contact}/phone"),
                stanza: stanza.clone(),
            };
            store.append_archive(entry).await.expect("append");
        }
    }
    store.archive_sync().await.expect("sync");
}

fn pages(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = runtime.block_on(async {
        let store = SqlStore::open_in_dir(dir.path()).await.expect("store");
        fill(&store).await;
        store
    });

    let mut group = c.benchmark_group("archive page");
    for size in SIZES {
        let archive = archive_name(size);
        let queries = [
            ("first", ArchiveQuery::default()),
            (
                "middle",
                ArchiveQuery {
                    after_id: Some(id(size, size / 2)),
                    ..ArchiveQuery::default()
                },
            ),
            (
                "last",
                ArchiveQuery {
                    from_end: true,
                    ..ArchiveQuery::default()
                },
            ),
            (
                "with",
                ArchiveQuery {
                    with: Some(With::Bare("contact7@example.net".into())),
                    after_id: Some(id(size, size / 2)),
                    ..ArchiveQuery::default()
                },
            ),
            (
                "rare with",
                ArchiveQuery {
                    with: Some(With::Bare("rare@example.net".into())),
                    ..ArchiveQuery::default()
                },
            ),
            (
                "window",
                ArchiveQuery {
                    start_ms: Some(stamp(size / 2)),
                    end_ms: Some(stamp(size / 2 + 10 * PAGE)),
                    ..ArchiveQuery::default()
                },
            ),
        ];
        for (name, query) in queries {
            let query = ArchiveQuery { max: PAGE, ..query };
            group.bench_with_input(BenchmarkId::new(name, size), &query, |b, query| {
                b.iter(|| {
                    let page = runtime
                        .block_on(store.query_archive(&archive, query))
                        .expect("page");
                    let expected = if name == "rare with" {
                        PAGE.min(size / RARE_EVERY)
                    } else {
                        PAGE
                    };
                    assert_eq!(page.messages.len(), expected, "{name} {size}");
                    black_box(page)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
