//! Logging one session in (RFC 6120): TCP, STARTTLS or direct TLS, optional in-band
//! registration (XEP-0077), SASL (SCRAM or PLAIN), stream restart, resource binding and
//! the legacy session IQ where a server still requires it.

use corvid_proto::ns;
use corvid_proto::sasl::{Mechanism, ScramClient};
use corvid_xml::{Element, StreamEvent};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use crate::cli::{MechanismChoice, TlsMode};
use crate::shared::Shared;
use corvid_client::transport::{Conn, Io, ReadError};

/// Where a login failed and why, short enough to count by kind.
#[derive(Debug)]
pub struct LoginError {
    pub stage: &'static str,
    pub detail: String,
}

impl LoginError {
    fn new(stage: &'static str, detail: impl ToString) -> Self {
        LoginError {
            stage,
            detail: detail.to_string(),
        }
    }

    /// The key errors are counted under.
    pub fn kind(&self) -> String {
        format!("login/{}: {}", self.stage, self.detail)
    }
}

/// What a login achieved besides the connection.
pub struct LoggedIn {
    pub conn: Conn,
    pub mechanism: &'static str,
}

/// Logs session `index` in; the connection is established and bound on success.
pub async fn login(shared: &Shared, index: u32) -> Result<LoggedIn, LoginError> {
    let (mut conn, features) = connect_secure(shared, index).await?;
    if shared.login.register {
        register(shared, &mut conn, index).await?;
    }
    let mechanism = authenticate(shared, &mut conn, &features, index).await?;
    conn.reset_parser();
    let features = open_stream(&mut conn, &shared.accounts.domain).await?;
    bind(&mut conn, &shared.accounts.resource).await?;
    // RFC 3921 session establishment, only where it is not marked optional.
    if features
        .get_child("session", ns::SESSION)
        .is_some_and(|s| !s.has_child("optional", ns::SESSION))
    {
        let iq = format!(
            "<iq type='set' id='sess'><session xmlns='{}'/></iq>",
            ns::SESSION
        );
        conn.send(iq.as_bytes())
            .await
            .map_err(|e| LoginError::new("session", e.kind()))?;
        expect_iq_result(&mut conn, "sess", "session").await?;
    }
    Ok(LoggedIn { conn, mechanism })
}

/// Only creates account `index` (XEP-0077), then closes the stream.
pub async fn register_only(shared: &Shared, index: u32) -> Result<(), LoginError> {
    let (mut conn, _) = connect_secure(shared, index).await?;
    register(shared, &mut conn, index).await?;
    let _ = conn.send(b"</stream:stream>").await;
    Ok(())
}

/// Connects and opens the stream, with TLS as configured; returns the stream features
/// offered for authentication.
async fn connect_secure(shared: &Shared, index: u32) -> Result<(Conn, Element), LoginError> {
    let settings = &shared.login;
    let domain = shared.accounts.domain.as_str();
    let target = settings.target(index);
    let tcp = TcpStream::connect(target)
        .await
        .map_err(|e| LoginError::new("connect", e.kind()))?;
    let _ = tcp.set_nodelay(true);
    let mut io = match settings.tls {
        TlsMode::Direct => Io::Tls(Box::new(tls_handshake(shared, tcp).await?)),
        TlsMode::Starttls | TlsMode::None => Io::Plain(tcp),
    };
    if let Some(path) = &settings.websocket {
        let scheme = if matches!(io, Io::Tls(_)) {
            "wss"
        } else {
            "ws"
        };
        let url = format!("{scheme}://{target}{path}");
        io = corvid_client::transport::websocket::connect(&url, io)
            .await
            .map_err(|e| LoginError::new("websocket", e))?;
    }
    let mut conn = Conn::new(io);
    let mut features = open_stream(&mut conn, domain).await?;
    if settings.tls == TlsMode::Starttls {
        starttls(shared, &mut conn, &features).await?;
        features = open_stream(&mut conn, domain).await?;
    }
    Ok((conn, features))
}

async fn tls_handshake(
    shared: &Shared,
    tcp: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, LoginError> {
    let connector = shared
        .login
        .connector
        .as_ref()
        .ok_or_else(|| LoginError::new("tls", "no TLS connector"))?;
    let name = ServerName::try_from(shared.accounts.domain.clone())
        .map_err(|_| LoginError::new("tls", "domain is not a valid server name"))?;
    connector
        .connect(name, tcp)
        .await
        .map_err(|e| LoginError::new("tls", e))
}

/// Sends our stream header and returns the server's `<stream:features/>`.
async fn open_stream(conn: &mut Conn, domain: &str) -> Result<Element, LoginError> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xml:lang='en' xmlns='{}' xmlns:stream='{}'>",
        ns::CLIENT,
        ns::STREAM
    );
    conn.send(header.as_bytes())
        .await
        .map_err(|e| LoginError::new("stream", e.kind()))?;
    match conn.next_event().await {
        Ok(StreamEvent::Open(_)) => {}
        Ok(other) => {
            return Err(LoginError::new(
                "stream",
                format!("expected a stream header, got {other:?}"),
            ));
        }
        Err(e) => return Err(read_error("stream", e)),
    }
    let features = next_element(conn, "stream").await?;
    if !features.is("features", ns::STREAM) {
        return Err(LoginError::new(
            "stream",
            format!("expected features, got <{}>", features.name()),
        ));
    }
    Ok(features)
}

async fn starttls(shared: &Shared, conn: &mut Conn, features: &Element) -> Result<(), LoginError> {
    if !features.has_child("starttls", ns::TLS) {
        return Err(LoginError::new("starttls", "not offered"));
    }
    let request = format!("<starttls xmlns='{}'/>", ns::TLS);
    conn.send(request.as_bytes())
        .await
        .map_err(|e| LoginError::new("starttls", e.kind()))?;
    let answer = next_element(conn, "starttls").await?;
    if !answer.is("proceed", ns::TLS) {
        return Err(LoginError::new("starttls", format!("<{}>", answer.name())));
    }
    let Io::Plain(tcp) = std::mem::replace(&mut conn.io, Io::Gone) else {
        return Err(LoginError::new("starttls", "TLS is already on"));
    };
    conn.io = Io::Tls(Box::new(tls_handshake(shared, tcp).await?));
    // RFC 6120 §5.4.3.3: nothing from before the handshake carries over.
    conn.discard_buffered();
    conn.reset_parser();
    Ok(())
}

/// XEP-0077 §3.1 registration; an existing account (`conflict`) is fine.
async fn register(shared: &Shared, conn: &mut Conn, index: u32) -> Result<(), LoginError> {
    let iq = format!(
        "<iq type='set' id='reg'><query xmlns='{}'><username>{}</username><password>{}</password></query></iq>",
        ns::REGISTER,
        shared.accounts.username(index),
        shared.accounts.password
    );
    conn.send(iq.as_bytes())
        .await
        .map_err(|e| LoginError::new("register", e.kind()))?;
    let reply = wait_for_iq(conn, "reg", "register").await?;
    let counters = &shared.stats.counters;
    match reply.attr("type") {
        Some("result") => {
            counters
                .registered
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        _ if stanza_error_condition(&reply) == "conflict" => {
            counters
                .register_existing
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Ok(())
        }
        _ => Err(LoginError::new("register", stanza_error_condition(&reply))),
    }
}

enum Sasl {
    /// SCRAM-SHA-1 or SCRAM-SHA-256, without channel binding.
    Scram(Mechanism),
    Plain,
}

fn choose_mechanism(offered: &[String], choice: MechanismChoice) -> Option<Sasl> {
    let has = |name: &str| offered.iter().any(|m| m == name);
    match choice {
        MechanismChoice::Auto if has("SCRAM-SHA-256") => Some(Sasl::Scram(Mechanism::ScramSha256)),
        MechanismChoice::Auto if has("SCRAM-SHA-1") => Some(Sasl::Scram(Mechanism::ScramSha1)),
        MechanismChoice::Auto if has("PLAIN") => Some(Sasl::Plain),
        MechanismChoice::ScramSha256 if has("SCRAM-SHA-256") => {
            Some(Sasl::Scram(Mechanism::ScramSha256))
        }
        MechanismChoice::ScramSha1 if has("SCRAM-SHA-1") => Some(Sasl::Scram(Mechanism::ScramSha1)),
        MechanismChoice::Plain if has("PLAIN") => Some(Sasl::Plain),
        _ => None,
    }
}

async fn authenticate(
    shared: &Shared,
    conn: &mut Conn,
    features: &Element,
    index: u32,
) -> Result<&'static str, LoginError> {
    let offered: Vec<String> = features
        .get_child("mechanisms", ns::SASL)
        .map(|m| {
            m.children()
                .filter(|c| c.is("mechanism", ns::SASL))
                .map(|c| c.text().trim().to_owned())
                .collect()
        })
        .unwrap_or_default();
    let username = shared.accounts.username(index);
    let password = &shared.accounts.password;
    match choose_mechanism(&offered, shared.login.mechanism) {
        None => Err(LoginError::new(
            "auth",
            format!("no usable mechanism in {offered:?}"),
        )),
        Some(Sasl::Plain) => {
            let data = corvid_proto::sasl::encode_plain(None, &username, password);
            send_sasl(conn, "auth mechanism='PLAIN'", &data).await?;
            let answer = next_element(conn, "auth").await?;
            sasl_outcome(&answer)?;
            Ok("PLAIN")
        }
        Some(Sasl::Scram(mechanism)) => {
            let mut scram = ScramClient::new(mechanism, &username, password, None);
            let name = mechanism.name();
            send_sasl(
                conn,
                &format!("auth mechanism='{name}'"),
                &scram.client_first(),
            )
            .await?;
            let challenge = expect_challenge(conn).await?;
            let auth_error =
                |e: &dyn std::fmt::Display| LoginError::new("auth", format!("SCRAM: {e}"));
            let params = scram
                .read_server_first(&challenge)
                .map_err(|e| auth_error(&e))?;
            // PBKDF2 once per (password, salt, iterations), not once per login.
            let salted = shared
                .cache
                .salted_password(password, &params)
                .await
                .map_err(|e| auth_error(&e))?;
            let response = scram.client_final(&salted).map_err(|e| auth_error(&e))?;
            send_sasl(conn, "response", &response).await?;
            let mut answer = next_element(conn, "auth").await?;
            if answer.is("challenge", ns::SASL) {
                // RFC 6120 §6.3.10 allows server-final as a last challenge.
                scram
                    .verify_server_final(&sasl_data(&answer)?)
                    .map_err(|e| auth_error(&e))?;
                send_sasl(conn, "response", &[]).await?;
                answer = next_element(conn, "auth").await?;
                sasl_outcome(&answer)?;
            } else {
                sasl_outcome(&answer)?;
                let data = sasl_data(&answer)?;
                if !data.is_empty() {
                    scram
                        .verify_server_final(&data)
                        .map_err(|e| auth_error(&e))?;
                }
            }
            Ok(name)
        }
    }
}

async fn send_sasl(conn: &mut Conn, open_tag: &str, data: &[u8]) -> Result<(), LoginError> {
    conn.send(corvid_client::login::sasl_xml(open_tag, data).as_bytes())
        .await
        .map_err(|e| LoginError::new("auth", e.kind()))
}

async fn expect_challenge(conn: &mut Conn) -> Result<Vec<u8>, LoginError> {
    let el = next_element(conn, "auth").await?;
    if el.is("challenge", ns::SASL) {
        return sasl_data(&el);
    }
    sasl_outcome(&el)?;
    Err(LoginError::new(
        "auth",
        format!("expected a challenge, got <{}>", el.name()),
    ))
}

fn sasl_outcome(el: &Element) -> Result<(), LoginError> {
    if el.is("success", ns::SASL) {
        return Ok(());
    }
    if el.is("failure", ns::SASL) {
        let condition = el
            .first_child()
            .map(|c| c.name().to_owned())
            .unwrap_or_else(|| "failure".into());
        return Err(LoginError::new("auth", condition));
    }
    Err(LoginError::new(
        "auth",
        format!("unexpected <{}>", el.name()),
    ))
}

fn sasl_data(el: &Element) -> Result<Vec<u8>, LoginError> {
    corvid_client::login::sasl_payload(el)
        .ok_or_else(|| LoginError::new("auth", "bad base64 from server"))
}

async fn bind(conn: &mut Conn, resource: &str) -> Result<(), LoginError> {
    let iq = format!(
        "<iq type='set' id='bind'><bind xmlns='{}'><resource>{resource}</resource></bind></iq>",
        ns::BIND
    );
    conn.send(iq.as_bytes())
        .await
        .map_err(|e| LoginError::new("bind", e.kind()))?;
    expect_iq_result(conn, "bind", "bind").await
}

async fn expect_iq_result(
    conn: &mut Conn,
    id: &str,
    stage: &'static str,
) -> Result<(), LoginError> {
    let reply = wait_for_iq(conn, id, stage).await?;
    if reply.attr("type") == Some("result") {
        Ok(())
    } else {
        Err(LoginError::new(stage, stanza_error_condition(&reply)))
    }
}

/// Skips stanzas until the IQ reply with `id`.
async fn wait_for_iq(
    conn: &mut Conn,
    id: &str,
    stage: &'static str,
) -> Result<Element, LoginError> {
    loop {
        let el = next_element(conn, stage).await?;
        if el.is("iq", ns::CLIENT) && el.attr("id") == Some(id) {
            return Ok(el);
        }
    }
}

/// The next top-level element; a stream error or close is a failure of `stage`.
async fn next_element(conn: &mut Conn, stage: &'static str) -> Result<Element, LoginError> {
    match conn.next_event().await {
        Ok(StreamEvent::Stanza(el)) if el.is("error", ns::STREAM) => Err(LoginError::new(
            stage,
            format!("stream error {}", stream_error_condition(&el)),
        )),
        Ok(StreamEvent::Stanza(el)) => Ok(el),
        Ok(StreamEvent::Close) => Err(LoginError::new(stage, "stream closed by server")),
        Ok(StreamEvent::Open(_)) => Err(LoginError::new(stage, "unexpected stream header")),
        Err(e) => Err(read_error(stage, e)),
    }
}

fn read_error(stage: &'static str, e: ReadError) -> LoginError {
    match e {
        ReadError::Io(e) => LoginError::new(stage, e.kind()),
        other => LoginError::new(stage, other),
    }
}

pub use corvid_client::error::{stanza_error_condition, stream_error_condition};

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn auto_prefers_scram_sha_256() {
        let all = offered(&[
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN",
        ]);
        assert!(matches!(
            choose_mechanism(&all, MechanismChoice::Auto),
            Some(Sasl::Scram(Mechanism::ScramSha256))
        ));
        let prosody = offered(&["SCRAM-SHA-1", "PLAIN"]);
        assert!(matches!(
            choose_mechanism(&prosody, MechanismChoice::Auto),
            Some(Sasl::Scram(Mechanism::ScramSha1))
        ));
        assert!(matches!(
            choose_mechanism(&offered(&["PLAIN"]), MechanismChoice::Auto),
            Some(Sasl::Plain)
        ));
        assert!(choose_mechanism(&prosody, MechanismChoice::ScramSha256).is_none());
        assert!(choose_mechanism(&offered(&[]), MechanismChoice::Auto).is_none());
    }

    #[test]
    fn error_conditions_are_read() {
        let iq = corvid_xml::parse_element(
            "<iq type='error' id='reg'><error type='cancel'><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/><text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>taken</text></error></iq>",
            ns::CLIENT,
        );
        assert_eq!(stanza_error_condition(&iq.unwrap()), "conflict");
    }
}
