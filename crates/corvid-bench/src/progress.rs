//! A progress line on stderr every two seconds while a run goes on, and the peak memory
//! samples the report needs (taken whether or not the line is printed).

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::procfs::{self, ProcSample};
use crate::report::Latency;
use crate::shared::Shared;
use crate::stats::Stats;

const INTERVAL: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct Peaks {
    pub server_rss_kb: AtomicU64,
    pub client_rss_kb: AtomicU64,
}

/// Runs until aborted.
pub async fn run(shared: Arc<Shared>, server_pid: Vec<u32>, quiet: bool, peaks: Arc<Peaks>) {
    let started = Instant::now();
    let mut last = Snapshot::take(&shared, &server_pid);
    let mut ticker = tokio::time::interval(INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let now = Snapshot::take(&shared, &server_pid);
        if let Some(s) = now.server {
            peaks.server_rss_kb.fetch_max(s.rss_kb, Relaxed);
        }
        if let Some(c) = now.client {
            peaks.client_rss_kb.fetch_max(c.rss_kb, Relaxed);
        }
        if !quiet {
            let line = format_line(&shared, started.elapsed(), &last, &now);
            let _ = writeln!(std::io::stderr(), "{line}");
        }
        last = now;
    }
}

struct Snapshot {
    at: Instant,
    logins: u64,
    sent: u64,
    delivered: u64,
    server: Option<ProcSample>,
    client: Option<ProcSample>,
}

impl Snapshot {
    fn take(shared: &Shared, server_pid: &[u32]) -> Snapshot {
        let c = &shared.stats.counters;
        Snapshot {
            at: Instant::now(),
            logins: Stats::get(&c.login_ok),
            sent: Stats::get(&c.sent),
            delivered: Stats::get(&c.delivered),
            server: procfs::sample_all(server_pid),
            client: procfs::sample(None),
        }
    }
}

fn format_line(shared: &Shared, elapsed: Duration, a: &Snapshot, b: &Snapshot) -> String {
    let c = &shared.stats.counters;
    let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-3);
    let rate = |x: u64, y: u64| (y.saturating_sub(x)) as f64 / secs;
    let latency = Latency::from_micros(&shared.stats.latency());
    let mut line = format!(
        "[{:>6.1}s] up {} ({:.0}/s) failed {} | sent {} ({:.0}/s) delivered {} ({:.0}/s) p99 {:.1} ms | errors {} disconnects {}",
        elapsed.as_secs_f64(),
        b.logins,
        rate(a.logins, b.logins),
        Stats::get(&c.login_failed),
        b.sent,
        rate(a.sent, b.sent),
        b.delivered,
        rate(a.delivered, b.delivered),
        latency.p99_ms,
        shared.stats.errors().values().sum::<u64>(),
        Stats::get(&c.disconnects),
    );
    if let (Some(x), Some(y)) = (&a.server, &b.server) {
        line.push_str(&format!(
            " | server {:.0} MiB {:.0}% CPU",
            y.rss_kb as f64 / 1024.0,
            procfs::cpu_percent(x, y)
        ));
    }
    if let (Some(x), Some(y)) = (&a.client, &b.client) {
        line.push_str(&format!(" | bench {:.0}% CPU", procfs::cpu_percent(x, y)));
    }
    line
}
