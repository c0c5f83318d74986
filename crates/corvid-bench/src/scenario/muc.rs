//! Multi-user chat (XEP-0045): R rooms of M occupants each, groupchat messages at a
//! total rate, every message fanned out to the M occupants (the sender included: the
//! room reflects it, XEP-0045 §7.4).
//!
//! The first occupant of each room joins alone and, when the service says it created
//! the room (status 201), accepts the default configuration to unlock it; the others
//! join after.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use anyhow::{Result, bail};

use super::{DEFAULT_ARRIVAL_RATE, Goal, Run, drain, open_loop, wait_stalled};
use crate::schedule::Picker;
use crate::shared::Shared;
use crate::stats::Stats;

const JOIN_LIMIT: Duration = Duration::from_secs(120);
/// Joins fan out presence to every occupant (M² stanzas for a room of M), which a
/// server may take a while to work through.
const JOIN_PATIENCE: Duration = Duration::from_secs(20);

pub struct Muc {
    pub rooms: u32,
    pub occupants: u32,
    pub rate: f64,
    pub duration: u64,
    pub service: String,
    pub room: String,
}

fn room_jid(muc: &Muc, room: u32) -> String {
    format!("{}{}@{}", muc.room, room + 1, muc.service)
}

fn join_stanza(shared: &Shared, muc: &Muc, room: u32, index: u32) -> String {
    format!(
        "<presence to='{}/{}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>",
        room_jid(muc, room),
        shared.accounts.username(index)
    )
}

pub async fn muc(run: &mut Run, muc: Muc) -> Result<()> {
    for (k, v) in [
        ("rooms", muc.rooms as f64),
        ("occupants", muc.occupants as f64),
        ("rate", muc.rate),
        ("duration", muc.duration as f64),
    ] {
        run.report.params.insert(k.into(), v);
    }
    let fleet = run.open_fleet(Goal::Session, false).await;
    let shared = run.shared.clone();
    let c = &shared.stats.counters;
    let m = muc.occupants;
    let occupant = |room: u32, k: u32| room * m + k;
    let is_live = {
        let live = fleet.live();
        move |i: u32| live.binary_search(&i).is_ok()
    };
    let owners: Vec<u32> = (0..muc.rooms)
        .map(|r| occupant(r, 0))
        .filter(|&i| is_live(i))
        .collect();
    if owners.len() < muc.rooms as usize {
        fleet.close().await;
        bail!("a room's first occupant failed to log in; see the errors");
    }
    for (room, &owner) in owners.iter().enumerate() {
        fleet.send(owner, join_stanza(&shared, &muc, room as u32, owner));
    }
    wait_stalled(
        || Stats::get(&c.muc_joined),
        u64::from(muc.rooms),
        JOIN_PATIENCE,
        JOIN_LIMIT,
    )
    .await;
    if Stats::get(&c.muc_joined) < u64::from(muc.rooms) {
        fleet.close().await;
        bail!(
            "the first occupant of a room could not join {} (no MUC service there?)",
            muc.service
        );
    }
    // Let the instant-room configuration reach the service before others join.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let others: Vec<(u32, u32)> = (0..muc.rooms)
        .flat_map(|r| (1..m).map(move |k| (r, occupant(r, k))))
        .filter(|&(_, i)| is_live(i))
        .collect();
    let rate = run.cli.arrival_rate.unwrap_or(DEFAULT_ARRIVAL_RATE);
    if !others.is_empty() {
        let length = Duration::from_secs_f64(others.len() as f64 / rate);
        open_loop(&shared, &fleet, rate, length, |k, _| {
            let (room, index) = others[(k as usize).min(others.len() - 1)];
            (index, join_stanza(&shared, &muc, room, index))
        })
        .await;
    }
    let occupants_up = owners.len() + others.len();
    wait_stalled(
        || Stats::get(&c.muc_joined),
        occupants_up as u64,
        JOIN_PATIENCE,
        JOIN_LIMIT,
    )
    .await;
    run.report
        .extra
        .insert("occupants_joined".into(), Stats::get(&c.muc_joined));
    run.report
        .extra
        .insert("rooms_created".into(), Stats::get(&c.muc_created));
    c.sent.store(0, Relaxed);

    shared.next_phase();
    shared.stats.take_latency();
    let delivered_before = Stats::get(&c.delivered);
    let mut picker = Picker::new(run.cli.seed);
    let members: Vec<Vec<u32>> = (0..muc.rooms)
        .map(|r| {
            (0..m)
                .map(|k| occupant(r, k))
                .filter(|&i| is_live(i))
                .collect()
        })
        .collect();
    let start = run.sample_server();
    let sent = open_loop(
        &shared,
        &fleet,
        muc.rate,
        Duration::from_secs(muc.duration),
        |k, t| {
            let room = picker.below(muc.rooms);
            let in_room = &members[room as usize];
            let from = in_room[picker.below(in_room.len() as u32) as usize];
            let stanza = format!(
                "<message to='{}' type='groupchat' id='g{k}'><body>{}</body></message>",
                room_jid(&muc, room),
                shared.marker(t)
            );
            (from, stanza)
        },
    )
    .await;
    // Rooms are equally likely, so the expected fan-out is the mean room size.
    let fanout = occupants_up as f64 / f64::from(muc.rooms);
    let expected = (sent.sent as f64 * fanout).round() as u64;
    drain(
        &shared,
        delivered_before + expected,
        Duration::from_secs(run.cli.drain),
    )
    .await;
    run.measured = start.zip(run.sample_server());
    let latency = shared.stats.latency();
    run.report.messages = Some(sent.report(fanout, expected, Stats::get(&c.stale), &latency));
    fleet.close().await;
    Ok(())
}
