//! One-to-one chat: random sender → random other session, to the bare JID, at a total
//! rate; and the ramp that raises the rate step by step until p99 passes the limit. Both
//! can end by checking the sampled accounts' archives (`--verify-archive`, XEP-0313).

use std::time::{Duration, SystemTime};

use anyhow::{Result, bail};
use hdrhistogram::Histogram;

use super::{Fleet, Goal, Run, archive, drain, open_loop};
use crate::procfs;
use crate::report::{Latency, MessageReport, StepReport};
use crate::schedule::Picker;
use crate::shared::Shared;
use crate::stats::{MAX_TRACKED_MICROS, Stats};

fn chat_stanza(shared: &Shared, to: u32, k: u64, t: u64) -> String {
    format!(
        "<message to='{}' type='chat' id='m{k}'><body>{}</body></message>",
        shared.accounts.bare_jid(to),
        shared.marker(t)
    )
}

/// One measured phase of chat at `rate` for `secs`: the step's figures and its latency
/// histogram.
async fn chat_phase(
    run: &Run,
    fleet: &Fleet,
    live: &[u32],
    picker: &mut Picker,
    rate: f64,
    secs: u64,
) -> (StepReport, Histogram<u64>) {
    let shared = &run.shared;
    shared.next_phase();
    shared.stats.take_latency();
    let before = Stats::get(&shared.stats.counters.delivered);
    let n = live.len() as u32;
    let sent = open_loop(shared, fleet, rate, Duration::from_secs(secs), |k, t| {
        let (from, to) = picker.pair(n);
        let (from, to) = (live[from as usize], live[to as usize]);
        if let Some(archive) = &shared.archive {
            archive.queued(from, to);
        }
        (from, chat_stanza(shared, to, k, t))
    })
    .await;
    drain(
        shared,
        before + sent.sent,
        Duration::from_secs(run.cli.drain),
    )
    .await;
    let latency = shared.stats.take_latency();
    let delivered = latency.len();
    let step = StepReport {
        rate,
        sent: sent.sent,
        delivered,
        lost: sent.sent.saturating_sub(delivered),
        delivered_per_sec: delivered as f64 / sent.secs.max(1e-9),
        latency: Latency::from_micros(&latency),
        passed: false,
        server_cpu_percent: None,
        client_cpu_percent: None,
    };
    (step, latency)
}

/// p99 counting every lost message as slower than any limit.
fn p99_with_losses_ms(mut latency: Histogram<u64>, lost: u64) -> f64 {
    if lost > 0 {
        let _ = latency.record_n(MAX_TRACKED_MICROS, lost);
    }
    if latency.is_empty() {
        return f64::INFINITY;
    }
    latency.value_at_quantile(0.99) as f64 / 1000.0
}

async fn open_chat_fleet(run: &mut Run) -> Result<(Fleet, Vec<u32>)> {
    let fleet = run.open_fleet(Goal::Session, false).await;
    let live = fleet.live();
    if live.len() < 2 {
        fleet.close().await;
        bail!("fewer than 2 sessions logged in; see the errors above");
    }
    run.loaded_rss_kb = run.sample_server().map(|s| s.rss_kb);
    Ok((fleet, live))
}

/// After the chat: the archives of `accounts` sampled accounts against the traffic
/// counted; any shortfall or duplicate becomes an error of the run.
async fn check_archives(run: &mut Run, fleet: &Fleet, live: &[u32], began: SystemTime) {
    let (Some(check), Some(&accounts)) = (
        run.shared.archive.as_ref(),
        run.report.params.get("verify_archive"),
    ) else {
        return;
    };
    let sampled = archive::samples(live, accounts as u32);
    let start = archive::window_start(began);
    let report = archive::verify(&run.shared, check, fleet, &sampled, &start).await;
    for problem in report.problems() {
        run.shared.stats.error(problem);
    }
    if !run.cli.quiet {
        eprintln!(
            "archive: {} of {} delivered messages found in {} accounts",
            report.archived,
            report.delivered,
            report.accounts.len()
        );
    }
    run.report.archive = Some(report);
}

pub async fn chat(run: &mut Run, rate: f64, duration: u64, verify_archive: u32) -> Result<()> {
    let began = SystemTime::now();
    run.report.params.insert("rate".into(), rate);
    run.report.params.insert("duration".into(), duration as f64);
    if verify_archive > 0 {
        run.report
            .params
            .insert("verify_archive".into(), f64::from(verify_archive));
    }
    let (fleet, live) = open_chat_fleet(run).await?;
    let mut picker = Picker::new(run.cli.seed);
    let start = run.sample_server();
    let (step, _) = chat_phase(run, &fleet, &live, &mut picker, rate, duration).await;
    run.measured = start.zip(run.sample_server());
    let c = &run.shared.stats.counters;
    run.report.messages = Some(MessageReport {
        sent: step.sent,
        delivered: step.delivered,
        fanout: 1.0,
        dropped_by_client: Stats::get(&c.send_dropped),
        lost: step.lost,
        stale: Stats::get(&c.stale),
        secs: duration as f64,
        sent_per_sec: step.sent as f64 / duration as f64,
        delivered_per_sec: step.delivered_per_sec,
        latency: step.latency,
    });
    check_archives(run, &fleet, &live, began).await;
    fleet.close().await;
    Ok(())
}

pub struct Ramp {
    pub start: f64,
    pub growth: Growth,
    pub max: f64,
    pub step_secs: u64,
    pub p99_limit_ms: f64,
    /// Accounts whose archives are checked afterwards (0: none).
    pub verify_archive: u32,
}

/// How the rate rises from one step to the next.
#[derive(Clone, Copy, Debug)]
pub enum Growth {
    /// Adds this many messages/s.
    Step(f64),
    /// Multiplies by 1 + percent/100 (rounded to whole messages/s).
    Percent(f64),
}

/// Rates of a ramp: start, then rising by `growth` up to max (at most 1000 steps).
pub fn ramp_rates(start: f64, growth: Growth, max: f64) -> Vec<f64> {
    let mut rates = Vec::new();
    let mut rate = start;
    while rate <= max + 1e-9 && rates.len() < 1000 {
        rates.push(rate);
        rate = match growth {
            Growth::Step(step) => start + rates.len() as f64 * step,
            Growth::Percent(p) => (rate * (1.0 + p / 100.0)).round().max(rate + 1.0),
        };
    }
    rates
}

pub async fn chat_ramp(run: &mut Run, ramp: Ramp) -> Result<()> {
    let began = SystemTime::now();
    if ramp.verify_archive > 0 {
        run.report
            .params
            .insert("verify_archive".into(), f64::from(ramp.verify_archive));
    }
    for (k, v) in [
        ("start", ramp.start),
        ("max", ramp.max),
        ("step_secs", ramp.step_secs as f64),
        ("p99_limit_ms", ramp.p99_limit_ms),
    ] {
        run.report.params.insert(k.into(), v);
    }
    match ramp.growth {
        Growth::Step(step) => run.report.params.insert("step".into(), step),
        Growth::Percent(p) => run.report.params.insert("growth_percent".into(), p),
    };
    let (fleet, live) = open_chat_fleet(run).await?;
    let mut picker = Picker::new(run.cli.seed);
    for rate in ramp_rates(ramp.start, ramp.growth, ramp.max) {
        let start = run.sample_server();
        let client_start = procfs::sample(None);
        let (mut step, latency) =
            chat_phase(run, &fleet, &live, &mut picker, rate, ramp.step_secs).await;
        let end = run.sample_server();
        step.server_cpu_percent = start.zip(end).map(|(a, b)| procfs::cpu_percent(&a, &b));
        step.client_cpu_percent = client_start
            .zip(procfs::sample(None))
            .map(|(a, b)| procfs::cpu_percent(&a, &b));
        step.passed = p99_with_losses_ms(latency, step.lost) <= ramp.p99_limit_ms;
        let passed = step.passed;
        if passed {
            run.report.sustained_rate = Some(rate);
            run.measured = start.zip(end);
        }
        if !run.cli.quiet {
            eprintln!(
                "step {rate}/s: {} — {} delivered, {} lost, {}",
                if passed {
                    "ok"
                } else {
                    "p99 over the limit (or >1% lost): stopping"
                },
                step.delivered,
                step.lost,
                step.latency.summary()
            );
        }
        run.report.steps.push(step);
        if !passed {
            break;
        }
    }
    let c = &run.shared.stats.counters;
    run.report
        .extra
        .insert("stale".into(), Stats::get(&c.stale));
    run.report
        .extra
        .insert("dropped_by_client".into(), Stats::get(&c.send_dropped));
    check_archives(run, &fleet, &live, began).await;
    fleet.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_rates_include_both_ends() {
        assert_eq!(
            ramp_rates(1000.0, Growth::Step(500.0), 2500.0),
            vec![1000.0, 1500.0, 2000.0, 2500.0]
        );
        assert_eq!(ramp_rates(100.0, Growth::Step(1000.0), 100.0), vec![100.0]);
        assert_eq!(
            ramp_rates(1.0, Growth::Step(0.001), 1e9).len(),
            1000,
            "bounded"
        );
    }

    #[test]
    fn geometric_ramps_grow_by_the_percentage() {
        assert_eq!(
            ramp_rates(500.0, Growth::Percent(25.0), 1300.0),
            vec![500.0, 625.0, 781.0, 976.0, 1220.0]
        );
        assert_eq!(
            ramp_rates(1.0, Growth::Percent(1.0), 4.0),
            vec![1.0, 2.0, 3.0, 4.0],
            "always rises"
        );
    }

    #[test]
    fn losses_push_p99_over_any_limit() {
        let mut h = crate::stats::new_histogram();
        h.record_n(5_000, 990).unwrap();
        assert!(p99_with_losses_ms(h.clone(), 0) < 6.0);
        assert!(
            p99_with_losses_ms(h.clone(), 9) < 6.0,
            "under 1% lost still passes"
        );
        assert!(p99_with_losses_ms(h, 20) > 1e6);
        assert!(p99_with_losses_ms(crate::stats::new_histogram(), 0).is_infinite());
    }
}
