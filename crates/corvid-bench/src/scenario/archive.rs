//! `--verify-archive N`: after a chat run, whether the server really archived what it
//! carried (XEP-0313). N accounts spread over the fleet each page through their own
//! archive from just before the run began, and the messages of this run found there are
//! compared with those delivered from and to the account.
//!
//! A server may still be committing its archive when the last message arrives (Corvid
//! group-commits; nothing in XEP-0313 says a message is archived before it is routed), so
//! an account whose archive holds fewer than delivered is asked again a few times, a
//! couple of seconds apart, before the shortfall is reported. Every step is bounded:
//! pages per account, seconds per page, attempts, and the whole check (a server still
//! working through a backlog may answer slowly; the accounts not reached by then are
//! reported as unchecked).

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use corvid_proto::time::format_datetime;

use super::Fleet;
use crate::archive_check::{ArchiveCheck, Fin, PageResults, page_query, tally};
use crate::report::{AccountArchive, ArchiveReport};
use crate::shared::Shared;

/// Pages read from one account's archive, at most (250 results each where the server
/// allows, 50 on Prosody's default cap).
const MAX_PAGES: u32 = 400;
/// Seconds one page may take.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// Queries of one account's archive while it holds fewer than were delivered.
const ATTEMPTS: u32 = 5;
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// The whole check, at most.
const CHECK_LIMIT: Duration = Duration::from_secs(120);

/// Seconds before the run began that the archive window opens: archives stamp with
/// second precision (Prosody) and the window must not cut off the first messages.
const WINDOW_SLACK: Duration = Duration::from_secs(2);

/// The `start` of the window for a run that began at `began`.
pub fn window_start(began: SystemTime) -> String {
    format_datetime(began.checked_sub(WINDOW_SLACK).unwrap_or(began))
}

/// `n` session indices spread evenly over `live`.
pub fn samples(live: &[u32], n: u32) -> Vec<u32> {
    let n = (n as usize).min(live.len());
    (0..n).map(|i| live[i * live.len() / n]).collect()
}

/// Checks the archives of `accounts` (session indices) against the traffic counted.
pub async fn verify(
    shared: &Shared,
    check: &ArchiveCheck,
    fleet: &Fleet,
    accounts: &[u32],
    start: &str,
) -> ArchiveReport {
    let mut report = ArchiveReport {
        window_start: start.to_owned(),
        ..ArchiveReport::default()
    };
    let mut query = 0u32;
    let deadline = Instant::now() + CHECK_LIMIT;
    for &index in accounts {
        let mut account = AccountArchive {
            jid: shared.accounts.bare_jid(index),
            ..AccountArchive::default()
        };
        let reader = Reader {
            check,
            fleet,
            index,
            start,
            deadline,
        };
        for attempt in 1..=ATTEMPTS {
            let traffic = check.traffic(index);
            account.queued = traffic.queued();
            account.delivered = traffic.delivered();
            if Instant::now() >= deadline {
                account.error = Some(format!(
                    "not read: the check's {} s had passed",
                    CHECK_LIMIT.as_secs()
                ));
                break;
            }
            account.attempts = attempt;
            match reader.read_archive(&mut query).await {
                Ok(read) => {
                    (account.archived, account.duplicates) = tally(&read.markers);
                    account.other = read.results - read.markers.len() as u64;
                    account.pages = read.pages;
                    account.error = read.incomplete;
                }
                Err(e) => account.error = Some(e),
            }
            let done = account.error.is_some() || account.archived >= account.delivered;
            if done || attempt == ATTEMPTS {
                break;
            }
            tokio::time::sleep(RETRY_AFTER).await;
        }
        report.add(account);
    }
    report
}

/// What one pass over an account's archive found.
struct Read {
    markers: Vec<(u64, u64)>,
    results: u64,
    pages: u32,
    /// Set when the pass stopped before the server said `complete`.
    incomplete: Option<String>,
}

/// One account's archive being read, and the limit of the whole check.
struct Reader<'a> {
    check: &'a ArchiveCheck,
    fleet: &'a Fleet,
    index: u32,
    start: &'a str,
    deadline: Instant,
}

impl Reader<'_> {
    async fn read_archive(&self, query: &mut u32) -> Result<Read, String> {
        let mut read = Read {
            markers: Vec::new(),
            results: 0,
            pages: 0,
            incomplete: None,
        };
        let mut after: Option<String> = None;
        loop {
            if read.pages == MAX_PAGES {
                read.incomplete = Some(format!("stopped after {MAX_PAGES} pages"));
                return Ok(read);
            }
            *query += 1;
            let (page, fin) = self
                .fetch_page(&format!("verify{query}"), after.as_deref())
                .await?;
            read.pages += 1;
            read.results += page.results;
            let empty = page.results == 0;
            read.markers.extend(page.markers);
            // XEP-0313 §4.3: `complete` marks the last page; an empty page or one without a
            // <last/> id to page from ends it too (servers that omit `complete`).
            match fin.last {
                Some(last) if !fin.complete && !empty => after = Some(last),
                _ => return Ok(read),
            }
        }
    }

    async fn fetch_page(
        &self,
        id: &str,
        after: Option<&str>,
    ) -> Result<(PageResults, Fin), String> {
        let check = self.check;
        check.begin(id);
        if !self
            .fleet
            .send(self.index, page_query(id, self.start, after))
        {
            check.take();
            return Err("the session is gone".into());
        }
        let deadline = (Instant::now() + PAGE_TIMEOUT).min(self.deadline);
        // A wake-up left over from an earlier page only costs one more look.
        while !check.ended() {
            if tokio::time::timeout_at(deadline, check.wait())
                .await
                .is_err()
            {
                check.take();
                return Err("no answer to an archive query in time".into());
            }
        }
        let mut page = check.take();
        match page.end.take() {
            Some(Ok(fin)) => Ok((page, fin)),
            Some(Err(e)) => Err(format!("archive query {e}")),
            None => Err("archive query ended without an answer".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_spread_over_the_fleet() {
        let live: Vec<u32> = (0..100).collect();
        assert_eq!(samples(&live, 4), vec![0, 25, 50, 75]);
        assert_eq!(samples(&live[..3], 10), vec![0, 1, 2], "at most the fleet");
        assert!(samples(&live, 0).is_empty());
    }

    #[test]
    fn the_window_opens_before_the_run() {
        let began = SystemTime::UNIX_EPOCH + Duration::from_secs(1_765_000_000);
        assert_eq!(window_start(began), "2025-12-06T05:46:38Z");
    }
}
