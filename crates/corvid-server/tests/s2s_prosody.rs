//! Federation with a real Prosody (the Debian package), started by each test on loopback
//! serving `p.test`, while Corvid serves `a.test`: chat both ways with Server Dialback
//! (self-signed certificates, Prosody's `s2s_secure_auth = false`) and with SASL EXTERNAL
//! (certificates from a test CA both trust, `s2s_secure_auth = true`); and both again over
//! direct TLS (XEP-0368) both ways, on Corvid's `direct_tls_listen` port and Prosody's
//! `s2s_direct_tls_ports`.
//!
//! Corvid finds Prosody through its `[s2s] hosts` map. Prosody has no such map, so the test
//! gives it a small plugin (`mod_s2s_test_hosts`, written into its temporary plugin
//! directory) that answers its lookups for `a.test` with Corvid's port: the
//! `_xmpp-server` one (STARTTLS), or the `_xmpps-server` one (direct TLS: Prosody then
//! connects with TLS at once). Nothing on the machine (DNS, /etc/hosts) is changed.

#[macro_use]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use common::TestServer;
use common::federation::{
    Identity, PASSWORD, Pki, chat, corvid, create, expect_message, online, self_signed,
};
use common::services::{Federated, Home};
use corvid_server::s2s::{AuthMethod, Connection, Direction, State};

const A: &str = "a.test";
const P: &str = "p.test";
const A_MUC: &str = "conference.a.test";
const A_PUBSUB: &str = "pubsub.a.test";
const P_MUC: &str = "conference.p.test";

const PLUGIN: &str = r#"-- Test only: s2s connections to the domains in s2s_test_hosts go to fixed addresses.
local service = require "net.resolvers.service";
local basic = require "net.resolvers.basic";
local manual = require "net.resolvers.manual";
local map = module:get_option("s2s_test_hosts", {});
local tls_map = module:get_option("s2s_test_direct_tls_hosts", {});
if not service.corvid_test_hosts then
	service.corvid_test_hosts = true;
	local original = service.new;
	service.new = function (hostname, name, conn_type, extra)
		if not (map[hostname] or tls_map[hostname]) then return original(hostname, name, conn_type, extra); end
		local target;
		if name == "xmpp-server" then target = map[hostname]; end
		if name == "xmpps-server" then target = tls_map[hostname]; end
		if target then return basic.new(target[1], target[2], conn_type, extra); end
		return manual.new({}, conn_type, extra);
	end
end
"#;

/// A Prosody process, stopped when dropped.
struct Prosody {
    child: Child,
    c2s_port: u16,
    s2s_port: u16,
    /// Prosody's direct TLS s2s port (XEP-0368).
    s2s_direct_tls_port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Prosody {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prosody {
    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prosody.log")).unwrap_or_default()
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where Prosody finds Corvid: its STARTTLS port, or its direct TLS one.
#[derive(Clone, Copy)]
enum CorvidAt {
    StartTls(u16),
    DirectTls(u16),
}

/// Starts Prosody for `p.test` with `identity`, sending `a.test` to `corvid`;
/// `secure`: certificates required and checked against `ca`.
async fn prosody(
    identity: &Identity,
    ca: Option<&Path>,
    secure: bool,
    corvid: CorvidAt,
) -> Result<Prosody> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().display().to_string();
    std::fs::create_dir(dir.path().join("data"))?;
    std::fs::create_dir(dir.path().join("plugins"))?;
    std::fs::write(dir.path().join("plugins/mod_s2s_test_hosts.lua"), PLUGIN)?;
    let (c2s_port, s2s_port, s2s_direct_tls_port) = (free_port()?, free_port()?, free_port()?);
    // Corvid's domain and its services' (each its own s2s connections), at one port.
    let (option, port) = match corvid {
        CorvidAt::StartTls(port) => ("s2s_test_hosts", port),
        CorvidAt::DirectTls(port) => ("s2s_test_direct_tls_hosts", port),
    };
    let entries: Vec<String> = [A, A_MUC, A_PUBSUB]
        .iter()
        .map(|domain| format!("[\"{domain}\"] = {{ \"127.0.0.1\", {port} }}"))
        .collect();
    let corvid_at = format!("{option} = {{ {} }}", entries.join(", "));
    let cafile = ca
        .map(|ca| format!("; cafile = \"{}\"", ca.display()))
        .unwrap_or_default();
    let config = format!(
        r#"run_as_root = true
pidfile = "{root}/prosody.pid"
data_path = "{root}/data"
plugin_paths = {{ "{root}/plugins" }}
log = {{ {{ levels = {{ min = "debug" }}, to = "file", filename = "{root}/prosody.log" }} }}
interfaces = {{ "127.0.0.1" }}
c2s_ports = {{ {c2s_port} }}
s2s_ports = {{ {s2s_port} }}
s2s_direct_tls_ports = {{ {s2s_direct_tls_port} }}
c2s_direct_tls_ports = {{ }}
modules_enabled = {{ "roster", "saslauth", "tls", "disco", "ping", "dialback", "pep", "vcard", "s2s_test_hosts" }}
authentication = "internal_hashed"
storage = "internal"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = {secure}
ssl = {{ certificate = "{cert}"; key = "{key}"{cafile} }}
{corvid_at}
VirtualHost "{P}"
Component "{P_MUC}" "muc"
"#,
        cert = identity.cert.display(),
        key = identity.key.display(),
    );
    let config_path = dir.path().join("prosody.cfg.lua");
    std::fs::write(&config_path, config)?;
    let status = Command::new("prosodyctl")
        .arg("--config")
        .arg(&config_path)
        .args(["register", "pat", P, PASSWORD])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("run prosodyctl (is the prosody package installed?)")?;
    ensure!(status.success(), "prosodyctl register: {status}");
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
        c2s_port,
        s2s_port,
        s2s_direct_tls_port,
        dir,
    };
    for _ in 0..200 {
        let up = [c2s_port, s2s_port, s2s_direct_tls_port]
            .iter()
            .all(|port| std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok());
        if up {
            return Ok(prosody);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("prosody did not open its ports")
}

/// Corvid for a.test (with a direct TLS port too), sending p.test to Prosody.
async fn corvid_for(identity: &Identity, ca: Option<&Path>) -> Result<TestServer> {
    let ts = corvid(A, identity, ca, |c| {
        c.s2s.direct_tls_listen = vec![std::net::SocketAddr::from(([127, 0, 0, 1], 0))];
    })
    .await?;
    create(&ts, "alice@a.test").await?;
    Ok(ts)
}

async fn chat_with_prosody(corvid: &TestServer, prosody: &Prosody) -> Result<()> {
    let (alice, mut alice_events) = online("alice@a.test", corvid.c2s_addr.port()).await?;
    let (pat, mut pat_events) = online("pat@p.test", prosody.c2s_port).await?;
    alice.send(&chat("pat@p.test/r", "hello prosody")).await?;
    let got = expect_message(&mut pat_events, "hello prosody")
        .await
        .with_context(|| format!("prosody's log:\n{}", prosody.log()))?;
    ensure!(got.attr("from") == Some("alice@a.test/r"), "{got}");
    pat.send(&chat("alice@a.test", "hello corvid")).await?;
    let got = expect_message(&mut alice_events, "hello corvid")
        .await
        .with_context(|| format!("prosody's log:\n{}", prosody.log()))?;
    ensure!(got.attr("from") == Some("pat@p.test/r"), "{got}");
    alice.disconnect().await;
    pat.disconnect().await;
    Ok(())
}

fn with_prosody(corvid: &TestServer, direction: Direction) -> Option<Connection> {
    corvid
        .server
        .s2s
        .connections()
        .into_iter()
        .find(|c| c.direction == direction && c.remote == P && c.state == State::Established)
}

fn auth_with_prosody(corvid: &TestServer, direction: Direction) -> Option<AuthMethod> {
    with_prosody(corvid, direction).and_then(|c| c.auth)
}

#[tokio::test]
async fn chat_with_prosody_over_dialback() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let corvid = corvid_for(&self_signed(dir.path(), A)?, None).await?;
    let corvid_port = corvid.s2s_addr.context("no s2s port")?.port();
    let corvid_at = CorvidAt::StartTls(corvid_port);
    let prosody = prosody(&self_signed(dir.path(), P)?, None, false, corvid_at).await?;
    corvid
        .server
        .s2s
        .resolver
        .map_host(P, "127.0.0.1", prosody.s2s_port);
    chat_with_prosody(&corvid, &prosody).await?;
    ensure!(auth_with_prosody(&corvid, Direction::Outgoing) == Some(AuthMethod::Dialback));
    ensure!(auth_with_prosody(&corvid, Direction::Incoming) == Some(AuthMethod::Dialback));
    Ok(())
}

#[tokio::test]
async fn chat_with_prosody_over_sasl_external_with_trusted_certificates() -> Result<()> {
    let pki = Pki::new()?;
    let corvid = corvid_for(&pki.issue(A)?, Some(&pki.ca_file)).await?;
    let corvid_port = corvid.s2s_addr.context("no s2s port")?.port();
    let corvid_at = CorvidAt::StartTls(corvid_port);
    let prosody = prosody(&pki.issue(P)?, Some(&pki.ca_file), true, corvid_at).await?;
    corvid
        .server
        .s2s
        .resolver
        .map_host(P, "127.0.0.1", prosody.s2s_port);
    chat_with_prosody(&corvid, &prosody).await?;
    let outgoing = auth_with_prosody(&corvid, Direction::Outgoing);
    let incoming = auth_with_prosody(&corvid, Direction::Incoming);
    ensure!(
        outgoing == Some(AuthMethod::SaslExternal) && incoming == Some(AuthMethod::SaslExternal),
        "outgoing {outgoing:?}, incoming {incoming:?}; prosody's log:\n{}",
        prosody.log()
    );
    Ok(())
}

/// Both of Corvid's connections with Prosody are direct TLS, authenticated with `auth`.
fn direct_tls_with_prosody(corvid: &TestServer, prosody: &Prosody, auth: AuthMethod) -> Result<()> {
    for direction in [Direction::Outgoing, Direction::Incoming] {
        let connection = with_prosody(corvid, direction);
        ensure!(
            connection
                .as_ref()
                .is_some_and(|c| c.direct_tls && c.auth == Some(auth)),
            "{direction:?}: {connection:?}; prosody's log:\n{}",
            prosody.log()
        );
    }
    Ok(())
}

#[tokio::test]
async fn chat_with_prosody_over_direct_tls_with_dialback() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let corvid = corvid_for(&self_signed(dir.path(), A)?, None).await?;
    let corvid_port = corvid
        .s2s_direct_tls_addr
        .context("no direct TLS port")?
        .port();
    let corvid_at = CorvidAt::DirectTls(corvid_port);
    let prosody = prosody(&self_signed(dir.path(), P)?, None, false, corvid_at).await?;
    corvid
        .server
        .s2s
        .resolver
        .map_host_direct_tls(P, "127.0.0.1", prosody.s2s_direct_tls_port);
    chat_with_prosody(&corvid, &prosody).await?;
    direct_tls_with_prosody(&corvid, &prosody, AuthMethod::Dialback)
}

#[tokio::test]
async fn chat_with_prosody_over_direct_tls_with_sasl_external() -> Result<()> {
    let pki = Pki::new()?;
    let corvid = corvid_for(&pki.issue(A)?, Some(&pki.ca_file)).await?;
    let corvid_port = corvid
        .s2s_direct_tls_addr
        .context("no direct TLS port")?
        .port();
    let corvid_at = CorvidAt::DirectTls(corvid_port);
    let prosody = prosody(&pki.issue(P)?, Some(&pki.ca_file), true, corvid_at).await?;
    corvid
        .server
        .s2s
        .resolver
        .map_host_direct_tls(P, "127.0.0.1", prosody.s2s_direct_tls_port);
    chat_with_prosody(&corvid, &prosody).await?;
    direct_tls_with_prosody(&corvid, &prosody, AuthMethod::SaslExternal)
}

/// Corvid (a.test, with alice) and Prosody (p.test with its MUC service, with pat),
/// federating over STARTTLS: with certificates from a CA both trust (SASL EXTERNAL), or
/// self-signed ones (dialback).
struct WithProsody {
    corvid: TestServer,
    prosody: Prosody,
    _pki: Option<Pki>,
    _dir: tempfile::TempDir,
}

impl WithProsody {
    async fn start(trusted: bool) -> Result<WithProsody> {
        let dir = tempfile::tempdir()?;
        let pki = trusted.then(Pki::new).transpose()?;
        let (corvid, prosody) = match &pki {
            Some(pki) => {
                let corvid = corvid_for(&pki.issue(A)?, Some(&pki.ca_file)).await?;
                let at = CorvidAt::StartTls(corvid.s2s_addr.context("no s2s port")?.port());
                let prosody = prosody(&pki.issue(P)?, Some(&pki.ca_file), true, at).await?;
                (corvid, prosody)
            }
            None => {
                let corvid = corvid_for(&self_signed(dir.path(), A)?, None).await?;
                let at = CorvidAt::StartTls(corvid.s2s_addr.context("no s2s port")?.port());
                let prosody = prosody(&self_signed(dir.path(), P)?, None, false, at).await?;
                (corvid, prosody)
            }
        };
        for domain in [P, P_MUC] {
            corvid
                .server
                .s2s
                .resolver
                .map_host(domain, "127.0.0.1", prosody.s2s_port);
        }
        Ok(WithProsody {
            corvid,
            prosody,
            _pki: pki,
            _dir: dir,
        })
    }
}

impl Federated for WithProsody {
    fn corvid_home(&self) -> Home {
        Home::new(A, self.corvid.c2s_addr.port())
    }

    fn foreign_home(&self) -> Home {
        Home::new(P, self.prosody.c2s_port)
    }

    fn foreign_user(&self) -> &'static str {
        "pat"
    }

    fn explain(&self, outcome: Result<()>) -> Result<()> {
        outcome.with_context(|| format!("prosody's log:\n{}", self.prosody.log()))
    }
}

cross_server_scenarios!(WithProsody::start);
