//! Mutual presence subscriptions made through the protocol (RFC 6121 §3): each pair
//! asks both ways and both sides approve (the sessions auto-accept `subscribe`), so
//! every pair ends with subscription='both'. Shared by the presence and PEP scenarios.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use super::{Fleet, Run, open_loop, wait_stalled};
use crate::stats::Stats;

/// Subscription stanzas sent per second while setting up rosters.
pub const SETUP_RATE: f64 = 2000.0;
const SETUP_LIMIT: Duration = Duration::from_secs(180);
/// Roster writes are slow on some servers: give up on the setup only after this long
/// without progress.
const SETUP_PATIENCE: Duration = Duration::from_secs(15);
/// Between two roster fetches while the rosters are still filling.
const ROSTER_POLL: Duration = Duration::from_secs(2);

/// Sends every `(from, to)` subscription request (a symmetric set: `(to, from)` is in it
/// too) and waits until the rosters hold them all as `both`, or stop filling; records in
/// the report what the rosters hold then.
pub async fn subscribe_all(run: &mut Run, fleet: &Fleet, live: &[u32], requests: &[(u32, u32)]) {
    let shared = run.shared.clone();
    let c = &shared.stats.counters;
    // RFC 6121 §3.1.3: subscription requests go to the contact's "interested" resources,
    // those that have requested the roster, so every session fetches it first, as a
    // client does at login.
    fetch_rosters(fleet, live);
    wait_stalled(
        || Stats::get(&c.rosters),
        live.len() as u64,
        SETUP_PATIENCE,
        SETUP_LIMIT,
    )
    .await;
    c.rosters.store(0, Relaxed);
    c.roster_both.store(0, Relaxed);

    let setup_started = Instant::now();
    let total = requests.len() as f64;
    let accounts = shared.accounts.clone();
    if !requests.is_empty() {
        open_loop(
            &shared,
            fleet,
            SETUP_RATE,
            Duration::from_secs_f64(total / SETUP_RATE),
            |k, _| {
                let (from, to) = requests[(k as usize).min(requests.len() - 1)];
                (
                    from,
                    format!(
                        "<presence to='{}' type='subscribe'/>",
                        accounts.bare_jid(to)
                    ),
                )
            },
        )
        .await;
    }
    wait_stalled(
        || Stats::get(&c.subscribed),
        requests.len() as u64,
        SETUP_PATIENCE,
        SETUP_LIMIT,
    )
    .await;
    // A server that queues the requests may approve them long after the acks stall, or
    // ack before its rosters say so: the rosters themselves are the check. Every request
    // of a symmetric set ends as one `both` item in the requester's roster.
    let expected = requests.len() as u64;
    let deadline = Instant::now() + SETUP_LIMIT;
    let mut best = (0, Instant::now());
    loop {
        c.rosters.store(0, Relaxed);
        c.roster_both.store(0, Relaxed);
        fetch_rosters(fleet, live);
        wait_stalled(
            || Stats::get(&c.rosters),
            live.len() as u64,
            SETUP_PATIENCE,
            SETUP_LIMIT,
        )
        .await;
        let both = Stats::get(&c.roster_both);
        if both > best.0 {
            best = (both, Instant::now());
        }
        if both >= expected || best.1.elapsed() > SETUP_PATIENCE || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(ROSTER_POLL).await;
    }
    let rosters = Stats::get(&c.rosters).max(1);
    let extra = &mut run.report.extra;
    extra.insert("subscribed_acks".into(), Stats::get(&c.subscribed));
    extra.insert(
        "roster_both_per_user".into(),
        Stats::get(&c.roster_both) / rosters,
    );
    extra.insert("roster_both_total".into(), Stats::get(&c.roster_both));
    extra.insert("rosters_fetched".into(), Stats::get(&c.rosters));
    extra.insert(
        "setup_ms".into(),
        setup_started.elapsed().as_millis() as u64,
    );
}

fn fetch_rosters(fleet: &Fleet, live: &[u32]) {
    for &i in live {
        fleet.send(
            i,
            "<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>".into(),
        );
    }
}
