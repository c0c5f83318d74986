//! The stream scenarios against a real ejabberd (the Debian package, 23.01), started by each
//! test on loopback with a configuration, database and certificate of its own: with Corvid
//! and Prosody, the SDK is shown to work with the three standard servers.
//!
//! Each test has its own ejabberd. Its Erlang VM opens its ports in about a second here (2
//! cores), says it has started (`ejabberdctl status`) a moment later, and the two accounts
//! are made together in half a second more: about 2.5 s in all, and well under a second to
//! stop. That is cheap enough for no test to share a server, or to see another's accounts,
//! rosters, archives, nodes or rooms. The VM listens for `ejabberdctl` on a distribution
//! port of its own (`ERL_DIST_PORT`), so no epmd daemon is started, shared or left behind.

#[macro_use]
mod common;

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use common::Target;
use corvid_client::Event;
use corvid_proto::sasl::Mechanism;
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;

/// The system account the Debian package runs ejabberd as; `ejabberdctl` run by root
/// switches to it, so what the server reads and writes in the temp dir must be its own.
const EJABBERD_USER: &str = "ejabberd";

/// An ejabberd VM (and the `ejabberdctl` that started it, leading their process group),
/// stopped when dropped.
struct Ejabberd {
    child: Child,
    target: Target,
    /// The `--ctl-config`, `--node` and `--config` arguments `ejabberdctl` needs to reach
    /// this node.
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
        let log = log_of(self.dir.path());
        if !log.is_empty() {
            eprintln!("ejabberd's log:\n{log}");
        }
    }
}

/// Sends `signal` (`-TERM`) to `target` (a pid, or a process group as `-PGID`).
fn signal(signal: &str, target: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status();
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// ejabberd's configuration: the modules the scenarios use, on `localhost` with its MUC
/// and pubsub services, every store in mnesia under the temp dir.
fn config(root: &Path, starttls_port: u16, direct_tls_port: u16) -> String {
    let root = root.display();
    format!(
        r#"hosts: [localhost]
loglevel: warning
certfiles: ["{root}/combined.pem"]
listen:
  - port: {starttls_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
  - port: {direct_tls_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    tls: true
auth_method: internal
acl:
  local:
    user_regexp: ""
access_rules:
  local:
    allow: local
modules:
  mod_caps: {{}}
  mod_carboncopy: {{}}
  mod_disco: {{}}
  mod_mam:
    default: always
  mod_muc:
    host: conference.localhost
    access_create: local
    access_persistent: local
    # Rooms archive their messages (XEP-0313) unless configured otherwise.
    default_room_options:
      mam: true
  mod_offline: {{}}
  mod_ping: {{}}
  mod_private: {{}}
  mod_pubsub:
    host: pubsub.localhost
    access_createnode: local
    plugins: [flat, pep]
  mod_roster:
    versioning: true
  mod_stream_mgmt:
    resume_timeout: 300
  mod_vcard: {{}}
  mod_vcard_xupdate: {{}}
"#
    )
}

/// `ejabberdctl`'s own settings (Debian's /etc/ejabberd/ejabberdctl.cfg would point back at
/// the system's node): distribution on loopback, on a port of its own, without epmd.
fn ctl_config(dist_port: u16) -> String {
    format!(
        "ERL_OPTIONS=\"-kernel inet_dist_use_interface {{127,0,0,1}} -env ERL_CRASH_DUMP_BYTES 0\"\n\
         ERL_DIST_PORT={dist_port}\n"
    )
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

/// Runs `ejabberdctl` against the node.
fn ejabberdctl(server: &Ejabberd, args: &[&str]) -> Result<Child> {
    ejabberdctl_command(server.dir.path())?
        .args(&server.ctl)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run ejabberdctl (is the ejabberd package installed?)")
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

/// A self-signed certificate for `localhost`, valid for a few days only: ejabberd 23.01
/// arms a timer for each certificate's expiry, and crashes on one further away than an
/// Erlang timer reaches (2^32 ms, 49 days), such as rcgen's default of the year 4096.
fn certificate() -> Result<(rcgen::Certificate, rcgen::KeyPair)> {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(7 * 86400);
    let key = rcgen::KeyPair::generate()?;
    Ok((params.self_signed(&key)?, key))
}

/// An ejabberd ready for the scenarios. A start that fails (the VM stalled compiling its
/// configuration on a loaded machine) is tried once more, with a fresh directory: that is
/// the test's setup failing, not the behaviour under test.
async fn ejabberd() -> Result<Ejabberd> {
    match start_ejabberd().await {
        Ok(server) => Ok(server),
        Err(e) => {
            eprintln!("ejabberd did not start; once more: {e:#}");
            start_ejabberd().await
        }
    }
}

async fn start_ejabberd() -> Result<Ejabberd> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_owned();
    std::fs::create_dir(path.join("spool"))?;
    std::fs::create_dir(path.join("logs"))?;
    let (cert, key) = certificate()?;
    let combined = cert.pem() + &key.serialize_pem();
    std::fs::write(path.join("combined.pem"), combined)?;
    let (starttls_port, direct_tls_port, dist_port) = (free_port()?, free_port()?, free_port()?);
    std::fs::write(
        path.join("ejabberd.yml"),
        config(&path, starttls_port, direct_tls_port),
    )?;
    std::fs::write(path.join("ejabberdctl.cfg"), ctl_config(dist_port))?;
    hand_over(&path)?;

    let arg = |p: &str| -> String { path.join(p).display().to_string() };
    let ctl = vec![
        "--ctl-config".into(),
        arg("ejabberdctl.cfg"),
        "--config".into(),
        arg("ejabberd.yml"),
        "--node".into(),
        format!("corvidtest{starttls_port}@localhost"),
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
    let server = Ejabberd {
        child,
        target: Target {
            server: common::Server::Ejabberd,
            starttls_port,
            direct_tls_port,
            cert: CertificateDer::from(cert.der().to_vec()),
        },
        ctl,
        dir,
    };
    wait_for_ports(&server).await?;
    // The ports open before every module is up; accounts are made once ejabberd says it
    // has started (before, `register` can find its caches missing, or crash mnesia).
    wait_until_started(&server).await?;
    let registering = ["juliet", "romeo"]
        .map(|user| ejabberdctl(&server, &["register", user, "localhost", common::PASSWORD]));
    // Each waited for, before the first failure is told.
    let registered: Vec<Result<()>> = registering
        .into_iter()
        .map(|child| finish("register", child?))
        .collect();
    registered.into_iter().collect::<Result<()>>()?;
    eprintln!("ejabberd ready in {:?}", started.elapsed());
    Ok(server)
}

async fn wait_for_ports(server: &Ejabberd) -> Result<()> {
    let ports = [server.target.starttls_port, server.target.direct_tls_port];
    for _ in 0..600 {
        let open = ports
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
        if open {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = log_of(server.dir.path());
    bail!("ejabberd did not open its ports:\n{log}")
}

async fn wait_until_started(server: &Ejabberd) -> Result<()> {
    for _ in 0..60 {
        let status = ejabberdctl(server, &["status"])?.wait_with_output()?;
        if status.status.success() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = log_of(server.dir.path());
    bail!("ejabberd did not start:\n{log}")
}

fn log_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("logs/ejabberd.log")).unwrap_or_default()
}

/// ejabberd 23.01 offers SCRAM-SHA-256-PLUS under TLS 1.3 without naming its channel
/// binding types (XEP-0440), and binds to tls-unique, which TLS 1.3 lacks: the SDK's
/// tls-exporter attempt fails and it authenticates again, without binding.
#[tokio::test]
async fn starttls_login_falls_back_from_plus_to_scram_sha_256() -> Result<()> {
    let server = ejabberd().await?;
    let event = common::logs_in_with_starttls(&server.target).await?;
    assert!(
        matches!(
            event,
            Event::Authenticated {
                mechanism: Mechanism::ScramSha256,
                ..
            }
        ),
        "{event:?}"
    );
    Ok(())
}

#[tokio::test]
async fn untrusted_certificates_and_wrong_passwords_are_refused() -> Result<()> {
    let server = ejabberd().await?;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let other = CertificateDer::from(other.cert.der().to_vec());
    common::refuses_an_untrusted_or_unpinned_certificate(&server.target, other).await?;
    common::refuses_a_wrong_password(&server.target).await?;
    Ok(())
}

#[tokio::test]
async fn pubsub_items_come_in_pages() -> Result<()> {
    let server = ejabberd().await?;
    let paged = common::pubsub::items_are_fetched_by_id_max_and_page(&server.target).await?;
    assert!(paged, "ejabberd answers a page request with a page");
    Ok(())
}

every_scenario!(ejabberd, |server| drop(server));
scenarios!(ejabberd, |server| drop(server);
    direct_tls_login => logs_in_with_direct_tls,
    streams_end_on_conflict_and_on_disconnect => ends_streams,
);
