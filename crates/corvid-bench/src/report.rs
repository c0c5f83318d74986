//! The result of a run, as a human table and as JSON (same fields; the JSON is what
//! `bench/compare.sh` reads).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub label: String,
    pub scenario: String,
    pub target: String,
    pub tls: String,
    /// The SASL mechanism the last successful login used.
    pub mechanism: String,
    pub users: u32,
    /// Scenario parameters as given.
    pub params: BTreeMap<String, f64>,
    pub wall_secs: f64,
    pub logins: LoginReport,
    pub messages: Option<MessageReport>,
    /// chat-ramp: one entry per rate tried.
    pub steps: Vec<StepReport>,
    /// chat-ramp: the highest rate whose p99 stayed under the limit.
    pub sustained_rate: Option<f64>,
    pub errors: BTreeMap<String, u64>,
    pub disconnects: u64,
    /// Scenario-specific counts (subscriptions made, rooms joined …).
    pub extra: BTreeMap<String, u64>,
    /// chat and chat-ramp with `--verify-archive`: what the sampled archives held.
    pub archive: Option<ArchiveReport>,
    pub server: Option<ServerUsage>,
    pub client: ClientUsage,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct LoginReport {
    pub attempted: u64,
    pub ok: u64,
    pub failed: u64,
    pub registered: u64,
    pub register_existing: u64,
    /// From the first connection attempt to the last login finishing.
    pub secs: f64,
    pub per_sec: f64,
    /// Time from TCP connect to a bound resource.
    pub latency: Option<Latency>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MessageReport {
    pub sent: u64,
    pub delivered: u64,
    /// Deliveries expected per stanza sent (1 for chat, K for presence, M for MUC).
    pub fanout: f64,
    /// Stanzas the generator could not hand to a session (it fell behind).
    pub dropped_by_client: u64,
    /// Expected deliveries that never arrived within the drain period.
    pub lost: u64,
    pub stale: u64,
    pub secs: f64,
    pub sent_per_sec: f64,
    pub delivered_per_sec: f64,
    pub latency: Latency,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct StepReport {
    pub rate: f64,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    pub delivered_per_sec: f64,
    pub latency: Latency,
    pub passed: bool,
    /// CPU during the step, percent of one core (the box has two, shared by both).
    pub server_cpu_percent: Option<f64>,
    pub client_cpu_percent: Option<f64>,
}

/// `--verify-archive`: messages of this run found in sampled accounts' archives (XEP-0313).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ArchiveReport {
    /// The query's `start` (XEP-0082), just before the run began.
    pub window_start: String,
    pub accounts: Vec<AccountArchive>,
    /// Totals over the accounts.
    pub queued: u64,
    pub delivered: u64,
    pub archived: u64,
    pub duplicates: u64,
    /// Accounts whose archive held fewer messages than were delivered from and to them,
    /// or could not be read to the end.
    pub short: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct AccountArchive {
    pub jid: String,
    /// Chat messages of this run queued from and to the account.
    pub queued: u64,
    /// Of those, delivered (so they passed through the server).
    pub delivered: u64,
    /// Distinct messages of this run in its archive.
    pub archived: u64,
    /// Messages of this run found more than once.
    pub duplicates: u64,
    /// Results of other runs or traffic in the window.
    pub other: u64,
    pub pages: u32,
    /// Passes over the archive (more than one while it held fewer than delivered).
    pub attempts: u32,
    pub error: Option<String>,
}

impl ArchiveReport {
    pub fn add(&mut self, account: AccountArchive) {
        self.queued += account.queued;
        self.delivered += account.delivered;
        self.archived += account.archived;
        self.duplicates += account.duplicates;
        if account.error.is_some() || account.archived < account.delivered {
            self.short += 1;
        }
        self.accounts.push(account);
    }

    /// Why the archives fall short, one line per account (empty when they do not).
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.accounts {
            if let Some(e) = &a.error {
                out.push(format!("archive of {}: {e}", a.jid));
            } else if a.archived < a.delivered {
                out.push(format!(
                    "archive of {} holds {} of the {} messages delivered from and to it",
                    a.jid, a.archived, a.delivered
                ));
            }
            if a.duplicates > 0 {
                out.push(format!(
                    "archive of {} holds {} messages twice",
                    a.jid, a.duplicates
                ));
            }
        }
        out
    }
}

#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

impl Latency {
    /// Quantiles of a histogram of microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
            mean_ms: h.mean() / 1000.0,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ServerUsage {
    pub pid: u32,
    /// Before the first connection.
    pub rss_start_kb: u64,
    /// With every session established (for idle: at the end of the hold).
    pub rss_loaded_kb: u64,
    pub rss_peak_kb: u64,
    /// (rss_loaded − rss_start) / sessions established.
    pub bytes_per_session: Option<f64>,
    /// CPU seconds the server used during the run.
    pub cpu_secs: f64,
    /// Average CPU during the measured phase, percent of one core.
    pub cpu_percent_measured: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct ClientUsage {
    pub cpu_secs: f64,
    pub rss_peak_kb: u64,
    pub pbkdf2_derivations: u64,
}

impl Report {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report always serializes")
    }

    /// The report as an aligned two-column table.
    pub fn to_table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_owned(), v));
        row(
            "server",
            format!(
                "{} ({}, TLS {}, {})",
                self.label, self.target, self.tls, self.mechanism
            ),
        );
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", num(*v)))
            .collect();
        row(
            "scenario",
            format!("{} {}", self.scenario, params.join(" "))
                .trim_end()
                .to_owned(),
        );
        row("users", self.users.to_string());
        row("wall time", format!("{:.1} s", self.wall_secs));
        let l = &self.logins;
        // The register scenario only registers: its "logins" are registrations.
        let what = if self.scenario == "register" {
            "registrations"
        } else {
            "logins"
        };
        row(
            what,
            format!(
                "{} ok, {} failed of {} in {:.2} s",
                l.ok, l.failed, l.attempted, l.secs
            ),
        );
        if l.registered + l.register_existing > 0 {
            row(
                "registered",
                format!("{} new, {} existing", l.registered, l.register_existing),
            );
        }
        row(&format!("{what}/s"), format!("{:.0}", l.per_sec));
        if let Some(lat) = &l.latency {
            row("login time", lat.summary());
        }
        if let Some(m) = &self.messages {
            row(
                "stanzas sent",
                format!(
                    "{} in {:.1} s ({:.0}/s), {} dropped by the generator",
                    m.sent, m.secs, m.sent_per_sec, m.dropped_by_client
                ),
            );
            row(
                "delivered",
                format!(
                    "{} ({:.0}/s; fan-out {}), {} lost, {} stale",
                    m.delivered,
                    m.delivered_per_sec,
                    num(m.fanout),
                    m.lost,
                    m.stale
                ),
            );
            row("latency", m.latency.summary());
        }
        for s in &self.steps {
            let cpu = match (s.server_cpu_percent, s.client_cpu_percent) {
                (Some(server), Some(client)) => {
                    format!("; CPU server {server:.0}% bench {client:.0}%")
                }
                (None, Some(client)) => format!("; CPU bench {client:.0}%"),
                _ => String::new(),
            };
            row(
                &format!("step {}/s", num(s.rate)),
                format!(
                    "{} {:.0}/s delivered, {} lost, {}{cpu}",
                    if s.passed { "ok  " } else { "FAIL" },
                    s.delivered_per_sec,
                    s.lost,
                    s.latency.summary()
                ),
            );
        }
        if !self.steps.is_empty() {
            row(
                "sustained",
                match self.sustained_rate {
                    Some(r) => format!("{} msgs/s with p99 under the limit", num(r)),
                    None => "no rate kept p99 under the limit".into(),
                },
            );
        }
        for (k, v) in &self.extra {
            row(k, v.to_string());
        }
        if let Some(a) = &self.archive {
            row(
                "archive",
                format!(
                    "{} accounts: {} of {} delivered found ({} queued), {} twice, {} short",
                    a.accounts.len(),
                    a.archived,
                    a.delivered,
                    a.queued,
                    a.duplicates,
                    a.short
                ),
            );
        }
        row("disconnects", self.disconnects.to_string());
        if self.errors.is_empty() {
            row("errors", "none".into());
        }
        for (k, v) in &self.errors {
            row("error", format!("{v} × {k}"));
        }
        if let Some(s) = &self.server {
            row(
                "server RSS",
                format!(
                    "{} start, {} loaded, {} peak",
                    mib(s.rss_start_kb),
                    mib(s.rss_loaded_kb),
                    mib(s.rss_peak_kb)
                ),
            );
            if let Some(b) = s.bytes_per_session {
                row("server mem/session", format!("{:.1} KiB", b / 1024.0));
            }
            row(
                "server CPU",
                format!(
                    "{:.1} s, {:.0}% during the measured phase",
                    s.cpu_secs, s.cpu_percent_measured
                ),
            );
        }
        row(
            "client",
            format!(
                "{:.1} s CPU, {} peak RSS, {} PBKDF2",
                self.client.cpu_secs,
                mib(self.client.rss_peak_kb),
                self.client.pbkdf2_derivations
            ),
        );
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }
}

impl Latency {
    pub fn summary(&self) -> String {
        if self.count == 0 {
            return "no samples".into();
        }
        format!(
            "p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (n={})",
            ms(self.p50_ms),
            ms(self.p90_ms),
            ms(self.p99_ms),
            ms(self.max_ms),
            self.count
        )
    }
}

fn ms(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.0}")
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1} MiB", kb as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn latency_quantiles_come_from_the_histogram() {
        let mut h = new_histogram();
        for micros in 1..=1000u64 {
            h.record(micros * 100).unwrap();
        }
        let lat = Latency::from_micros(&h);
        assert_eq!(lat.count, 1000);
        assert!((lat.p50_ms - 50.0).abs() < 0.1, "{lat:?}");
        assert!((lat.p99_ms - 99.0).abs() < 0.1, "{lat:?}");
        assert!((lat.max_ms - 100.0).abs() < 0.1, "{lat:?}");
        assert_eq!(Latency::from_micros(&new_histogram()), Latency::default());
    }

    fn sample_report() -> Report {
        let mut r = Report {
            label: "corvid".into(),
            scenario: "chat".into(),
            target: "127.0.0.1:5222".into(),
            tls: "starttls".into(),
            mechanism: "SCRAM-SHA-256".into(),
            users: 2000,
            wall_secs: 42.0,
            ..Report::default()
        };
        r.params.insert("rate".into(), 1500.0);
        r.logins = LoginReport {
            attempted: 2000,
            ok: 1999,
            failed: 1,
            secs: 4.0,
            per_sec: 499.75,
            ..LoginReport::default()
        };
        r.messages = Some(MessageReport {
            sent: 45000,
            delivered: 44990,
            fanout: 1.0,
            lost: 10,
            secs: 30.0,
            sent_per_sec: 1500.0,
            delivered_per_sec: 1499.7,
            latency: Latency {
                count: 44990,
                p50_ms: 1.25,
                p90_ms: 3.5,
                p99_ms: 12.0,
                max_ms: 250.0,
                mean_ms: 2.0,
            },
            ..MessageReport::default()
        });
        r.errors.insert("login/connect: refused".into(), 1);
        r.server = Some(ServerUsage {
            pid: 7,
            rss_start_kb: 10240,
            rss_loaded_kb: 51200,
            rss_peak_kb: 52000,
            bytes_per_session: Some(20971.52),
            cpu_secs: 12.5,
            cpu_percent_measured: 80.0,
        });
        r
    }

    #[test]
    fn the_table_shows_the_headline_figures() {
        let table = sample_report().to_table();
        assert!(
            table.contains("scenario            chat rate=1500"),
            "{table}"
        );
        assert!(table.contains("1999 ok, 1 failed of 2000"), "{table}");
        assert!(
            table.contains("p50 1.25 ms, p90 3.50 ms, p99 12 ms, max 250 ms (n=44990)"),
            "{table}"
        );
        assert!(table.contains("1 × login/connect: refused"), "{table}");
        assert!(table.contains("server mem/session  20.5 KiB"), "{table}");
        assert!(table.lines().all(|l| l.len() > 20), "{table}");
    }

    #[test]
    fn an_archive_short_of_the_delivered_messages_is_a_problem() {
        let mut a = ArchiveReport::default();
        a.add(AccountArchive {
            jid: "bench1@localhost".into(),
            queued: 10,
            delivered: 10,
            archived: 10,
            ..AccountArchive::default()
        });
        assert!(a.problems().is_empty());
        a.add(AccountArchive {
            jid: "bench2@localhost".into(),
            queued: 10,
            delivered: 9,
            archived: 8,
            duplicates: 1,
            ..AccountArchive::default()
        });
        a.add(AccountArchive {
            jid: "bench3@localhost".into(),
            error: Some("archive query refused: service-unavailable".into()),
            ..AccountArchive::default()
        });
        assert_eq!((a.archived, a.delivered, a.short), (18, 19, 2));
        let problems = a.problems();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("holds 8 of the 9"), "{problems:?}");
        assert!(problems[2].contains("service-unavailable"), "{problems:?}");
        let mut r = sample_report();
        r.archive = Some(a);
        assert!(
            r.to_table()
                .contains("3 accounts: 18 of 19 delivered found (20 queued), 1 twice, 2 short"),
            "{}",
            r.to_table()
        );
    }

    #[test]
    fn json_has_stable_field_names() {
        let json: serde_json::Value = serde_json::from_str(&sample_report().to_json()).unwrap();
        assert_eq!(json["messages"]["latency"]["p99_ms"], 12.0);
        assert_eq!(json["logins"]["per_sec"], 499.75);
        assert_eq!(json["server"]["bytes_per_session"], 20971.52);
        assert_eq!(json["sustained_rate"], serde_json::Value::Null);
    }
}
