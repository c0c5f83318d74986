//! Personal eventing (XEP-0163) fan-out: P publishers, each with the same C listening
//! contacts and S silent ones (all mutual `both` subscriptions, made through the
//! protocol as in the presence scenario), publish user-tune items (XEP-0118) at a total
//! rate; the server must deliver each item once to each listener and to nobody else.
//!
//! Listeners announce `tune+notify` in their entity caps (XEP-0115), silent contacts and
//! the publishers announce caps without it; every session answers the server's
//! disco#info about its caps with a correctly hashed feature set (see `caps.rs`), since
//! servers cache the answer by that hash.
//!
//! Phases: log in with caps → subscriptions → every contact sends its presence again, so
//! each publisher's PEP service sees its contacts' caps → a warm-up (one item per
//! publisher, which also creates the nodes) → the measured phase, bounded by
//! `--duration` and `--items`.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::subscribe::subscribe_all;
use super::{Fleet, Goal, Run, drain, open_loop, wait_stalled};
use crate::pep::{Pep, Role, publish_stanza};
use crate::schedule::Picker;
use crate::shared::Shared;
use crate::stats::Stats;

/// How long the caps discovery may stay quiet before we take it as done.
const CAPS_PATIENCE: Duration = Duration::from_secs(3);
const CAPS_LIMIT: Duration = Duration::from_secs(60);
const WARMUP_PATIENCE: Duration = Duration::from_secs(5);
const WARMUP_LIMIT: Duration = Duration::from_secs(60);

pub struct PepLoad {
    pub rate: f64,
    pub duration: u64,
    /// At most this many items in the measured phase.
    pub items: u64,
}

/// The live sessions of each role.
struct Cast {
    publishers: Vec<u32>,
    listeners: Vec<u32>,
    silent: Vec<u32>,
}

impl Cast {
    fn of(pep: &Pep, live: &[u32]) -> Cast {
        let with = |role: Role| -> Vec<u32> {
            live.iter()
                .copied()
                .filter(|&i| pep.plan.role(i) == role)
                .collect()
        };
        Cast {
            publishers: with(Role::Publisher),
            listeners: with(Role::Listener),
            silent: with(Role::Silent),
        }
    }

    /// Every publisher asks every contact and every contact asks every publisher.
    fn subscription_requests(&self) -> Vec<(u32, u32)> {
        let contacts = || self.listeners.iter().chain(&self.silent).copied();
        self.publishers
            .iter()
            .flat_map(|&p| contacts().flat_map(move |c| [(p, c), (c, p)]))
            .collect()
    }
}

pub async fn pep(run: &mut Run, load: PepLoad) -> Result<()> {
    let shared = run.shared.clone();
    let Some(pep) = shared.pep.as_ref() else {
        bail!("the PEP scenario runs without its shared state");
    };
    for (k, v) in [
        ("publishers", f64::from(pep.plan.publishers)),
        ("contacts", f64::from(pep.plan.listeners)),
        ("silent", f64::from(pep.plan.silent)),
        ("rate", load.rate),
        ("duration", load.duration as f64),
        ("items", load.items as f64),
    ] {
        run.report.params.insert(k.into(), v);
    }
    let fleet = run.open_fleet(Goal::Session, false).await;
    let live = fleet.live();
    let cast = Cast::of(pep, &live);
    if cast.publishers.is_empty() || cast.listeners.is_empty() {
        fleet.close().await;
        bail!("no publisher or no listening contact logged in; see the errors above");
    }
    let requests = cast.subscription_requests();
    run.report
        .extra
        .insert("subscriptions_requested".into(), requests.len() as u64);
    subscribe_all(run, &fleet, &live, &requests).await;
    announce_caps(&shared, &fleet, &cast).await;
    warm_up(run, &fleet, &cast).await;
    let outcome = measure(run, &fleet, &cast, &load).await;
    fleet.close().await;
    outcome
}

/// Every contact sends its presence (with caps) again now that the publishers are its
/// contacts: their PEP services learn who listens (asking disco#info about a caps
/// `ver` they do not know yet) and send the node's last item, if any, which is stale.
async fn announce_caps(shared: &Shared, fleet: &Fleet, cast: &Cast) {
    let Some(pep) = shared.pep.as_ref() else {
        return;
    };
    for &i in cast.listeners.iter().chain(&cast.silent) {
        fleet.send(i, pep.presence(i));
    }
    let queries = &pep.counters.caps_queries;
    wait_stalled(|| Stats::get(queries), u64::MAX, CAPS_PATIENCE, CAPS_LIMIT).await;
}

/// One item per publisher, which creates its node (XEP-0163 §3: auto-create on the first
/// publish); the first publish is not part of the measurement. The publishers go one at
/// a time: concurrent first publishes abort each other's node creation in ejabberd
/// (an mnesia lock cycle on the node index), and creation is not what we measure.
async fn warm_up(run: &mut Run, fleet: &Fleet, cast: &Cast) {
    let shared = run.shared.clone();
    let Some(pep) = shared.pep.as_ref() else {
        return;
    };
    let c = &shared.stats.counters;
    shared.next_phase();
    pep.begin_phase();
    let before = Stats::get(&c.delivered);
    let answered = || Stats::get(&pep.counters.published) + Stats::get(&c.stanza_errors);
    for (k, &p) in cast.publishers.iter().enumerate() {
        let target = answered() + 1;
        let t = shared.micros_since_epoch(Instant::now());
        fleet.send(p, publish_stanza(k as u64, &shared.marker(t)));
        wait_stalled(answered, target, WARMUP_PATIENCE, WARMUP_LIMIT).await;
    }
    let expected = (cast.publishers.len() * cast.listeners.len()) as u64;
    wait_stalled(
        || Stats::get(&c.delivered) - before,
        expected,
        WARMUP_PATIENCE,
        WARMUP_LIMIT,
    )
    .await;
    let extra = &mut run.report.extra;
    extra.insert("warmup_expected".into(), expected);
    extra.insert("warmup_delivered".into(), Stats::get(&c.delivered) - before);
    extra.insert(
        "warmup_to_silent".into(),
        Stats::get(&pep.counters.to_silent),
    );
    extra.insert(
        "caps_queries_answered".into(),
        Stats::get(&pep.counters.caps_queries),
    );
}

async fn measure(run: &mut Run, fleet: &Fleet, cast: &Cast, load: &PepLoad) -> Result<()> {
    let shared = run.shared.clone();
    let Some(pep) = shared.pep.as_ref() else {
        bail!("the PEP scenario runs without its shared state");
    };
    let c = &shared.stats.counters;
    shared.next_phase();
    pep.begin_phase();
    shared.stats.take_latency();
    c.sent.store(0, Relaxed);
    pep.counters.published.store(0, Relaxed);
    let delivered_before = Stats::get(&c.delivered);
    let stale_before = Stats::get(&c.stale);
    let mut picker = Picker::new(run.cli.seed);
    // Bounded by time and by count, whichever ends first.
    let length = Duration::from_secs(load.duration)
        .min(Duration::from_secs_f64(load.items as f64 / load.rate));
    let start = run.sample_server();
    let publishers = &cast.publishers;
    let sent = open_loop(&shared, fleet, load.rate, length, |k, t| {
        let p = publishers[picker.below(publishers.len() as u32) as usize];
        (p, publish_stanza(k, &shared.marker(t)))
    })
    .await;
    let fanout = cast.listeners.len() as u64;
    let expected = sent.sent * fanout;
    drain(
        &shared,
        delivered_before + expected,
        Duration::from_secs(run.cli.drain),
    )
    .await;
    run.measured = start.zip(run.sample_server());
    let latency = shared.stats.latency();
    let stale = Stats::get(&c.stale) - stale_before;
    run.report.messages = Some(sent.report(fanout as f64, expected, stale, &latency));

    let counts = [
        ("publish_acks", Stats::get(&pep.counters.published)),
        ("duplicates", Stats::get(&pep.counters.duplicates)),
        ("to_silent_contacts", Stats::get(&pep.counters.to_silent)),
        ("to_publishers", Stats::get(&pep.counters.to_publishers)),
        ("live_publishers", cast.publishers.len() as u64),
        ("live_listeners", fanout),
        ("live_silent_contacts", cast.silent.len() as u64),
    ];
    for (k, v) in counts {
        run.report.extra.insert(k.into(), v);
    }
    // The correctness checks: exactly once to each listener, never to the others.
    let checks = [
        (
            Stats::get(&pep.counters.duplicates),
            "pep: notifications a listener received twice",
        ),
        (
            Stats::get(&pep.counters.to_silent),
            "pep: notifications to contacts without +notify",
        ),
        (
            expected.saturating_sub(latency.len()),
            "pep: notifications due to a listener that never came",
        ),
    ];
    // Into the run's error counts, which the report and compare.sh's table list.
    for (count, what) in checks {
        shared.stats.errors_of(what, count);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pep::Plan;

    #[test]
    fn every_publisher_and_contact_ask_each_other() {
        let pep = Pep::new(Plan {
            publishers: 2,
            listeners: 3,
            silent: 1,
        });
        // Session 3 (a listener) did not log in.
        let cast = Cast::of(&pep, &[0, 1, 2, 4, 5]);
        assert_eq!(cast.publishers, [0, 1]);
        assert_eq!(cast.listeners, [2, 4]);
        assert_eq!(cast.silent, [5]);
        let requests = cast.subscription_requests();
        assert_eq!(requests.len(), 2 * 2 * 3);
        for p in [0, 1] {
            for c in [2, 4, 5] {
                assert!(requests.contains(&(p, c)) && requests.contains(&(c, p)));
            }
        }
        assert!(!requests.contains(&(0, 1)), "publishers are not contacts");
    }
}
