//! `corvid migrate`, run as a real process: a SQLite installation made with the CLI is
//! copied into a new SQLite file, and (with `CORVID_TEST_POSTGRES_URL` set, as
//! scripts/test.sh does) into a real PostgreSQL database and back; each copy serves the
//! accounts it was given. What every table holds after a copy is compared in-process by
//! crates/corvid-store/tests/copy.rs; this checks the command: its output, its refusals,
//! `--force`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn corvid(config: Option<&Path>, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_corvid"));
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.args(args).output().expect("the corvid binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A config in `dir` whose store is `url` (by default, SQLite in `dir/data`).
fn config(dir: &Path, name: &str, url: Option<&str>) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let mut text = format!(
        "domains = ['localhost']\ndata_dir = '{}'\n",
        dir.join(format!("{name}-data")).display()
    );
    if let Some(url) = url {
        text.push_str(&format!("\n[storage]\nurl = '{url}'\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn users(config: &Path) -> String {
    let out = corvid(Some(config), &["user", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
}

fn migrate(from: &str, to: &str, force: bool) -> Output {
    let mut args = vec!["migrate", "--from", from, "--to", to];
    if force {
        args.push("--force");
    }
    corvid(None, &args)
}

/// The rows copied per table, as `migrate` prints them.
fn copied(out: &Output) -> Vec<(String, u64)> {
    text(&out.stdout)
        .lines()
        .map(|line| {
            let (table, rows) = line.split_once('\t').expect("TABLE\\tROWS");
            (table.to_owned(), rows.parse().expect("a count"))
        })
        .collect()
}

fn rows(out: &Output, table: &str) -> u64 {
    copied(out)
        .into_iter()
        .find(|(name, _)| name == table)
        .map(|(_, rows)| rows)
        .unwrap_or_else(|| panic!("no line for {table}: {}", text(&out.stdout)))
}

/// A source installation with two accounts; returns its config and store URL.
fn source(dir: &Path) -> (PathBuf, String) {
    let source = config(dir, "source", None);
    for jid in ["alice@localhost", "bob@localhost"] {
        let out = corvid(Some(&source), &["user", "add", jid, "--password", "pw"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
    let url = format!("sqlite:{}", dir.join("source-data/corvid.sqlite").display());
    (source, url)
}

#[test]
fn an_installation_is_copied_into_a_new_sqlite_file_once_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let (_, from) = source(dir.path());
    let to = format!("sqlite:{}", dir.path().join("copy.sqlite").display());

    let out = migrate(&from, &to, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rows(&out, "users"), 2);
    assert!(
        text(&out.stderr).contains("every table's count checked"),
        "{}",
        text(&out.stderr)
    );
    let copy = config(dir.path(), "copy", Some(&to));
    assert_eq!(users(&copy), "alice@localhost\nbob@localhost\n");

    // A destination holding data is left alone, unless --force, which replaces it.
    let out = corvid(
        Some(&copy),
        &["user", "add", "carol@localhost", "--password", "pw"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = migrate(&from, &to, false);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--force"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        users(&copy),
        "alice@localhost\nbob@localhost\ncarol@localhost\n"
    );
    let out = migrate(&from, &to, true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(users(&copy), "alice@localhost\nbob@localhost\n");
}

#[test]
fn a_missing_source_or_the_same_database_twice_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite:{}", dir.path().join("nothing.sqlite").display());
    let to = format!("sqlite:{}", dir.path().join("copy.sqlite").display());
    let out = migrate(&missing, &to, false);
    assert!(!out.status.success());
    assert!(
        !dir.path().join("nothing.sqlite").exists(),
        "a mistyped source is not created"
    );
    let out = migrate(&to, &to, false);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("same database"),
        "{}",
        text(&out.stderr)
    );
}

/// An administrator's URL for a PostgreSQL server, and a database of the test's own on it
/// (made and dropped with `psql`).
struct PgDatabase {
    admin: String,
    name: String,
}

impl PgDatabase {
    fn create(admin: &str) -> PgDatabase {
        let name = format!(
            "corvid_migrate_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        psql(admin, &format!("CREATE DATABASE {name}"));
        PgDatabase {
            admin: admin.to_owned(),
            name,
        }
    }

    /// The admin URL with this database's name in place of its own.
    fn url(&self) -> String {
        let (server, _) = self.admin.rsplit_once('/').expect("URL/DATABASE");
        format!("{server}/{}", self.name)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", text(&out.stderr));
}

#[test]
fn an_installation_goes_to_postgresql_and_back() {
    let Some(admin) = std::env::var("CORVID_TEST_POSTGRES_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
    else {
        eprintln!("CORVID_TEST_POSTGRES_URL is not set: SQLite only");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, from) = source(dir.path());
    let db = PgDatabase::create(&admin);

    let out = migrate(&from, &db.url(), false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rows(&out, "users"), 2);
    let on_postgres = config(dir.path(), "postgres", Some(&db.url()));
    assert_eq!(users(&on_postgres), "alice@localhost\nbob@localhost\n");
    let out = corvid(
        Some(&on_postgres),
        &["user", "add", "carol@localhost", "--password", "pw"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));

    let back = format!("sqlite:{}", dir.path().join("back.sqlite").display());
    let out = migrate(&db.url(), &back, false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(rows(&out, "users"), 3);
    let on_sqlite = config(dir.path(), "back", Some(&back));
    assert_eq!(
        users(&on_sqlite),
        "alice@localhost\nbob@localhost\ncarol@localhost\n"
    );
}
