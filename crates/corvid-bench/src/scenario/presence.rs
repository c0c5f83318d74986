//! Presence broadcast (RFC 6121 §4.4): every user has K mutual contacts, the users in
//! a ring with K/2 neighbours on each side. Subscriptions are made through the
//! protocol (subscribe both ways, both sides approve), then sessions change presence
//! at a total rate and each change is delivered to K contacts.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Result, bail};

use super::subscribe::subscribe_all;
use super::{Goal, Run, drain, open_loop};
use crate::schedule::Picker;
use crate::stats::Stats;

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

    // Each user subscribes to each of its contacts, and both sides auto-approve, so
    // every pair ends with subscription='both'.
    let requests: Vec<(u32, u32)> = (0..n)
        .flat_map(|i| {
            ring_contacts(i, n, contacts)
                .into_iter()
                .map(move |j| (i, j))
        })
        .collect();
    subscribe_all(run, &fleet, &live, &requests).await;
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
