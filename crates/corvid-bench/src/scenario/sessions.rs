//! Scenarios about sessions themselves: idle sessions held open (server memory per
//! session), a login storm (logins/s), and bulk in-band registration.

use std::time::Duration;

use super::{Goal, Run};

/// Server memory settles (allocator, lazily freed buffers) for this long before the
/// loaded sample.
const SETTLE: Duration = Duration::from_secs(2);

/// Logs every session in at the arrival rate, holds them idle for `hold` seconds, and
/// samples the server's RSS at the end of the hold.
pub async fn idle(run: &mut Run, hold: u64) {
    run.report.params.insert("hold".into(), hold as f64);
    let fleet = run.open_fleet(Goal::Session, false).await;
    tokio::time::sleep(SETTLE).await;
    let start = run.sample_server();
    tokio::time::sleep(Duration::from_secs(hold)).await;
    let end = run.sample_server();
    run.loaded_rss_kb = end.map(|s| s.rss_kb);
    run.measured = start.zip(end);
    run.report
        .extra
        .insert("sessions_held".into(), fleet.live().len() as u64);
    fleet.close().await;
}

/// Logs every session in with no pacing beyond `--max-pending`; the figure is logins/s.
pub async fn login_storm(run: &mut Run) {
    let start = run.sample_server();
    let fleet = run.open_fleet(Goal::Session, true).await;
    run.measured = start.zip(run.sample_server());
    fleet.close().await;
}

/// Registers every account (XEP-0077) and closes; existing accounts count as done.
pub async fn register(run: &mut Run) {
    let start = run.sample_server();
    let fleet = run.open_fleet(Goal::RegisterOnly, true).await;
    run.measured = start.zip(run.sample_server());
    fleet.close().await;
}
