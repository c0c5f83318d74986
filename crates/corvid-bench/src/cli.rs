//! Command line: what to connect to, which accounts, and which scenario to run; and the
//! checks that refuse a run before it starts (non-loopback target, impossible numbers).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "corvid-bench",
    version,
    about = "Load generator for XMPP servers (loopback targets only)",
    after_help = "Examples:\n  corvid-bench --users 2000 --register chat --rate 2000 --duration 30\n  corvid-bench --users 2000 chat-ramp --start 1000 --step 1000 --max 20000 --step-secs 10\n  corvid-bench --users 10000 --arrival-rate 1000 idle --hold 30\n  corvid-bench --users 2000 login-storm"
)]
pub struct Cli {
    /// Address of the server's client port (host:port). Must be loopback. Several,
    /// comma-separated (a cluster's nodes): account i connects to the (i mod n)-th.
    #[arg(long, default_value = "127.0.0.1:5222")]
    pub server: String,
    /// The XMPP domain the accounts live on.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Number of sessions (accounts PREFIX<first>..PREFIX<first+users-1>).
    #[arg(long, default_value_t = 100)]
    pub users: u32,
    /// Username prefix; user i is PREFIX<i>.
    #[arg(long, default_value = "bench")]
    pub prefix: String,
    /// Number of the first account.
    #[arg(long, default_value_t = 1)]
    pub first: u32,
    /// Password of every account.
    #[arg(long, default_value = "bench-password")]
    pub password: String,
    /// Register each account in-band (XEP-0077) before logging in; existing accounts are fine.
    #[arg(long)]
    pub register: bool,
    /// New sessions started per second [default: 500; unlimited for login-storm and
    /// register, where only --max-pending bounds them].
    #[arg(long)]
    pub arrival_rate: Option<f64>,
    /// Logins in progress at once, at most.
    #[arg(long, default_value_t = 256)]
    pub max_pending: usize,
    #[arg(long, value_enum, default_value_t = TlsMode::Starttls)]
    pub tls: TlsMode,
    /// Connect over WebSocket (RFC 7395) at this path of --server, the HTTP listener
    /// (e.g. `/xmpp-websocket`): `ws://` with `--tls none`, `wss://` with `--tls direct`.
    #[arg(long)]
    pub websocket: Option<String>,
    #[arg(long, value_enum, default_value_t = MechanismChoice::Auto)]
    pub mechanism: MechanismChoice,
    /// Resource bound by every session.
    #[arg(long, default_value = "bench")]
    pub resource: String,
    /// File caching SCRAM salted passwords across runs (holds password-equivalent
    /// secrets of the bench accounts).
    #[arg(long)]
    pub scram_cache: Option<PathBuf>,
    /// PID of the server process, to sample its RSS and CPU time from /proc; several,
    /// comma-separated, are summed (a cluster's nodes on this machine).
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
    /// Name of the server in the report (e.g. corvid, prosody, ejabberd).
    #[arg(long, default_value = "server")]
    pub label: String,
    /// Write the report as JSON here as well.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Hard limit on the whole run, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
    /// Seconds one login may take before it counts as failed.
    #[arg(long, default_value_t = 60)]
    pub login_timeout: u64,
    /// Seconds to wait after sending stops for messages still in flight.
    #[arg(long, default_value_t = 3)]
    pub drain: u64,
    /// No progress lines on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// Seed for choosing senders and recipients.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum TlsMode {
    /// RFC 6120 STARTTLS on the plain port.
    Starttls,
    /// XEP-0368 TLS from the first byte.
    Direct,
    /// No TLS (only where the server allows authentication without it).
    None,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum MechanismChoice {
    /// SCRAM-SHA-256 if offered, else SCRAM-SHA-1, else PLAIN.
    Auto,
    #[value(name = "scram-sha-256")]
    ScramSha256,
    #[value(name = "scram-sha-1")]
    ScramSha1,
    Plain,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// One-to-one chat at a fixed total rate (open loop).
    Chat {
        /// Messages per second, all sessions together.
        #[arg(long)]
        rate: f64,
        /// Seconds of sending.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Afterwards, read the archives (XEP-0313) of this many accounts and check that
        /// they hold every message of the run delivered from or to them.
        #[arg(long, default_value_t = 0)]
        verify_archive: u32,
    },
    /// Chat at increasing rates until p99 latency passes the limit.
    ChatRamp {
        #[arg(long)]
        start: f64,
        /// Added to the rate after each step (linear ramp).
        #[arg(long, required_unless_present = "growth")]
        step: Option<f64>,
        /// Percent the rate grows by after each step (geometric ramp; replaces --step).
        #[arg(long, conflicts_with = "step")]
        growth: Option<f64>,
        #[arg(long)]
        max: f64,
        #[arg(long, default_value_t = 10)]
        step_secs: u64,
        /// The p99 latency, in ms, that ends the ramp.
        #[arg(long, default_value_t = 100.0)]
        p99_limit_ms: f64,
        /// Afterwards, check this many accounts' archives (XEP-0313), as for chat.
        #[arg(long, default_value_t = 0)]
        verify_archive: u32,
    },
    /// Log every session in and keep it idle.
    Idle {
        /// Seconds to hold the sessions once all are up.
        #[arg(long, default_value_t = 30)]
        hold: u64,
    },
    /// Log every session in as fast as the server allows; report logins/s.
    LoginStorm,
    /// Only create the accounts (XEP-0077), as fast as allowed.
    Register,
    /// Presence broadcast: each user has K mutual contacts; sessions change presence at a
    /// total rate and every contact receives it.
    Presence {
        /// Contacts per user (even: K/2 neighbours on each side of a ring).
        #[arg(long, default_value_t = 10)]
        contacts: u32,
        /// Presence updates per second, all sessions together.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        duration: u64,
    },
    /// Multi-user chat (XEP-0045): rooms of M occupants, groupchat messages at a total rate.
    Muc {
        /// Number of rooms.
        #[arg(long, default_value_t = 1)]
        rooms: u32,
        /// Occupants per room.
        #[arg(long, default_value_t = 200)]
        occupants: u32,
        /// Groupchat messages per second, all rooms together.
        #[arg(long, default_value_t = 10.0)]
        rate: f64,
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// The MUC service; default conference.DOMAIN.
        #[arg(long)]
        service: Option<String>,
        /// Room name prefix; rooms are PREFIX1, PREFIX2 …
        #[arg(long, default_value = "benchroom")]
        room: String,
    },
    /// Personal eventing (XEP-0163): publishers with mutual contacts publish user-tune
    /// items at a total rate; each contact whose caps (XEP-0115) say `tune+notify` must
    /// get each item once, the others none. --users must be publishers + contacts +
    /// silent.
    Pep {
        /// Accounts 1..=P publish.
        #[arg(long, default_value_t = 10)]
        publishers: u32,
        /// Listening contacts (tune+notify), shared by every publisher.
        #[arg(long, default_value_t = 200)]
        contacts: u32,
        /// Contacts of every publisher whose caps lack +notify.
        #[arg(long, default_value_t = 10)]
        silent: u32,
        /// Items published per second, all publishers together.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        #[arg(long, default_value_t = 10)]
        duration: u64,
        /// At most this many items (the phase ends at --duration or here).
        #[arg(long, default_value_t = 100_000)]
        items: u64,
    },
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Chat { .. } => "chat",
            Scenario::ChatRamp { .. } => "chat-ramp",
            Scenario::Idle { .. } => "idle",
            Scenario::LoginStorm => "login-storm",
            Scenario::Register => "register",
            Scenario::Presence { .. } => "presence",
            Scenario::Muc { .. } => "muc",
            Scenario::Pep { .. } => "pep",
        }
    }
}

impl Cli {
    /// Resolves `--server` and checks every argument; the addresses returned are loopback.
    pub fn validate(&self) -> Result<Vec<SocketAddr>> {
        let target = self
            .server
            .split(',')
            .map(|server| resolve_loopback(server.trim()))
            .collect::<Result<Vec<_>>>()?;
        check_name("--prefix", &self.prefix)?;
        check_name("--resource", &self.resource)?;
        check_domain(&self.domain)?;
        if let Some(path) = &self.websocket {
            if !path.starts_with('/') || path.contains(char::is_whitespace) {
                bail!("--websocket takes a path, such as /xmpp-websocket");
            }
            if self.tls == TlsMode::Starttls {
                bail!("--websocket needs --tls none (ws://) or --tls direct (wss://)");
            }
        }
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        if self.first.checked_add(self.users).is_none() {
            bail!("--first + --users overflows");
        }
        if let Some(rate) = self.arrival_rate {
            check_rate("--arrival-rate", rate)?;
        }
        if self.max_pending == 0 {
            bail!("--max-pending must be at least 1");
        }
        if self.password.is_empty() || self.password.contains(['<', '>', '&', '\'', '"']) {
            bail!("--password must be non-empty and free of XML special characters");
        }
        if self.timeout == 0 || self.login_timeout == 0 {
            bail!("--timeout and --login-timeout must be positive");
        }
        self.validate_scenario()?;
        Ok(target)
    }

    fn validate_scenario(&self) -> Result<()> {
        match &self.scenario {
            Scenario::Chat { rate, duration, .. } => {
                check_rate("--rate", *rate)?;
                check_duration(*duration)?;
                if self.users < 2 {
                    bail!("chat needs at least 2 users");
                }
            }
            Scenario::ChatRamp {
                start,
                step,
                growth,
                max,
                step_secs,
                p99_limit_ms,
                ..
            } => {
                check_rate("--start", *start)?;
                if let Some(step) = step {
                    check_rate("--step", *step)?;
                }
                if let Some(growth) = growth
                    && !(growth.is_finite() && *growth >= 1.0 && *growth <= 1000.0)
                {
                    bail!("--growth must be a percentage between 1 and 1000");
                }
                check_rate("--max", *max)?;
                check_duration(*step_secs)?;
                if start > max {
                    bail!("--start must not exceed --max");
                }
                if p99_limit_ms.is_nan() || *p99_limit_ms <= 0.0 {
                    bail!("--p99-limit-ms must be positive");
                }
                if self.users < 2 {
                    bail!("chat-ramp needs at least 2 users");
                }
            }
            Scenario::Idle { hold } => check_duration(*hold)?,
            Scenario::LoginStorm | Scenario::Register => {}
            Scenario::Presence {
                contacts,
                rate,
                duration,
            } => {
                check_rate("--rate", *rate)?;
                check_duration(*duration)?;
                if *contacts == 0 || contacts % 2 != 0 {
                    bail!("--contacts must be a positive even number");
                }
                if *contacts >= self.users {
                    bail!("--contacts must be less than --users");
                }
            }
            Scenario::Muc {
                rooms,
                occupants,
                rate,
                duration,
                service,
                room,
            } => {
                check_rate("--rate", *rate)?;
                check_duration(*duration)?;
                check_name("--room", room)?;
                if let Some(service) = service {
                    check_domain(service)?;
                }
                if *rooms == 0 || *occupants == 0 {
                    bail!("--rooms and --occupants must be positive");
                }
                if u64::from(*rooms) * u64::from(*occupants) > u64::from(self.users) {
                    bail!("--rooms × --occupants must not exceed --users");
                }
            }
            Scenario::Pep {
                publishers,
                contacts,
                silent,
                rate,
                duration,
                items,
            } => {
                check_rate("--rate", *rate)?;
                check_duration(*duration)?;
                if *publishers == 0 || *contacts == 0 || *items == 0 {
                    bail!("--publishers, --contacts and --items must be positive");
                }
                let total = u64::from(*publishers) + u64::from(*contacts) + u64::from(*silent);
                if total != u64::from(self.users) {
                    bail!("pep needs --users {total} (publishers + contacts + silent)");
                }
            }
        }
        Ok(())
    }
}

/// Resolves `addr` and insists that every address it names is loopback: this tool only
/// ever loads servers on this machine.
pub fn resolve_loopback(addr: &str) -> Result<SocketAddr> {
    let resolved: Vec<SocketAddr> = match addr.to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(e) => bail!("cannot resolve --server {addr}: {e}"),
    };
    let Some(first) = resolved.first().copied() else {
        bail!("--server {addr} resolves to no address");
    };
    if let Some(bad) = resolved.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing to run: --server {addr} resolves to {}, which is not loopback \
             (127.0.0.0/8 or ::1); corvid-bench only loads servers on this machine",
            bad.ip()
        );
    }
    Ok(first)
}

fn check_rate(flag: &str, rate: f64) -> Result<()> {
    if !(rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0) {
        bail!("{flag} must be a number above 0 and at most 1000000");
    }
    Ok(())
}

fn check_duration(secs: u64) -> Result<()> {
    if secs == 0 || secs > 24 * 3600 {
        bail!("durations must be between 1 second and a day");
    }
    Ok(())
}

/// Names go into JIDs and XML unescaped, so they are kept to a safe alphabet.
fn check_name(flag: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if !ok {
        bail!("{flag} must be 1–64 characters of a-z, 0-9, '-', '_', '.'");
    }
    Ok(())
}

fn check_domain(domain: &str) -> Result<()> {
    let ok = !domain.is_empty()
        && domain.len() <= 253
        && domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b));
    if !ok {
        bail!("domain {domain:?} must be lower-case letters, digits, '-' and '.'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli> {
        let mut all = vec!["corvid-bench"];
        all.extend_from_slice(args);
        Ok(Cli::try_parse_from(all)?)
    }

    #[test]
    fn loopback_targets_are_accepted() {
        for addr in [
            "127.0.0.1:5222",
            "127.9.8.7:1",
            "[::1]:5222",
            "localhost:5222",
        ] {
            let resolved = resolve_loopback(addr).unwrap();
            assert!(resolved.ip().is_loopback(), "{addr}");
        }
    }

    #[test]
    fn other_targets_are_refused() {
        for addr in [
            "10.0.0.1:5222",
            "192.168.1.1:5222",
            "8.8.8.8:5222",
            "0.0.0.0:5222",
            "[::]:5222",
            "[2001:db8::1]:5222",
        ] {
            let err = resolve_loopback(addr).unwrap_err().to_string();
            assert!(
                err.contains("refusing to run") || err.contains("resolve"),
                "{addr}: {err}"
            );
        }
        let cli = parse(&["--server", "10.1.2.3:5222", "idle"]).unwrap();
        assert!(
            cli.validate()
                .unwrap_err()
                .to_string()
                .contains("not loopback")
        );
    }

    #[test]
    fn a_typical_command_line_validates() {
        let cli = parse(&[
            "--users",
            "2000",
            "--register",
            "--tls",
            "direct",
            "--mechanism",
            "scram-sha-1",
            "chat",
            "--rate",
            "1500",
            "--duration",
            "10",
        ])
        .unwrap();
        assert_eq!(cli.mechanism, MechanismChoice::ScramSha1);
        assert_eq!(cli.validate().unwrap()[0].port(), 5222);
        assert!(matches!(cli.scenario, Scenario::Chat { duration: 10, .. }));
        assert_eq!(cli.tls, TlsMode::Direct);
    }

    #[test]
    fn impossible_numbers_are_refused() {
        let bad: &[&[&str]] = &[
            &["--users", "0", "idle"],
            &["--users", "1", "chat", "--rate", "10"],
            &["chat", "--rate", "0"],
            &["chat", "--rate", "NaN"],
            &["--arrival-rate", "-1", "idle"],
            &[
                "chat-ramp",
                "--start",
                "500",
                "--step",
                "100",
                "--max",
                "100",
            ],
            &["chat-ramp", "--start", "500", "--max", "1000"],
            &[
                "chat-ramp",
                "--start",
                "500",
                "--growth",
                "0.5",
                "--max",
                "1000",
            ],
            &["--users", "10", "presence", "--contacts", "3"],
            &["--users", "10", "presence", "--contacts", "10"],
            &["--users", "100", "muc", "--occupants", "101"],
            &["--prefix", "Bench", "idle"],
            &["--websocket", "xmpp-websocket", "--tls", "none", "idle"],
            &["--websocket", "/xmpp-websocket", "idle"],
            &["--domain", "local host", "idle"],
            &["--password", "a'b", "idle"],
            &["idle", "--hold", "0"],
        ];
        for args in bad {
            let result = parse(args).and_then(|cli| cli.validate().map(|_| ()));
            assert!(result.is_err(), "{args:?} should be refused");
        }
    }
}
