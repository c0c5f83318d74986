//! corvid-chat: a terminal XMPP client on corvid-client. Without a subcommand it is an
//! interactive TUI (contacts and rooms on the left, the conversation on the right); with
//! one (`send`, `roster`, `listen`, `join`, `vcard`) it does one thing for scripts.

mod account;
mod message;
mod muc;
mod presence;
mod scripted;
mod session;
mod tui;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::account::{Account, AccountArgs};
use crate::session::{Lifetime, Session};

#[derive(Parser, Debug)]
#[command(
    name = "corvid-chat",
    version,
    about = "A terminal XMPP client: an interactive TUI, or one scriptable command",
    after_help = "The password comes from --password-file, CORVID_CHAT_PASSWORD, the config \
                  file's password_file, or a prompt."
)]
struct Cli {
    #[command(flatten)]
    account: AccountArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug, PartialEq)]
enum Command {
    /// Send one message; exits 0 once it is sent (or, with --receipt, received).
    Send {
        /// Whom to send it to.
        to: String,
        /// The message.
        text: String,
        /// Ask for a XEP-0184 receipt and wait for it (exit 1 without one).
        #[arg(long)]
        receipt: bool,
        /// How long to wait for the receipt.
        #[arg(long, value_name = "SECS", default_value_t = 10, requires = "receipt")]
        receipt_timeout: u64,
        /// The message type.
        #[arg(long = "type", default_value = "chat", value_parser = ["chat", "normal", "headline"])]
        kind: String,
    },
    /// Print the roster: JID, name, subscription, presence (tab-separated).
    Roster {
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
        /// Wait this many seconds at most for the contacts' presences.
        #[arg(long, value_name = "SECS", default_value_t = 2.0)]
        wait: f64,
    },
    /// Go online and print incoming messages as JSON lines until killed (reconnecting by
    /// itself after a lost connection).
    Listen,
    /// Join a room: print its messages as JSON lines, send stdin's lines to it.
    Join { room: String, nick: String },
    /// Print someone's vCard, one field a line.
    Vcard {
        /// Whose vCard (a bare JID).
        // Not named `jid`: that is the account's global flag, which clap would overwrite.
        #[arg(value_name = "JID")]
        contact: String,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let account = match Account::resolve(&cli.account, &|name| std::env::var(name).ok(), &|path| {
        std::fs::read_to_string(path)
    }) {
        Ok(account) => account,
        Err(e) => {
            eprintln!("corvid-chat: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("corvid-chat: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(account, cli.command));
    // Threads blocked reading stdin or the terminal cannot be joined; do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(200));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corvid-chat: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(account: Account, command: Option<Command>) -> anyhow::Result<()> {
    let Some(command) = command else {
        return tui::run(&account).await;
    };
    let lifetime = match command {
        Command::Listen | Command::Join { .. } => Lifetime::Lasting,
        _ => Lifetime::Brief,
    };
    let session = Session::connect(&account, lifetime).await?;
    match command {
        Command::Send {
            to,
            text,
            receipt,
            receipt_timeout,
            kind,
        } => {
            let receipt = receipt.then(|| Duration::from_secs(receipt_timeout));
            scripted::send(session, &to, &text, &kind, receipt).await
        }
        Command::Roster { json, wait } => {
            let wait = Duration::try_from_secs_f64(wait.max(0.0)).unwrap_or_default();
            scripted::roster(session, wait, json).await
        }
        Command::Listen => scripted::listen(session).await,
        Command::Join { room, nick } => scripted::join(session, &room, &nick).await,
        Command::Vcard { contact } => scripted::vcard(session, &contact).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subcommands_parse() {
        let cli = Cli::try_parse_from([
            "corvid-chat",
            "send",
            "--receipt",
            "romeo@x",
            "hello there",
            "--jid",
            "me@x",
        ])
        .unwrap();
        assert_eq!(cli.account.jid.as_deref(), Some("me@x"));
        assert_eq!(
            cli.command,
            Some(Command::Send {
                to: "romeo@x".into(),
                text: "hello there".into(),
                receipt: true,
                receipt_timeout: 10,
                kind: "chat".into(),
            })
        );
        let cli = Cli::try_parse_from([
            "corvid-chat",
            "--server",
            "127.0.0.1:5222",
            "--insecure",
            "join",
            "r@conf.x",
            "me",
        ])
        .unwrap();
        assert!(cli.account.insecure);
        assert_eq!(
            cli.command,
            Some(Command::Join {
                room: "r@conf.x".into(),
                nick: "me".into()
            })
        );
        let cli = Cli::try_parse_from(["corvid-chat", "--jid", "me@x"]).unwrap();
        assert_eq!(cli.command, None);
        // The vCard's JID and the account's are two things.
        let cli =
            Cli::try_parse_from(["corvid-chat", "vcard", "romeo@x", "--jid", "me@x"]).unwrap();
        assert_eq!(cli.account.jid.as_deref(), Some("me@x"));
        assert_eq!(
            cli.command,
            Some(Command::Vcard {
                contact: "romeo@x".into()
            })
        );
        let cli = Cli::try_parse_from(["corvid-chat", "vcard", "romeo@x"]).unwrap();
        assert_eq!(cli.account.jid, None);
    }

    #[test]
    fn there_is_no_password_flag() {
        assert!(Cli::try_parse_from(["corvid-chat", "--password", "x", "roster"]).is_err());
    }
}
