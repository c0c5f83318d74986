//! What every scenario is built from: a fleet of sessions opened at an arrival rate,
//! an open-loop sender, a drain that waits for stanzas in flight, and the run record
//! the report is made from.

pub mod archive;
pub mod chat;
pub mod muc;
pub mod pep;
pub mod presence;
pub mod sessions;
pub mod subscribe;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::cli::Cli;
use crate::procfs::{self, ProcSample};
use crate::report::{ClientUsage, Latency, LoginReport, MessageReport, Report, ServerUsage};
use crate::schedule::RateSchedule;
use crate::session::{self, Command};
use crate::shared::Shared;
use crate::stats::Stats;
use crate::{login, progress};

/// Sessions started per second when `--arrival-rate` is not given.
pub const DEFAULT_ARRIVAL_RATE: f64 = 500.0;

/// The sessions of a run, by index.
pub struct Fleet {
    senders: Vec<mpsc::Sender<Command>>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

/// What each new connection does.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// Log in and stay as a session.
    Session,
    /// Only register the account, then close.
    RegisterOnly,
}

impl Fleet {
    /// Starts `n` logins, one every `1/rate` seconds (all at once without a rate), with
    /// at most `max_pending` in progress; returns once all are started.
    pub async fn open(
        shared: &Arc<Shared>,
        n: u32,
        rate: Option<f64>,
        max_pending: usize,
        goal: Goal,
    ) -> Fleet {
        let (stop, stop_rx) = watch::channel(false);
        let mut fleet = Fleet {
            senders: Vec::with_capacity(n as usize),
            stop,
            tasks: JoinSet::new(),
        };
        let pending = Arc::new(Semaphore::new(max_pending));
        let schedule = rate.map(RateSchedule::new);
        let start = Instant::now();
        for index in 0..n {
            if let Some(schedule) = schedule {
                tokio::time::sleep_until((start + schedule.due_at(u64::from(index))).into()).await;
            }
            let permit = pending
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let (tx, rx) = mpsc::channel(session::QUEUE);
            fleet.senders.push(tx);
            let shared = shared.clone();
            let stop = stop_rx.clone();
            fleet.tasks.spawn(async move {
                let counters = &shared.stats.counters;
                counters.login_started.fetch_add(1, Relaxed);
                let began = Instant::now();
                let attempt = async {
                    match goal {
                        Goal::Session => login::login(&shared, index).await.map(Some),
                        Goal::RegisterOnly => {
                            login::register_only(&shared, index).await.map(|_| None)
                        }
                    }
                };
                let outcome = tokio::time::timeout(shared.login.timeout, attempt).await;
                let done = Instant::now();
                counters
                    .login_last_done_micros
                    .fetch_max(shared.micros_since_epoch(done), Relaxed);
                match outcome {
                    Ok(Ok(logged_in)) => {
                        shared
                            .stats
                            .record_login(done.duration_since(began).as_micros() as u64);
                        drop(permit);
                        if let Some(logged_in) = logged_in {
                            let _ = shared.mechanism_used.set(logged_in.mechanism);
                            session::run(shared.clone(), index, logged_in.conn, rx, stop).await;
                        }
                    }
                    Ok(Err(e)) => {
                        counters.login_failed.fetch_add(1, Relaxed);
                        shared.stats.error(e.kind());
                    }
                    Err(_) => {
                        counters.login_failed.fetch_add(1, Relaxed);
                        shared.stats.error("login/timeout");
                    }
                }
            });
        }
        fleet
    }

    /// Indices of the sessions that are up.
    pub fn live(&self) -> Vec<u32> {
        (0..self.senders.len() as u32)
            .filter(|&i| !self.senders[i as usize].is_closed())
            .collect()
    }

    /// Queues a stanza on session `index`; false if its queue is full or it is gone.
    pub fn send(&self, index: u32, stanza: String) -> bool {
        self.senders
            .get(index as usize)
            .is_some_and(|tx| tx.try_send(Command(stanza)).is_ok())
    }

    /// Closes every session's stream and waits (bounded) for them to finish.
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(15), all)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}

/// Waits until every one of `n` logins has succeeded or failed (or `limit` passes).
pub async fn wait_for_logins(shared: &Shared, n: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    let c = &shared.stats.counters;
    while Stats::get(&c.login_ok) + Stats::get(&c.login_failed) < u64::from(n)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The outcome of an open-loop sending phase.
pub struct Sent {
    pub sent: u64,
    pub dropped: u64,
    pub secs: f64,
}

impl Sent {
    /// The report of a fan-out phase: `expected` deliveries were due, `latency` has one
    /// sample per delivery that arrived.
    pub fn report(
        &self,
        fanout: f64,
        expected: u64,
        stale: u64,
        latency: &hdrhistogram::Histogram<u64>,
    ) -> MessageReport {
        let delivered = latency.len();
        MessageReport {
            sent: self.sent,
            delivered,
            fanout,
            dropped_by_client: self.dropped,
            lost: expected.saturating_sub(delivered),
            stale,
            secs: self.secs,
            sent_per_sec: self.sent as f64 / self.secs.max(1e-9),
            delivered_per_sec: delivered as f64 / self.secs.max(1e-9),
            latency: Latency::from_micros(latency),
        }
    }
}

/// Sends at `rate` for `length`, open loop: stanza k is built by `make(k, t)` when it
/// is due, `t` being its intended send time (µs after the epoch), and queued on the
/// session `make` names without waiting for anything.
pub async fn open_loop(
    shared: &Shared,
    fleet: &Fleet,
    rate: f64,
    length: Duration,
    mut make: impl FnMut(u64, u64) -> (u32, String),
) -> Sent {
    let schedule = RateSchedule::new(rate);
    let total = schedule.total_in(length);
    let start = Instant::now();
    let (mut sent, mut dropped) = (0, 0);
    let mut k = 0;
    while k < total {
        let due = schedule.due_by(start.elapsed()).min(total);
        while k < due {
            let intended = start + schedule.due_at(k);
            let (sender, stanza) = make(k, shared.micros_since_epoch(intended));
            if fleet.send(sender, stanza) {
                sent += 1;
            } else {
                dropped += 1;
            }
            k += 1;
        }
        shared.stats.counters.sent.store(sent, Relaxed);
        shared.stats.counters.send_dropped.store(dropped, Relaxed);
        if k < total {
            tokio::time::sleep_until((start + schedule.due_at(k)).into()).await;
        }
    }
    Sent {
        sent,
        dropped,
        secs: start.elapsed().as_secs_f64(),
    }
}

/// Waits up to `limit` until `delivered` reaches `target`, or stops changing for a second.
pub async fn drain(shared: &Shared, target: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    let delivered = &shared.stats.counters.delivered;
    let mut last = (Stats::get(delivered), Instant::now());
    while Stats::get(delivered) < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = Stats::get(delivered);
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
}

/// Waits until `value()` reaches `target`, it stops moving for `patience`, or `limit`
/// passes.
pub async fn wait_stalled(
    value: impl Fn() -> u64,
    target: u64,
    patience: Duration,
    limit: Duration,
) {
    let deadline = Instant::now() + limit;
    let mut last = (value(), Instant::now());
    while value() < target && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = value();
        if now != last.0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() > patience {
            return;
        }
    }
}

/// A run in progress: the settings, the shared state, and the samples the report needs.
pub struct Run {
    pub cli: Cli,
    pub shared: Arc<Shared>,
    pub started: Instant,
    fleet_started: Option<Instant>,
    server_start: Option<ProcSample>,
    client_start: Option<ProcSample>,
    /// Server RSS with all sessions up, if the scenario measured it.
    pub loaded_rss_kb: Option<u64>,
    /// Server samples around the measured phase.
    pub measured: Option<(ProcSample, ProcSample)>,
    pub peaks: Arc<progress::Peaks>,
    pub report: Report,
}

impl Run {
    pub fn new(cli: Cli, shared: Arc<Shared>) -> Run {
        let server_start = procfs::sample_all(&cli.server_pid);
        let report = Report {
            label: cli.label.clone(),
            scenario: cli.scenario.name().into(),
            target: shared
                .login
                .targets
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            tls: format!("{:?}", cli.tls).to_lowercase(),
            users: cli.users,
            ..Report::default()
        };
        Run {
            server_start,
            client_start: procfs::sample(None),
            loaded_rss_kb: None,
            measured: None,
            peaks: Arc::default(),
            started: Instant::now(),
            fleet_started: None,
            cli,
            shared,
            report,
        }
    }

    pub fn sample_server(&self) -> Option<ProcSample> {
        procfs::sample_all(&self.cli.server_pid)
    }

    /// Fills in what every scenario reports and returns the report.
    pub fn finish(mut self) -> Report {
        let shared = &self.shared;
        let c = &shared.stats.counters;
        let login_secs =
            (Stats::get(&c.login_last_done_micros) as f64 / 1e6 - self.fleet_start_secs()).max(0.0);
        let ok = Stats::get(&c.login_ok);
        let login_latency = shared.stats.login_latency();
        self.report.logins = LoginReport {
            attempted: Stats::get(&c.login_started),
            ok,
            failed: Stats::get(&c.login_failed),
            registered: Stats::get(&c.registered),
            register_existing: Stats::get(&c.register_existing),
            secs: login_secs,
            per_sec: if login_secs > 0.0 {
                ok as f64 / login_secs
            } else {
                0.0
            },
            latency: (!login_latency.is_empty()).then(|| Latency::from_micros(&login_latency)),
        };
        self.report.mechanism = shared
            .mechanism_used
            .get()
            .copied()
            .unwrap_or("none")
            .into();
        self.report.errors = shared.stats.errors();
        self.report.disconnects = Stats::get(&c.disconnects);
        self.report.wall_secs = self.started.elapsed().as_secs_f64();
        let server_end = self.sample_server();
        if let (Some(pid), Some(start), Some(end)) = (
            self.cli.server_pid.first().copied(),
            self.server_start,
            server_end,
        ) {
            let loaded = self.loaded_rss_kb.unwrap_or(end.rss_kb);
            let sessions = ok as f64;
            self.report.server = Some(ServerUsage {
                pid,
                rss_start_kb: start.rss_kb,
                rss_loaded_kb: loaded,
                rss_peak_kb: self.peaks.server_rss_kb.load(Relaxed).max(end.rss_kb),
                // Only meaningful where the scenario sampled with every session up.
                bytes_per_session: (ok > 0 && self.loaded_rss_kb.is_some())
                    .then(|| (loaded as f64 - start.rss_kb as f64) * 1024.0 / sessions),
                cpu_secs: end.cpu_secs - start.cpu_secs,
                cpu_percent_measured: self
                    .measured
                    .map(|(a, b)| procfs::cpu_percent(&a, &b))
                    .unwrap_or(0.0),
            });
        }
        let client_end = procfs::sample(None);
        self.report.client = ClientUsage {
            cpu_secs: match (self.client_start, client_end) {
                (Some(a), Some(b)) => b.cpu_secs - a.cpu_secs,
                _ => 0.0,
            },
            rss_peak_kb: self
                .peaks
                .client_rss_kb
                .load(Relaxed)
                .max(client_end.map_or(0, |s| s.rss_kb)),
            pbkdf2_derivations: shared.cache.derivations(),
        };
        self.report
    }

    /// Seconds from the epoch to the first login attempt.
    fn fleet_start_secs(&self) -> f64 {
        self.fleet_started
            .unwrap_or(self.started)
            .saturating_duration_since(self.shared.epoch)
            .as_secs_f64()
    }

    /// Opens `--users` sessions at the arrival rate (default 500/s; `unlimited` for
    /// scenarios that measure logins) and waits until each has logged in or failed.
    pub async fn open_fleet(&mut self, goal: Goal, unlimited: bool) -> Fleet {
        let n = self.cli.users;
        let rate = self.cli.arrival_rate.or(if unlimited {
            None
        } else {
            Some(DEFAULT_ARRIVAL_RATE)
        });
        self.fleet_started = Some(Instant::now());
        let fleet = Fleet::open(&self.shared, n, rate, self.cli.max_pending, goal).await;
        let limit = self.shared.login.timeout + Duration::from_secs(5);
        wait_for_logins(&self.shared, n, limit).await;
        fleet
    }
}
