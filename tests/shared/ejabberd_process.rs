//! One real ejabberd (the Debian package, 23.01) for one test: started on loopback in a
//! temporary directory of its own (configuration, resolver settings, database, logs), its
//! accounts made with `ejabberdctl register`, stopped when dropped.
//!
//! Shared by the test binaries of two crates, each including this file by path
//! (`#[path = "…/tests/shared/ejabberd_process.rs"] mod ejabberd_process;`): the SDK's
//! scenarios (crates/corvid-client/tests/ejabberd.rs) and federation with Corvid
//! (crates/corvid-server/tests/s2s_ejabberd.rs). Each says what ejabberd serves; this file
//! only knows how to run it.
//!
//! Its Erlang VM opens its ports in about a second here (2 cores), says it has started
//! (`ejabberdctl status`) a moment later, and accounts are made together in half a second
//! more: about 2.5 s in all, and well under a second to stop. The VM listens for
//! `ejabberdctl` on a distribution port of its own (`ERL_DIST_PORT`), so no epmd daemon is
//! started, shared or left behind. `ejabberdctl --config-dir` points at the temporary
//! directory, so the VM reads `ejabberd.yml`, `ejabberdctl.cfg` and the resolver's `inetrc`
//! from there, never from /etc/ejabberd.

#![allow(dead_code)] // each test binary uses what it needs

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

/// The system account the Debian package runs ejabberd as; `ejabberdctl` run by root
/// switches to it, so what the server reads and writes in the temp dir must be its own.
const EJABBERD_USER: &str = "ejabberd";

/// What one test's ejabberd is: written into its fresh directory before it starts.
pub struct Setup {
    /// `ejabberd.yml`.
    pub config: String,
    /// Lines added to the Erlang VM's resolver configuration (`inetrc`), such as a
    /// `{nameserver, …}` of the test's own.
    pub inetrc: String,
    /// The ports its configuration listens on: it is up once they all accept.
    pub ports: Vec<u16>,
    /// Accounts made once it has started, as `(user, host)`.
    pub accounts: Vec<(String, String)>,
    pub password: String,
}

/// An ejabberd VM (and the `ejabberdctl` that started it, leading their process group),
/// stopped when dropped.
pub struct Ejabberd {
    child: Child,
    /// The `--config-dir` and `--node` arguments `ejabberdctl` needs to reach this node.
    ctl: Vec<String>,
    dir: TempDir,
}

impl Drop for Ejabberd {
    fn drop(&mut self) {
        // SIGTERM makes the VM stop its applications and exit (init:stop/0); `ejabberdctl`
        // then reaps it and exits. The VM is the child of `ejabberdctl`: signalled alone,
        // so that it is not orphaned (a whole group signalled would leave it to init).
        let vm = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", self.child.id()))
            .unwrap_or_default();
        for pid in vm.split_whitespace() {
            signal("-TERM", pid);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            // Not stopped in time: the group `ejabberdctl` leads (not yet reaped, so still
            // ours), all of it.
            signal("-KILL", &format!("-{}", self.child.id()));
            let _ = self.child.wait();
        }
        // Its warnings and errors, shown with a failing test's output.
        let log = self.log();
        if !log.is_empty() {
            eprintln!("ejabberd's log:\n{log}");
        }
    }
}

impl Ejabberd {
    /// Its temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What it has logged so far (at the configuration's `loglevel`).
    pub fn log(&self) -> String {
        log_of(self.dir.path())
    }

    /// Runs `ejabberdctl args…` against the node, to completion.
    pub fn ctl(&self, args: &[&str]) -> Result<()> {
        finish(
            args.first().copied().unwrap_or_default(),
            self.spawn_ctl(args)?,
        )
    }

    fn spawn_ctl(&self, args: &[&str]) -> Result<Child> {
        ejabberdctl_command(self.dir.path())?
            .args(&self.ctl)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run ejabberdctl (is the ejabberd package installed?)")
    }
}

/// A free loopback port (free when asked: the caller binds it soon after).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Certificate parameters for `names`, valid for a few days only: ejabberd 23.01 arms a
/// timer for each certificate's expiry, and crashes on one further away than an Erlang
/// timer reaches (2^32 ms, 49 days), such as rcgen's default of the year 4096.
pub fn short_lived(names: &[&str]) -> Result<rcgen::CertificateParams> {
    let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
    let mut params = rcgen::CertificateParams::new(names)?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(7 * 86400);
    Ok(params)
}

/// An ejabberd as `prepare` sets it up in the directory it is given (returning the setup
/// and whatever the test keeps of it, such as the ports it chose), started and with its
/// accounts. A start that fails (the VM stalled compiling its configuration on a loaded
/// machine) is tried once more, prepared afresh in a fresh directory: that is the test's
/// setup failing, not the behaviour under test.
pub async fn start<T>(prepare: impl Fn(&Path) -> Result<(Setup, T)>) -> Result<(Ejabberd, T)> {
    match start_once(&prepare).await {
        Ok(started) => Ok(started),
        Err(e) => {
            eprintln!("ejabberd did not start; once more: {e:#}");
            start_once(&prepare).await
        }
    }
}

async fn start_once<T>(prepare: &impl Fn(&Path) -> Result<(Setup, T)>) -> Result<(Ejabberd, T)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    std::fs::create_dir(path.join("spool"))?;
    std::fs::create_dir(path.join("logs"))?;
    let (setup, kept) = prepare(&path)?;
    let dist_port = free_port()?;
    std::fs::write(path.join("ejabberd.yml"), &setup.config)?;
    std::fs::write(path.join("ejabberdctl.cfg"), ctl_config(dist_port))?;
    std::fs::write(path.join("inetrc"), inetrc(&setup.inetrc))?;
    hand_over(&path)?;

    let ctl = vec![
        "--config-dir".into(),
        path.display().to_string(),
        "--node".into(),
        format!("corvidtest{dist_port}@localhost"),
    ];
    let started = Instant::now();
    let child = ejabberdctl_command(&path)?
        .args(&ctl)
        .arg("--spool")
        .arg(path.join("spool"))
        .arg("--logs")
        .arg(path.join("logs"))
        .arg("foreground")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group, which the VM joins: killed whole if it does not stop in time.
        .process_group(0)
        .spawn()
        .context("start ejabberd (is the ejabberd package installed?)")?;
    let server = Ejabberd { child, ctl, dir };
    wait_for_ports(&server, &setup.ports).await?;
    // The ports open before every module is up; accounts are made once ejabberd says it
    // has started (before, `register` can find its caches missing, or crash mnesia).
    wait_until_started(&server).await?;
    register(&server, &setup.accounts, &setup.password)?;
    eprintln!("ejabberd ready in {:?}", started.elapsed());
    Ok((server, kept))
}

/// `ejabberdctl`'s own settings (Debian's /etc/ejabberd/ejabberdctl.cfg would point back at
/// the system's node): distribution on loopback, on a port of its own, without epmd.
fn ctl_config(dist_port: u16) -> String {
    format!(
        "ERL_OPTIONS=\"-kernel inet_dist_use_interface {{127,0,0,1}} -env ERL_CRASH_DUMP_BYTES 0\"\n\
         ERL_DIST_PORT={dist_port}\n"
    )
}

/// The VM's resolver settings: Debian's own (/etc/ejabberd/inetrc: host names from files,
/// then the system's resolver; `localhost` is loopback), and the test's lines.
fn inetrc(extra: &str) -> String {
    format!("{{lookup, [file, native]}}.\n{{host, {{127,0,0,1}}, [\"localhost\"]}}.\n{extra}")
}

/// `ejabberdctl` as the ejabberd user, with the temp dir as its home (where the node and
/// its `ejabberdctl` calls share their Erlang cookie). Run by root, `ejabberdctl` would
/// switch users itself, with `su -c`, whose new session would take the VM out of the
/// process group [`Ejabberd`]'s drop stops.
fn ejabberdctl_command(home: &Path) -> Result<Command> {
    let mut command = if std::fs::metadata("/proc/self")?.uid() == 0 {
        let mut setpriv = Command::new("setpriv");
        setpriv.args([
            &format!("--reuid={EJABBERD_USER}"),
            &format!("--regid={EJABBERD_USER}"),
            "--init-groups",
            "--",
            "ejabberdctl",
        ]);
        setpriv
    } else {
        Command::new("ejabberdctl")
    };
    command.env("HOME", home);
    Ok(command)
}

/// Makes the accounts together, each waited for before the first failure is told.
fn register(server: &Ejabberd, accounts: &[(String, String)], password: &str) -> Result<()> {
    let registering = accounts
        .iter()
        .map(|(user, host)| server.spawn_ctl(&["register", user, host, password]))
        .collect::<Vec<_>>();
    let registered: Vec<Result<()>> = registering
        .into_iter()
        .map(|child| finish("register", child?))
        .collect();
    registered.into_iter().collect()
}

fn finish(what: &str, child: Child) -> Result<()> {
    let output = child.wait_with_output()?;
    if !output.status.success() {
        bail!(
            "ejabberdctl {what}: {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// When run as root, the temp dir is handed to the ejabberd user.
fn hand_over(dir: &Path) -> Result<()> {
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(());
    }
    let status = Command::new("chown")
        .args(["-R", &format!("{EJABBERD_USER}:{EJABBERD_USER}")])
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("chown {}: {status}", dir.display());
    }
    Ok(())
}

/// Sends `signal` (`-TERM`) to `target` (a pid, or a process group as `-PGID`).
fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status();
}

async fn wait_for_ports(server: &Ejabberd, ports: &[u16]) -> Result<()> {
    for _ in 0..600 {
        let open = ports
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
        if open {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("ejabberd did not open its ports:\n{}", server.log())
}

async fn wait_until_started(server: &Ejabberd) -> Result<()> {
    for _ in 0..60 {
        let status = server.spawn_ctl(&["status"])?.wait_with_output()?;
        if status.status.success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("ejabberd did not start:\n{}", server.log())
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("logs/ejabberd.log")).unwrap_or_default()
}
