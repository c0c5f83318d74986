//! The stream scenarios against a real ejabberd (the Debian package, 23.01), started by each
//! test on loopback with a configuration, database and certificate of its own: with Corvid
//! and Prosody, the SDK is shown to work with the three standard servers.
//!
//! Each test has its own ejabberd (about 2.5 s to start, under a second to stop: see
//! tests/shared/ejabberd_process.rs, which runs it). That is cheap enough for no test to
//! share a server, or to see another's accounts, rosters, archives, nodes or rooms.

#[macro_use]
mod common;
#[path = "../../../tests/shared/ejabberd_process.rs"]
mod ejabberd_process;

use std::path::Path;

use anyhow::Result;
use common::Target;
use corvid_client::Event;
use corvid_proto::sasl::Mechanism;
use ejabberd_process::{Ejabberd, Setup, free_port, short_lived};
use rustls::pki_types::CertificateDer;

/// A running ejabberd (stopped when dropped) and how the scenarios reach it.
struct Server {
    target: Target,
    _ejabberd: Ejabberd,
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

/// An ejabberd ready for the scenarios, with `juliet` and `romeo` on `localhost`, and a
/// self-signed certificate the scenarios pin.
async fn ejabberd() -> Result<Server> {
    let (ejabberd, target) = ejabberd_process::start(|dir| {
        let key = rcgen::KeyPair::generate()?;
        let cert = short_lived(&["localhost"])?.self_signed(&key)?;
        std::fs::write(dir.join("combined.pem"), cert.pem() + &key.serialize_pem())?;
        let (starttls_port, direct_tls_port) = (free_port()?, free_port()?);
        let setup = Setup {
            config: config(dir, starttls_port, direct_tls_port),
            inetrc: String::new(),
            ports: vec![starttls_port, direct_tls_port],
            accounts: ["juliet", "romeo"]
                .map(|user| (user.to_owned(), "localhost".to_owned()))
                .into(),
            password: common::PASSWORD.to_owned(),
        };
        let target = Target {
            server: common::Server::Ejabberd,
            starttls_port,
            direct_tls_port,
            cert: CertificateDer::from(cert.der().to_vec()),
        };
        Ok((setup, target))
    })
    .await?;
    Ok(Server {
        target,
        _ejabberd: ejabberd,
    })
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
