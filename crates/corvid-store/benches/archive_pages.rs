//! What a page of a message archive (XEP-0313) costs, in an archive of 1,000 messages and
//! in one of 100,000 sharing the database with others: the first page, a page in the middle
//! of the archive (an RSM `<after/>` anchor), the last page (an empty `<before/>`), a page of
//! one correspondent, and a time window. Keyset paging makes each the same in both sizes.
//!
//! Run: `cargo bench -p corvid-store --bench archive_pages`

use std::hint::black_box;

use corvid_store::{Archive, ArchiveEntry, ArchiveQuery, SqlStore, With};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// The archive sizes compared.
const SIZES: [usize; 2] = [1_000, 100_000];
/// Messages per page, as clients ask.
const PAGE: usize = 50;
/// Correspondents in each archive.
const CONTACTS: usize = 10;
/// Milliseconds between two messages of one archive.
const STEP_MS: i64 = 10;

fn archive_name(size: usize) -> String {
    format!("user{size}@example.org")
}

fn id(size: usize, n: usize) -> String {
    format!("{size}-{n}")
}

fn stamp(n: usize) -> i64 {
    1_700_000_000_000 + STEP_MS * i64::try_from(n).unwrap()
}

/// Both archives filled side by side, in time order (the writer keeps stamps from going
/// back), with a third archive's messages between theirs, as a server's would be.
async fn fill(store: &SqlStore) {
    let largest = SIZES.iter().copied().max().unwrap_or(0);
    for n in 0..largest {
        let contact = format!("contact{}@example.net", n % CONTACTS);
        let stanza = format!(
            "<message xmlns='jabber:client' type='chat' id='m{n}'><body>message {n} of a \
             conversation that goes on and on</body></message>"
        );
        let mut archives: Vec<(String, String)> = SIZES
            .iter()
            .filter(|&&size| n < size)
            .map(|&size| (archive_name(size), id(size, n)))
            .collect();
        archives.push(("other@example.org".into(), format!("other-{n}")));
        for (archive, id) in archives {
            let entry = ArchiveEntry {
                archive,
                id,
                stamp_ms: stamp(n),
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
                    assert_eq!(page.messages.len(), PAGE, "{name} {size}");
                    black_box(page)
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, pages);
criterion_main!(benches);
