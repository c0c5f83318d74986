//! `corvid-bench`: a load generator for XMPP servers, in the spirit of tsung and amoc.
//!
//! It opens N client sessions (STARTTLS or direct TLS, SCRAM or PLAIN, accounts
//! registered in-band or made beforehand) at an arrival rate, runs one scenario (chat,
//! chat-ramp, idle, login-storm, register, presence, muc, pep) and reports logins/s,
//! deliveries/s, delivery latency quantiles, errors and disconnects as a table and as
//! JSON; with `--verify-archive`, chat also checks that the server archived what it
//! carried (XEP-0313). It only ever connects to loopback addresses, and every phase is bounded in
//! time.

mod archive_check;
mod caps;
mod cli;
mod login;
mod pep;
mod procfs;
mod progress;
mod report;
mod scenario;
mod schedule;
mod scram_cache;
mod session;
mod shared;
mod stats;
mod tls;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Scenario, TlsMode};
use crate::scenario::{Run, chat, muc, pep as pep_scenario, presence, sessions};
use crate::scram_cache::SaltedPasswordCache;
use crate::shared::{Accounts, LoginSettings, Shared};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let targets = match cli.validate() {
        Ok(targets) => targets,
        Err(e) => {
            eprintln!("corvid-bench: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corvid-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, targets)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corvid-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, targets: Vec<std::net::SocketAddr>) -> Result<()> {
    let cache = match &cli.scram_cache {
        Some(path) => SaltedPasswordCache::with_file(path)?,
        None => SaltedPasswordCache::in_memory(),
    };
    let connector = match cli.tls {
        TlsMode::None => None,
        mode => Some(tls::connector(
            mode == TlsMode::Direct,
            cli.websocket.is_some(),
        )?),
    };
    let accounts = Accounts {
        domain: cli.domain.clone(),
        prefix: cli.prefix.clone(),
        first: cli.first,
        password: cli.password.clone(),
        resource: cli.resource.clone(),
    };
    let login = LoginSettings {
        targets,
        tls: cli.tls,
        websocket: cli.websocket.clone(),
        connector,
        mechanism: cli.mechanism,
        register: cli.register,
        timeout: Duration::from_secs(cli.login_timeout),
    };
    let mut shared = Shared::new(accounts, login, cache);
    shared.auto_accept_subscriptions = matches!(
        cli.scenario,
        Scenario::Presence { .. } | Scenario::Pep { .. }
    );
    if let Scenario::Pep {
        publishers,
        contacts,
        silent,
        ..
    } = cli.scenario
    {
        shared.pep = Some(pep::Pep::new(pep::Plan {
            publishers,
            listeners: contacts,
            silent,
        }));
    }
    if let Scenario::Chat { verify_archive, .. } | Scenario::ChatRamp { verify_archive, .. } =
        cli.scenario
        && verify_archive > 0
    {
        shared.archive = Some(archive_check::ArchiveCheck::new(shared.run_id, cli.users));
    }
    let shared = Arc::new(shared);
    let mut run = Run::new(cli.clone(), shared.clone());
    let progress = tokio::spawn(progress::run(
        shared.clone(),
        cli.server_pid.clone(),
        cli.quiet,
        run.peaks.clone(),
    ));

    let limit = Duration::from_secs(cli.timeout);
    let outcome = tokio::time::timeout(limit, run_scenario(&mut run)).await;
    progress.abort();
    if let Err(e) = shared.cache.save() {
        eprintln!("corvid-bench: could not save the SCRAM cache: {e:#}");
    }
    let result = match outcome {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!(
            "the run passed --timeout {}s and was cut short",
            cli.timeout
        )),
    };
    let timed_out = result.is_err();
    let mut report = run.finish();
    if let Err(e) = &result {
        report.errors.insert(format!("run: {e:#}"), 1);
    }
    print!("{}", report.to_table());
    if let Some(path) = &cli.json {
        std::fs::write(path, report.to_json())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if timed_out { result } else { Ok(()) }
}

async fn run_scenario(run: &mut Run) -> Result<()> {
    match run.cli.scenario.clone() {
        Scenario::Chat {
            rate,
            duration,
            verify_archive,
        } => chat::chat(run, rate, duration, verify_archive).await,
        Scenario::ChatRamp {
            start,
            step,
            growth,
            max,
            step_secs,
            p99_limit_ms,
            verify_archive,
        } => {
            let growth = match (step, growth) {
                (_, Some(percent)) => chat::Growth::Percent(percent),
                (Some(step), None) => chat::Growth::Step(step),
                (None, None) => anyhow::bail!("chat-ramp needs --step or --growth"),
            };
            chat::chat_ramp(
                run,
                chat::Ramp {
                    start,
                    growth,
                    max,
                    step_secs,
                    p99_limit_ms,
                    verify_archive,
                },
            )
            .await
        }
        Scenario::Idle { hold } => {
            sessions::idle(run, hold).await;
            Ok(())
        }
        Scenario::LoginStorm => {
            sessions::login_storm(run).await;
            Ok(())
        }
        Scenario::Register => {
            sessions::register(run).await;
            Ok(())
        }
        Scenario::Presence {
            contacts,
            rate,
            duration,
        } => presence::presence(run, contacts, rate, duration).await,
        Scenario::Muc {
            rooms,
            occupants,
            rate,
            duration,
            service,
            room,
        } => {
            let service = service.unwrap_or_else(|| format!("conference.{}", run.cli.domain));
            muc::muc(
                run,
                muc::Muc {
                    rooms,
                    occupants,
                    rate,
                    duration,
                    service,
                    room,
                },
            )
            .await
        }
        Scenario::Pep {
            rate,
            duration,
            items,
            ..
        } => {
            pep_scenario::pep(
                run,
                pep_scenario::PepLoad {
                    rate,
                    duration,
                    items,
                },
            )
            .await
        }
    }
}
