//! The stream scenarios against a real Prosody (the Debian package), started by each test
//! on loopback with a configuration and certificate of its own: the SDK works with a server
//! that is not ours.

#[macro_use]
mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use common::Target;
use corvid_client::Event;
use corvid_proto::sasl::Mechanism;
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;

/// A Prosody process, stopped when dropped.
struct Prosody {
    child: Child,
    target: Target,
    _dir: TempDir,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn prosodyctl(config: &Path, args: &[&str]) -> Result<()> {
    let status = Command::new("prosodyctl")
        .arg("--config")
        .arg(config)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run prosodyctl (is the prosody package installed?)")?;
    if !status.success() {
        bail!("prosodyctl {args:?}: {status}");
    }
    Ok(())
}

async fn prosody() -> Result<Prosody> {
    let dir = tempfile::tempdir()?;
    let path = dir.path();
    std::fs::create_dir(path.join("data"))?;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    std::fs::write(path.join("cert.pem"), generated.cert.pem())?;
    std::fs::write(path.join("key.pem"), generated.signing_key.serialize_pem())?;
    let (starttls_port, direct_tls_port) = (free_port()?, free_port()?);
    let root = path.display();
    let config = format!(
        r#"run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
certificates = "{root}"
log = {{ {{ levels = {{ min = "error" }}, to = "file", filename = "{root}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {starttls_port} }}
c2s_direct_tls_ports = {{ {direct_tls_port} }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "vcard", "carbons", "mam", "pep", "smacks" }}
modules_disabled = {{ "s2s" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
ssl = {{ certificate = "{root}/cert.pem"; key = "{root}/key.pem" }}
VirtualHost "localhost"
Component "conference.localhost" "muc"
modules_enabled = {{ "muc_mam" }}
Component "pubsub.localhost" "pubsub"
-- Only the service's admins may create nodes on a Prosody pubsub component.
admins = {{ "juliet@localhost" }}
"#
    );
    let config_path = path.join("prosody.cfg.lua");
    std::fs::write(&config_path, config)?;
    for user in ["juliet", "romeo"] {
        prosodyctl(
            &config_path,
            &["register", user, "localhost", common::PASSWORD],
        )?;
    }
    let child = Command::new("prosody")
        .arg("--config")
        .arg(&config_path)
        .arg("-F")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("start prosody")?;
    let prosody = Prosody {
        child,
        target: Target {
            server: common::Server::Prosody,
            starttls_port,
            direct_tls_port,
            cert: CertificateDer::from(generated.cert.der().to_vec()),
        },
        _dir: dir,
    };
    for _ in 0..200 {
        let both = [starttls_port, direct_tls_port]
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
        if both {
            return Ok(prosody);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("prosody did not open its ports")
}

/// Prosody 0.12 offers SCRAM-SHA-1 (and -PLUS only with tls-unique, which TLS 1.3 lacks).
#[tokio::test]
async fn starttls_login() -> Result<()> {
    let server = prosody().await?;
    let event = common::logs_in_with_starttls(&server.target).await?;
    assert!(
        matches!(
            event,
            Event::Authenticated {
                mechanism: Mechanism::ScramSha1,
                ..
            }
        ),
        "{event:?}"
    );
    Ok(())
}

#[tokio::test]
async fn untrusted_certificates_and_wrong_passwords_are_refused() -> Result<()> {
    let server = prosody().await?;
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
    let other = CertificateDer::from(other.cert.der().to_vec());
    common::refuses_an_untrusted_or_unpinned_certificate(&server.target, other).await?;
    common::refuses_a_wrong_password(&server.target).await?;
    Ok(())
}

/// Prosody 0.12 has no result set management for pubsub items (its `get_items` leaves
/// RSM as a to-do): a page request gets every item, which the SDK reports as unpaged.
#[tokio::test]
async fn pubsub_items_come_unpaged() -> Result<()> {
    let server = prosody().await?;
    let paged = common::pubsub::items_are_fetched_by_id_max_and_page(&server.target).await?;
    assert!(!paged, "Prosody 0.12 does not page pubsub items");
    Ok(())
}

every_scenario!(prosody, |server| drop(server));
scenarios!(prosody, |server| drop(server);
    direct_tls_login => logs_in_with_direct_tls,
    streams_end_on_conflict_and_on_disconnect => ends_streams,
);
