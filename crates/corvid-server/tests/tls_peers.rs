//! Independent TLS stacks against a real server: OpenSSL's `s_client` and GnuTLS's
//! `gnutls-cli`, as separate processes over loopback, on direct TLS (XEP-0368, ALPN
//! `xmpp-client`) and STARTTLS. Each TLS 1.3 suite completes the handshake and gets the
//! server's answers to XMPP traffic, also after client KeyUpdates (both kinds), and the
//! streams close with close_notify. A TLS 1.2 renegotiation attempt is refused.
//!
//! The tools are Debian's `openssl` and `gnutls-bin` (scripts/test.sh installs them).

mod common;

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use common::{TestServer, start_server};

/// How long a tool may take to show what a step expects before the test fails.
const WAIT: Duration = Duration::from_secs(10);

const HEADER: &str = "<?xml version='1.0'?><stream:stream to='localhost' xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>";
/// A request the server answers before authentication, as often as asked: the in-band
/// registration form (XEP-0077 §3.1), with the id `r<n>`.
fn probe(n: usize) -> String {
    format!("<iq type='get' id='r{n}'><query xmlns='jabber:iq:register'/></iq>")
}

fn answer(n: usize) -> String {
    format!("id='r{n}'")
}
const SUITES: [(&str, &str); 3] = [
    ("TLS_AES_128_GCM_SHA256", "AES-128-GCM"),
    ("TLS_AES_256_GCM_SHA384", "AES-256-GCM"),
    ("TLS_CHACHA20_POLY1305_SHA256", "CHACHA20-POLY1305"),
];

/// A TLS tool run as a child process: what we type, and everything it printed.
struct Tool {
    child: Child,
    stdin: Option<ChildStdin>,
    output: mpsc::UnboundedReceiver<Vec<u8>>,
    seen: String,
}

impl Tool {
    fn spawn(program: &str, args: &[String]) -> Result<Tool> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("{program} is needed (apt-get install openssl gnutls-bin)"))?;
        let (tx, output) = mpsc::unbounded_channel();
        for mut stream in [
            Box::new(child.stdout.take().context("stdout")?)
                as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().context("stderr")?),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            });
        }
        Ok(Tool {
            stdin: child.stdin.take(),
            child,
            output,
            seen: String::new(),
        })
    }

    /// The end of the output, for failure messages.
    fn tail(&self) -> &str {
        let mut start = self.seen.len().saturating_sub(3000);
        while !self.seen.is_char_boundary(start) {
            start += 1;
        }
        &self.seen[start..]
    }

    async fn type_line(&mut self, line: &str) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        let written = async {
            stdin.write_all(format!("{line}\n").as_bytes()).await?;
            stdin.flush().await
        };
        written
            .await
            .with_context(|| format!("typing {line:?} after:\n{}", self.tail()))
    }

    /// Waits until the output holds `text` `count` times in all.
    async fn wait_for(&mut self, text: &str, count: usize) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.seen.matches(text).count() < count {
            match tokio::time::timeout_at(deadline, self.output.recv()).await {
                Ok(Some(chunk)) => self.seen.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => bail!(
                    "the tool ended before showing {text:?} x{count}:\n{}",
                    self.tail()
                ),
                Err(_) => bail!("no {text:?} x{count} from the tool:\n{}", self.tail()),
            }
        }
        Ok(())
    }

    /// Closes our input and waits for the tool to end; returns all it printed.
    async fn finish(mut self) -> Result<String> {
        self.stdin = None;
        let status = tokio::time::timeout(WAIT, self.child.wait()).await??;
        while let Ok(Some(chunk)) =
            tokio::time::timeout(Duration::from_millis(200), self.output.recv()).await
        {
            self.seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        if !status.success() {
            bail!("the tool failed ({status}):\n{}", self.seen);
        }
        Ok(self.seen)
    }
}

fn s_client(ts: &TestServer, starttls: bool, extra: &[&str]) -> Result<Tool> {
    let addr = if starttls { ts.c2s_addr } else { ts.tls_addr };
    let mut args: Vec<String> = vec!["s_client".into(), "-connect".into(), addr.to_string()];
    if starttls {
        args.extend(["-starttls", "xmpp", "-xmpphost", "localhost"].map(String::from));
    } else {
        args.extend(["-alpn", "xmpp-client", "-servername", "localhost"].map(String::from));
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    Tool::spawn("openssl", &args)
}

fn gnutls_cli(ts: &TestServer, starttls: bool, cipher: &str) -> Result<Tool> {
    let addr = if starttls { ts.c2s_addr } else { ts.tls_addr };
    let mut args: Vec<String> = vec![
        "--insecure".into(),
        "--inline-commands".into(),
        format!("--priority=NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+{cipher}"),
        "--port".into(),
        addr.port().to_string(),
    ];
    if starttls {
        args.push("--starttls-proto=xmpp".into());
    } else {
        args.push("--alpn=xmpp-client".into());
    }
    args.push("localhost".into());
    Tool::spawn("gnutls-cli", &args)
}

/// After the handshake: the stream opens, a probe is answered, then after each of
/// `key_updates` (the tool's command, and what the tool prints once it has sent the
/// KeyUpdate) another probe is answered; then the client closes the stream and the server
/// closes its own.
async fn converse(tool: &mut Tool, key_updates: &[(&str, &str)]) -> Result<()> {
    tool.type_line(HEADER).await?;
    tool.wait_for("<stream:features", 1).await?;
    tool.type_line(&probe(0)).await?;
    tool.wait_for(&answer(0), 1).await?;
    for (i, (command, done)) in key_updates.iter().enumerate() {
        tool.type_line(command).await?;
        // The tools read a command only alone in its read: wait until it is done.
        tool.wait_for(done, i + 1).await?;
        tool.type_line(&probe(i + 1)).await?;
        tool.wait_for(&answer(i + 1), 1).await?;
    }
    tool.type_line("</stream:stream>").await?;
    tool.wait_for("</stream:stream>", 1).await
}

/// s_client: "K" sends KeyUpdate(update_requested), "k" KeyUpdate(update_not_requested).
const OPENSSL_KEY_UPDATES: [(&str, &str); 2] = [("K", "KEYUPDATE"), ("k", "KEYUPDATE")];
/// gnutls-cli: "^rekey1^" asks the server to update too, "^rekey^" updates its own side.
const GNUTLS_KEY_UPDATES: [(&str, &str); 2] = [
    ("^rekey1^", "Rekey was completed"),
    ("^rekey^", "Rekey was completed"),
];

#[tokio::test]
async fn openssl_direct_tls_every_suite_with_key_updates() -> Result<()> {
    let ts = start_server().await?;
    for (suite, _) in SUITES {
        let mut tool = s_client(&ts, false, &["-tls1_3", "-ciphersuites", suite])?;
        tool.wait_for(&format!("Cipher is {suite}"), 1).await?;
        converse(&mut tool, &OPENSSL_KEY_UPDATES).await?;
        let seen = tool.finish().await?;
        assert!(seen.contains("ALPN protocol: xmpp-client"), "{seen}");
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn openssl_starttls_every_suite_with_key_updates() -> Result<()> {
    let ts = start_server().await?;
    for (suite, _) in SUITES {
        let mut tool = s_client(&ts, true, &["-tls1_3", "-ciphersuites", suite])?;
        tool.wait_for(&format!("Cipher is {suite}"), 1).await?;
        converse(&mut tool, &OPENSSL_KEY_UPDATES).await?;
        tool.finish().await?;
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn gnutls_direct_tls_every_suite_with_key_updates_and_close_notify() -> Result<()> {
    let ts = start_server().await?;
    for (suite, cipher) in SUITES {
        let mut tool = gnutls_cli(&ts, false, cipher)?;
        tool.wait_for("Handshake was completed", 1).await?;
        assert!(tool.seen.contains(cipher), "{suite}: {}", tool.seen);
        converse(&mut tool, &GNUTLS_KEY_UPDATES).await?;
        // Our close_notify after the stream's end reaches GnuTLS as a clean close.
        tool.wait_for("Peer has closed the GnuTLS connection", 1)
            .await?;
        tool.finish().await?;
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn gnutls_starttls_every_suite_with_key_updates_and_close_notify() -> Result<()> {
    let ts = start_server().await?;
    for (_, cipher) in SUITES {
        let mut tool = gnutls_cli(&ts, true, cipher)?;
        tool.wait_for("Handshake was completed", 1).await?;
        assert!(tool.seen.contains(cipher), "{}", tool.seen);
        converse(&mut tool, &GNUTLS_KEY_UPDATES).await?;
        tool.wait_for("Peer has closed the GnuTLS connection", 1)
            .await?;
        tool.finish().await?;
    }
    ts.shutdown().await;
    Ok(())
}

/// XEP-0368: on the direct-TLS port a client offering ALPN must offer `xmpp-client`; rustls
/// refuses another with the no_application_protocol alert (RFC 7301 §3.2), sent by our
/// handshake loop before it gives up.
#[tokio::test]
async fn openssl_direct_tls_with_another_alpn_gets_an_alert() -> Result<()> {
    let ts = start_server().await?;
    let addr = ts.tls_addr.to_string();
    let args = ["s_client", "-connect", &addr, "-alpn", "h2"].map(String::from);
    let mut tool = Tool::spawn("openssl", &args)?;
    tool.wait_for("no application protocol", 1).await?;
    ts.shutdown().await;
    Ok(())
}

/// TLS 1.2 still works (with OpenSSL), and a renegotiation attempt ("R") is refused:
/// rustls answers the new ClientHello with a no_renegotiation alert.
#[tokio::test]
async fn openssl_tls12_works_and_renegotiation_is_refused() -> Result<()> {
    let ts = start_server().await?;
    let mut tool = s_client(&ts, false, &["-tls1_2"])?;
    tool.wait_for("Protocol  : TLSv1.2", 1).await?;
    tool.type_line(HEADER).await?;
    tool.wait_for("<stream:features", 1).await?;
    tool.type_line(&probe(0)).await?;
    tool.wait_for(&answer(0), 1).await?;
    tool.type_line("R").await?;
    tool.wait_for("RENEGOTIATING", 1).await?;
    tool.wait_for("no renegotiation", 1).await?;
    ts.shutdown().await;
    Ok(())
}
