//! Keeping archives bounded: appending with the per-archive quota (`[mam]
//! max_messages_per_user`, the oldest trimmed), and retention (`[mam] retention_days`,
//! expired messages removed by a periodic task).
//!
//! The quota is checked every few appends per archive rather than on each (a tenth of the
//! quota, at most every 100), in a task of its own that first waits for the appends to be
//! durable: an archive briefly holds a little more than its quota, and no message waits for
//! the check.

use std::sync::Arc;
use std::time::Duration;

use corvid_store::{Archive as _, ArchiveEntry};
use dashmap::DashMap;

use crate::module::Ctx;
use crate::server::Server;

/// How often retention runs (and once when the server takes its first session).
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// The most appends between two quota checks of one archive.
const MAX_APPENDS_BETWEEN_CHECKS: usize = 100;

/// Appends per archive since its last quota check.
#[derive(Default)]
pub struct QuotaCounter {
    appends: DashMap<String, usize>,
}

/// Queues an entry for the store (never waiting for durability), and trims its archive
/// now and then when a quota is set.
pub async fn append(ctx: &Ctx, quota: &QuotaCounter, entry: ArchiveEntry) {
    let archive = entry.archive.clone();
    if let Err(e) = ctx.server.store.append_archive(entry).await {
        tracing::warn!(error = %e, %archive, "mam: cannot archive a message");
        return;
    }
    let keep = ctx.server.config.mam.max_messages_per_user;
    if keep == 0 {
        return;
    }
    let every = (keep / 10).clamp(1, MAX_APPENDS_BETWEEN_CHECKS);
    let due = {
        let mut count = quota.appends.entry(archive.clone()).or_insert(0);
        *count += 1;
        *count >= every
    };
    if !due {
        return;
    }
    quota.appends.remove(&archive);
    let server = ctx.server.clone();
    tokio::spawn(async move {
        // Only committed entries are counted: wait for those just queued.
        let trimmed = match server.store.archive_sync().await {
            Ok(()) => server.store.trim_archive(&archive, keep).await,
            Err(e) => Err(e),
        };
        match trimmed {
            Ok(0) => {}
            Ok(n) => tracing::debug!(%archive, removed = n, "mam: archive trimmed to its quota"),
            Err(e) => tracing::warn!(error = %e, %archive, "mam: cannot trim an archive"),
        }
    });
}

/// Starts the retention task (when `[mam] retention_days` is set): it removes expired
/// messages from every archive now, then every hour, until the server shuts down.
pub fn start_retention(server: Arc<Server>) {
    let days = server.config.mam.retention_days;
    if days == 0 {
        return;
    }
    let mut shutdown = server.shutdown_signal();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(RETENTION_INTERVAL);
        loop {
            tokio::select! {
                _ = ticks.tick() => expire(&server, days).await,
                _ = shutdown.changed() => return,
            }
        }
    });
}

async fn expire(server: &Server, days: u64) {
    let age_ms = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    let before_ms = super::archiving::now_ms().saturating_sub(age_ms);
    match server.store.expire_archives(before_ms).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "mam: expired archived messages removed"),
        Err(e) => tracing::warn!(error = %e, "mam: archive retention failed"),
    }
}
