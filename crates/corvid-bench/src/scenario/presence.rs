//! Presence broadcast (RFC 6121 §4.4): every user has K mutual contacts, the users in
//! a ring with K/2 neighbours on each side. Subscriptions are made through the
//! protocol (subscribe both ways, both sides approve), then sessions change presence
//! at a total rate and each change is delivered to K contacts.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::{Fleet, Goal, Run, drain, open_loop, wait_stalled};
use crate::schedule::Picker;
use crate::stats::Stats;

/// Subscription stanzas sent per second while setting up rosters.
const SETUP_RATE: f64 = 2000.0;
const SETUP_LIMIT: Duration = Duration::from_secs(180);
/// Roster writes are slow on some servers: give up on the setup only after this long
/// without progress.
const SETUP_PATIENCE: Duration = Duration::from_secs(15);

/// The contacts of user `i` among `n`: `i ± 1 … i ± k/2`, wrapping around.
pub fn ring_contacts(i: u32, n: u32, k: u32) -> Vec<u32> {
    let mut contacts = Vec::with_capacity(k as usize);
    for d in 1..=k / 2 {
        contacts.push((i + d) % n);
        contacts.push((i + n - d % n) % n);
    }
    contacts
}

pub async fn presence(run: &mut Run, contacts: u32, rate: f64, duration: u64) -> Result<()> {
    run.report.params.insert("contacts".into(), contacts as f64);
    run.report.params.insert("rate".into(), rate);
    run.report.params.insert("duration".into(), duration as f64);
    let fleet = run.open_fleet(Goal::Session, false).await;
    let live = fleet.live();
    if live.len() < 2 {
        fleet.close().await;
        bail!("fewer than 2 sessions logged in; see the errors above");
    }
    let shared = run.shared.clone();
    let n = run.cli.users;
    let c = &shared.stats.counters;

    // RFC 6121 §3.1.3: subscription requests go to the contact's "interested" resources,
    // those that have requested the roster, so every session fetches it first, as a
    // client does at login.
    fetch_rosters(&fleet, &live);
    wait_stalled(
        || Stats::get(&c.rosters),
        live.len() as u64,
        SETUP_PATIENCE,
        SETUP_LIMIT,
    )
    .await;
    c.rosters.store(0, Relaxed);
    c.roster_both.store(0, Relaxed);

    // Each user subscribes to each of its contacts, and both sides auto-approve, so
    // every pair ends with subscription='both'.
    let requests: Vec<(u32, u32)> = (0..n)
        .flat_map(|i| {
            ring_contacts(i, n, contacts)
                .into_iter()
                .map(move |j| (i, j))
        })
        .collect();
    let setup_started = Instant::now();
    let total = requests.len() as f64;
    let accounts = shared.accounts.clone();
    open_loop(
        &shared,
        &fleet,
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
    wait_stalled(
        || Stats::get(&c.subscribed),
        requests.len() as u64,
        SETUP_PATIENCE,
        SETUP_LIMIT,
    )
    .await;
    fetch_rosters(&fleet, &live);
    wait_stalled(
        || Stats::get(&c.rosters),
        live.len() as u64,
        SETUP_PATIENCE,
        SETUP_LIMIT,
    )
    .await;
    let rosters = Stats::get(&c.rosters).max(1);
    run.report
        .extra
        .insert("subscribed_acks".into(), Stats::get(&c.subscribed));
    run.report.extra.insert(
        "roster_both_per_user".into(),
        Stats::get(&c.roster_both) / rosters,
    );
    run.report
        .extra
        .insert("roster_both_total".into(), Stats::get(&c.roster_both));
    run.report
        .extra
        .insert("rosters_fetched".into(), Stats::get(&c.rosters));
    run.report.extra.insert(
        "setup_ms".into(),
        setup_started.elapsed().as_millis() as u64,
    );
    c.sent.store(0, Relaxed);

    shared.next_phase();
    shared.stats.take_latency();
    let delivered_before = Stats::get(&c.delivered);
    let mut picker = Picker::new(run.cli.seed);
    let start = run.sample_server();
    let sent = open_loop(
        &shared,
        &fleet,
        rate,
        Duration::from_secs(duration),
        |_, t| {
            let from = live[picker.below(live.len() as u32) as usize];
            (
                from,
                format!("<presence><status>{}</status></presence>", shared.marker(t)),
            )
        },
    )
    .await;
    let expected = sent.sent * u64::from(contacts);
    drain(
        &shared,
        delivered_before + expected,
        Duration::from_secs(run.cli.drain),
    )
    .await;
    run.measured = start.zip(run.sample_server());
    let latency = shared.stats.latency();
    run.report.messages =
        Some(sent.report(contacts as f64, expected, Stats::get(&c.stale), &latency));
    fleet.close().await;
    Ok(())
}

fn fetch_rosters(fleet: &Fleet, live: &[u32]) {
    for &i in live {
        fleet.send(
            i,
            "<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>".into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_contacts_are_symmetric_and_distinct() {
        let (n, k) = (10, 4);
        for i in 0..n {
            let mine = ring_contacts(i, n, k);
            assert_eq!(mine.len(), k as usize);
            assert!(!mine.contains(&i));
            let mut sorted = mine.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), k as usize);
            for j in mine {
                assert!(
                    ring_contacts(j, n, k).contains(&i),
                    "{i} and {j} are mutual"
                );
            }
        }
        assert_eq!(ring_contacts(0, 10, 2), vec![1, 9]);
    }
}
