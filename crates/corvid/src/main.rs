//! `corvid`: the server binary. `corvid serve` runs the server; `corvid user …` manages
//! accounts directly in the store, `corvid token …` the admin API's tokens in the data
//! directory (both work whether or not the server is running); `corvid migrate` copies a
//! store into another database (SQLite to PostgreSQL or back).

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use corvid_server::{Config, accounts};
use corvid_store::SqlStore;

#[derive(Parser)]
#[command(name = "corvid", version, about = "Corvid XMPP server")]
struct Cli {
    /// Config file (TOML); without it, the built-in defaults serve `localhost`.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server until SIGINT/SIGTERM.
    Serve,
    /// Manage accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// External components (XEP-0114) of the running server.
    #[command(subcommand)]
    Components(ComponentsCommand),
    /// Server-to-server federation of the running server.
    #[command(subcommand)]
    S2s(S2sCommand),
    /// What the running server is doing: its number of client sessions.
    Status,
    /// Bearer tokens for the HTTP admin API (`[http] admin_api`).
    #[command(subcommand)]
    Token(TokenCommand),
    /// The cluster this node belongs to (`[cluster]`), as its Redis registry says.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Copy everything stored from one database into another (SQLite to PostgreSQL or
    /// back), all or nothing, then check every table's row count. Stop the server first.
    Migrate {
        /// The database to copy: `sqlite:PATH` (which must exist) or
        /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE`.
        #[arg(long)]
        from: String,
        /// The database to copy into (its tables are created; a PostgreSQL database must
        /// exist). Refused if it holds any data, unless --force.
        #[arg(long)]
        to: String,
        /// Delete what the destination holds, in the same transaction as the copy.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Each node: name, state (`alive`, `silent`: no link to Redis, `dead`: no heartbeat),
    /// its sessions, process id and seconds since it started.
    Status,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token and print it (the only time it is shown; only its hash is kept).
    Create {
        /// A name to list and revoke it by; by default `token-` and a random suffix.
        #[arg(long)]
        name: Option<String>,
    },
    /// Each token's name and when it was made (Unix seconds).
    List,
    /// Revoke a token: requests bearing it are refused from now on.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum S2sCommand {
    /// Each server-to-server connection: remote and local domain, direction, state,
    /// authentication, TLS (`tls` after STARTTLS, `direct-tls`, or `plain`), seconds up.
    List,
}

#[derive(Subcommand)]
enum ComponentsCommand {
    /// Each configured component's domain, and whether it is connected now.
    List,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. Without --password, prompts (or reads one line from stdin).
    Add {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Delete an account and its data.
    Remove { jid: String },
    /// List accounts, optionally of one domain.
    List { domain: Option<String> },
    /// Set a new password. Without --password, prompts (or reads one line from stdin).
    Passwd {
        jid: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Remove an account's archived messages (XEP-0313): all, or those older than N days.
    ClearArchive {
        jid: String,
        #[arg(long)]
        older_than_days: Option<u64>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corvid: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    corvid_server::memory::limit_arenas();
    let config = Config::load(cli.config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve => runtime.block_on(serve(config)),
        Command::User(cmd) => runtime.block_on(user(config, cmd)),
        Command::Components(ComponentsCommand::List) => {
            runtime.block_on(live(&config, "components"))
        }
        Command::Status => runtime.block_on(live(&config, "sessions")),
        Command::S2s(S2sCommand::List) => runtime.block_on(live(&config, "s2s")),
        Command::Token(cmd) => token(&config, cmd),
        Command::Cluster(ClusterCommand::Status) => runtime.block_on(cluster_status(&config)),
        Command::Migrate { from, to, force } => runtime.block_on(migrate(&from, &to, force)),
    }
}

/// `corvid migrate`: copies the store at `from` into the one at `to`, printing each table's
/// rows as it is copied.
async fn migrate(from: &str, to: &str, force: bool) -> Result<()> {
    if from == to {
        bail!("--from and --to name the same database");
    }
    let source = SqlStore::open(&existing_sqlite(from))
        .await
        .context("cannot open the database to copy (--from)")?;
    let dest = SqlStore::open(to)
        .await
        .context("cannot open the database to copy into (--to)")?;
    let copied = source
        .copy_to(&dest, force, |table| {
            println!("{}\t{}", table.table, table.rows);
        })
        .await;
    source.close().await;
    dest.close().await;
    let copied = copied.map_err(|e| match e {
        corvid_store::StoreError::NotEmpty(table) => anyhow::anyhow!(
            "the destination already holds data (table {table}); --force replaces it"
        ),
        e => anyhow::Error::new(e).context("the copy failed; the destination is unchanged"),
    })?;
    let rows: u64 = copied.iter().map(|table| table.rows).sum();
    eprintln!(
        "copied {rows} rows in {} tables; every table's count checked",
        copied.len()
    );
    Ok(())
}

/// A SQLite URL that opens the file only if it exists (`mode=rw`; the store creates missing
/// files otherwise): a mistyped source path must fail, not copy an empty new file.
fn existing_sqlite(url: &str) -> String {
    if !url.starts_with("sqlite:") {
        return url.to_owned();
    }
    match url.split_once('?') {
        None => format!("{url}?mode=rw"),
        Some((_, query)) if query.split('&').any(|pair| pair.starts_with("mode=")) => {
            url.to_owned()
        }
        Some(_) => format!("{url}&mode=rw"),
    }
}

async fn cluster_status(config: &Config) -> Result<()> {
    if !config.cluster.enabled() {
        bail!("this node is not in a cluster: [cluster] redis is not set");
    }
    let nodes = corvid_server::cluster::cluster_status(&config.cluster)
        .await
        .context("cannot read the cluster's registry")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("NODE\tSTATE\tSESSIONS\tPID\tUP_SECS");
    for node in &nodes {
        let state = match (node.alive, node.subscribed) {
            (true, true) => "alive",
            (true, false) => "silent",
            (false, _) => "dead",
        };
        let (pid, up) = node.info.as_ref().map_or((0, 0), |info| {
            (info.pid, now.saturating_sub(info.started_unix))
        });
        println!("{}\t{state}\t{}\t{pid}\t{up}", node.name, node.sessions);
    }
    let alive = nodes.iter().filter(|n| n.alive && n.subscribed).count();
    let sessions: u64 = nodes.iter().map(|n| n.sessions).sum();
    eprintln!(
        "{alive} of {} nodes alive, {sessions} sessions",
        nodes.len()
    );
    Ok(())
}

fn token(config: &Config, cmd: TokenCommand) -> Result<()> {
    use corvid_server::api_tokens;
    match cmd {
        TokenCommand::Create { name } => {
            let (name, token) = api_tokens::create(config, name.as_deref())?;
            eprintln!("created token {name}; it is shown only now:");
            println!("{token}");
        }
        TokenCommand::List => {
            for entry in api_tokens::list(config)? {
                println!("{}\t{}", entry.name, entry.created);
            }
        }
        TokenCommand::Revoke { name } => {
            api_tokens::revoke(config, &name)?;
            println!("revoked {name}");
        }
    }
    Ok(())
}

fn init_logging(config: &Config) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.level.clone());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .init();
}

async fn serve(config: Config) -> Result<()> {
    init_logging(&config);
    let running = corvid_server::start(config).await?;
    let server = &running.server;
    tracing::info!(
        domains = ?server.config.domains,
        starttls = ?running.c2s_addrs,
        direct_tls = ?running.tls_addrs,
        data = %server.config.data_dir.display(),
        "Corvid is listening; add a user with: corvid user add USER@{}{}",
        server.config.default_domain(),
        if server.config.registration_open() { " (or register in-band)" } else { "" },
    );
    wait_for_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// Asks the running server (through its admin socket) and prints the answer.
async fn live(config: &Config, request: &str) -> Result<()> {
    let path = config.admin_socket();
    let lines = corvid_server::admin::ask(&path, request)
        .await
        .with_context(|| format!("no running server answers on {}", path.display()))?;
    for line in lines {
        if let Some(error) = line.strip_prefix("error\t") {
            bail!("the server says: {error}");
        }
        println!("{line}");
    }
    Ok(())
}

async fn user(config: Config, cmd: UserCommand) -> Result<()> {
    let url = config.storage_url();
    if url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    }
    let store = SqlStore::open(&url)
        .await
        .context("cannot open the store")?;
    let result = run_user_command(&config, &store, cmd).await;
    store.close().await;
    result
}

async fn run_user_command(config: &Config, store: &SqlStore, cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add { jid, password } => {
            let user = accounts::parse_user(&jid, config)?;
            let password = password_from(password, "Password for the new account: ")?;
            accounts::create(store, &user, &password)
                .await
                .map_err(|e| match e {
                    accounts::AccountError::Exists => anyhow::anyhow!("{user} already exists"),
                    e => e.into(),
                })?;
            println!("created {user}");
        }
        UserCommand::Remove { jid } => {
            let user = accounts::parse_user(&jid, config)?;
            accounts::remove(store, &user, config)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    accounts::AccountError::NotFound => anyhow::anyhow!("{user} does not exist"),
                    e => e.into(),
                })?;
            println!("removed {user}");
        }
        UserCommand::List { domain } => {
            for user in accounts::list(store, config, domain.as_deref()).await? {
                println!("{user}");
            }
        }
        UserCommand::Passwd { jid, password } => {
            let user = accounts::parse_user(&jid, config)?;
            let password = password_from(password, "New password: ")?;
            accounts::set_password(store, &user, &password)
                .await
                .map_err(|e| match e {
                    accounts::AccountError::NotFound => anyhow::anyhow!("{user} does not exist"),
                    e => e.into(),
                })?;
            println!("password changed for {user}");
        }
        UserCommand::ClearArchive {
            jid,
            older_than_days,
        } => {
            let user = accounts::parse_user(&jid, config)?;
            let removed = accounts::clear_archive(store, &user, older_than_days)
                .await
                .map_err(|e| match e {
                    accounts::AccountError::NotFound => anyhow::anyhow!("{user} does not exist"),
                    e => e.into(),
                })?;
            println!("removed {removed} archived messages of {user}");
        }
    }
    Ok(())
}

/// The password from the flag, the terminal (not echoed), or one line of stdin.
fn password_from(flag: Option<String>, prompt: &str) -> Result<String> {
    let password = match flag {
        Some(p) => p,
        None if std::io::stdin().is_terminal() => rpassword::prompt_password(prompt)?,
        None => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line.trim_end_matches(['\r', '\n']).to_string()
        }
    };
    if password.is_empty() {
        bail!("the password must not be empty");
    }
    Ok(password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use corvid_store::Users;

    #[test]
    fn a_sqlite_source_is_opened_only_if_it_exists() {
        assert_eq!(existing_sqlite("sqlite:a.db"), "sqlite:a.db?mode=rw");
        assert_eq!(
            existing_sqlite("sqlite:a.db?cache=shared"),
            "sqlite:a.db?cache=shared&mode=rw"
        );
        assert_eq!(
            existing_sqlite("sqlite:a.db?mode=ro"),
            "sqlite:a.db?mode=ro"
        );
        assert_eq!(existing_sqlite("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[tokio::test]
    async fn migrate_copies_once_then_only_with_force() {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| format!("sqlite:{}", dir.path().join(name).display());
        let (from, to) = (url("from.sqlite"), url("to.sqlite"));
        assert!(migrate(&from, &to, false).await.is_err(), "no source file");
        assert!(!dir.path().join("from.sqlite").exists());

        let source = SqlStore::open(&from).await.unwrap();
        let keys = |len| corvid_proto::sasl::ScramKeys {
            stored_key: vec![1; len],
            server_key: vec![2; len],
        };
        let creds = corvid_proto::sasl::Credentials {
            salt: vec![3; 16],
            iterations: 4096,
            sha1: keys(20),
            sha256: keys(32),
        };
        source
            .create_user("alice", "localhost", &creds)
            .await
            .unwrap();
        source.close().await;

        migrate(&from, &to, false).await.unwrap();
        let copy = SqlStore::open(&to).await.unwrap();
        assert_eq!(
            copy.credentials("alice", "localhost").await.unwrap(),
            Some(creds)
        );
        copy.close().await;
        let again = migrate(&from, &to, false).await.unwrap_err();
        assert!(format!("{again:#}").contains("--force"), "{again:#}");
        migrate(&from, &to, true).await.unwrap();
        assert!(migrate(&from, &from, true).await.is_err());
    }
}
