//! SASL authentication on the c2s stream (RFC 6120 §6): mechanism offer, the exchange of
//! `<auth/>`, `<challenge/>`, `<response/>`, and `<success/>` or `<failure/>`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::sasl::{self, ChannelBindings, Mechanism, SaslError, ScramServer};
use corvid_proto::{BareJid, StreamError, StreamErrorCondition as Cond, ns};
use corvid_store::Users as _;
use corvid_xml::Element;

use super::session::{End, Phase, Session};

/// SASL progress on one stream, and the channel bindings its TLS layer offers. Boxed and
/// dropped once the client has authenticated: an established session needs none of it.
#[derive(Default)]
pub(crate) struct AuthState {
    exchange: Option<Exchange>,
    failures: u32,
    /// The mechanism of the current or last exchange, for the log.
    mechanism: Option<Mechanism>,
    /// Whether the last failure was of the credentials themselves (not of a mechanism the
    /// client could not use); only those count toward held-back logins.
    bad_credentials: bool,
    /// Why the last exchange failed, in words for the log, where the condition says little.
    reason: Option<&'static str>,
    /// The account named in the exchange, once known.
    account: Option<BareJid>,
    pub(super) bindings: ChannelBindings,
}

static NO_BINDINGS: ChannelBindings = ChannelBindings {
    tls_exporter: None,
    tls_server_end_point: None,
};

#[allow(clippy::enum_variant_names)] // the states of one exchange read best as what each awaits
enum Exchange {
    /// `<auth/>` came without an initial response; the client-first message comes next.
    AwaitingClientFirst(ScramServer),
    /// PLAIN without an initial response: the credentials come next.
    AwaitingPlain,
    /// We sent server-first for this user; the client-final message comes next.
    AwaitingClientFinal(ScramServer, BareJid),
}

impl Session {
    pub(super) fn auth_mut(&mut self) -> &mut AuthState {
        self.auth.get_or_insert_with(Default::default)
    }

    fn bindings(&self) -> &ChannelBindings {
        self.auth.as_ref().map_or(&NO_BINDINGS, |a| &a.bindings)
    }

    /// Mechanisms offered on this stream, strongest first.
    pub(super) fn mechanisms(&self) -> Vec<Mechanism> {
        let tls = self.transport.is_tls();
        if !tls && self.server.config.c2s.require_tls {
            return Vec::new();
        }
        let mut mechs = Vec::new();
        if self.bindings().tls_exporter.is_some() || self.bindings().tls_server_end_point.is_some()
        {
            mechs.extend([Mechanism::ScramSha256Plus, Mechanism::ScramSha1Plus]);
        }
        mechs.extend([Mechanism::ScramSha256, Mechanism::ScramSha1]);
        // RFC 6120 §13.8: PLAIN only where the password is protected by TLS.
        if tls {
            mechs.push(Mechanism::Plain);
        }
        mechs
    }

    pub(super) fn sasl_features(&self) -> Vec<Element> {
        let mechs = self.mechanisms();
        if mechs.is_empty() {
            return Vec::new();
        }
        let mut mechanisms = Element::new("mechanisms", ns::SASL);
        for m in &mechs {
            mechanisms.append_child(Element::new("mechanism", ns::SASL).with_text(m.name()));
        }
        let mut features = vec![mechanisms];
        // XEP-0440: say which channel-binding types the -PLUS mechanisms can use here.
        let types: Vec<&str> = [
            self.bindings()
                .tls_exporter
                .as_ref()
                .map(|_| "tls-exporter"),
            self.bindings()
                .tls_server_end_point
                .as_ref()
                .map(|_| "tls-server-end-point"),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !types.is_empty() && self.transport.is_tls() {
            let mut cb = Element::new("sasl-channel-binding", ns::SASL_CB);
            for t in types {
                cb.append_child(Element::new("channel-binding", ns::SASL_CB).with_attr("type", t));
            }
            features.push(cb);
        }
        features
    }

    pub(super) async fn on_sasl(&mut self, el: Element) -> Result<(), End> {
        let outcome = match el.name() {
            "auth" => self.sasl_auth(&el).await,
            "response" => self.sasl_response(&el).await,
            "abort" => {
                self.auth_mut().exchange = None;
                Err(SaslError::Aborted)
            }
            _ => {
                return Err(self
                    .fail(StreamError::with_text(
                        Cond::UnsupportedStanzaType,
                        "Expected <auth/>, <response/> or <abort/>",
                    ))
                    .await);
            }
        };
        match outcome {
            // An empty challenge is an empty element; "=" is only for empty responses/outcomes.
            Ok(Step::Challenge(data)) if data.is_empty() => self.sasl_send("challenge", None).await,
            Ok(Step::Challenge(data)) => self.sasl_send("challenge", Some(&data)).await,
            Ok(Step::Success { user, additional }) => {
                tracing::debug!(user = %user, "authenticated");
                self.server.auth_throttle.succeeded(user.as_str());
                self.auth = None;
                self.guard.leave_preauth();
                self.sasl_send("success", additional.as_deref()).await?;
                self.phase = Phase::Authenticated(user);
                self.restart_stream();
                Ok(())
            }
            Err(err) => Box::pin(self.sasl_failed(err)).await,
        }
    }

    /// Answers a failed exchange with `<failure/>`, counts and logs it, and ends the stream
    /// after too many (RFC 6120 §6.4.5), but never before the client could try every
    /// mechanism offered: clients step down through them (slixmpp tries -PLUS with a binding
    /// type we do not offer, then plain SCRAM with the `y` flag, then PLAIN).
    async fn sasl_failed(&mut self, err: SaslError) -> Result<(), End> {
        let offered = self.mechanisms().len() as u32;
        let key = self.guard.key();
        let state = self.auth_mut();
        state.exchange = None;
        if err != SaslError::Aborted {
            state.failures += 1;
        }
        let (failures, mechanism) = (state.failures, state.mechanism);
        let account = state.account.take();
        let bad_credentials = std::mem::take(&mut state.bad_credentials);
        let reason = state.reason.take();
        if bad_credentials {
            self.server
                .auth_throttle
                .failed(account.as_ref().map(|a| a.as_str()), key);
        }
        crate::throttle::DefenceCounters::bump(&self.server.connections.counters.auth_failures);
        tracing::info!(
            mechanism = mechanism.map(|m| m.name()),
            condition = err.condition(),
            reason = reason.unwrap_or(""),
            account = account.as_ref().map(|a| a.as_str()),
            failures,
            "authentication failed"
        );
        let failure =
            Element::new("failure", ns::SASL).with_child(Element::new(err.condition(), ns::SASL));
        self.send(&failure).await?;
        if failures >= self.server.config.limits.max_auth_failures.max(offered) {
            return Err(self
                .fail(StreamError::with_text(
                    Cond::PolicyViolation,
                    "Too many failed authentication attempts",
                ))
                .await);
        }
        Ok(())
    }

    async fn sasl_send(&mut self, name: &str, data: Option<&[u8]>) -> Result<(), End> {
        let mut el = Element::new(name, ns::SASL);
        match data {
            // RFC 6120 §6.4.2: an empty response is sent as "=".
            Some([]) => el.append_text("="),
            Some(data) => el.append_text(B64.encode(data)),
            None => {}
        }
        self.send(&el).await
    }

    async fn sasl_auth(&mut self, el: &Element) -> Result<Step, SaslError> {
        if self.auth_mut().exchange.is_some() {
            // A new <auth/> during an exchange aborts the old one (RFC 6120 §6.4.6 leaves
            // this open; starting over is what clients expect).
            self.auth_mut().exchange = None;
        }
        if !self.transport.is_tls() && self.server.config.c2s.require_tls {
            return Err(SaslError::EncryptionRequired);
        }
        let mechanism = el
            .attr("mechanism")
            .and_then(Mechanism::from_name)
            .ok_or(SaslError::InvalidMechanism)?;
        self.auth_mut().mechanism = Some(mechanism);
        if mechanism == Mechanism::Plain && !self.transport.is_tls() {
            // RFC 6120 §6.5.4: we support PLAIN, just not on an unprotected stream.
            return Err(SaslError::EncryptionRequired);
        }
        if !self.mechanisms().contains(&mechanism) {
            return Err(SaslError::InvalidMechanism);
        }
        let initial = decode_payload(el)?;
        match mechanism {
            Mechanism::Plain => match initial {
                Some(data) => self.plain(&data).await,
                // No initial response: ask for it with an empty challenge (RFC 4422 §5).
                None => {
                    self.auth_mut().exchange = Some(Exchange::AwaitingPlain);
                    Ok(Step::Challenge(Vec::new()))
                }
            },
            scram => {
                let plus_advertised = self.mechanisms().iter().any(|m| m.is_plus());
                let server = ScramServer::new(scram, self.bindings().clone(), plus_advertised);
                match initial {
                    Some(first) => self.scram_first(server, &first).await,
                    None => {
                        self.auth_mut().exchange = Some(Exchange::AwaitingClientFirst(server));
                        Ok(Step::Challenge(Vec::new()))
                    }
                }
            }
        }
    }

    async fn sasl_response(&mut self, el: &Element) -> Result<Step, SaslError> {
        let data = decode_payload(el)?.unwrap_or_default();
        match self.auth_mut().exchange.take() {
            None => Err(SaslError::MalformedRequest),
            Some(Exchange::AwaitingPlain) => self.plain(&data).await,
            Some(Exchange::AwaitingClientFirst(server)) => self.scram_first(server, &data).await,
            Some(Exchange::AwaitingClientFinal(mut server, user)) => {
                self.hold_back(&user).await;
                let server_final = server.client_final(&data).inspect_err(|_| {
                    let state = self.auth_mut();
                    state.bad_credentials = true;
                    state.reason = Some(
                        "the proof did not match: wrong password, unknown account, or other channel binding data",
                    );
                })?;
                Ok(Step::Success {
                    user,
                    additional: Some(server_final),
                })
            }
        }
    }

    async fn scram_first(
        &mut self,
        mut server: ScramServer,
        data: &[u8],
    ) -> Result<Step, SaslError> {
        let first = server.client_first(data).inspect_err(|e| {
            if *e == SaslError::NotAuthorized {
                // RFC 5802 §6: a channel binding type we do not offer here (tls-unique is
                // undefined on TLS 1.3), or the `y` flag although we offered -PLUS.
                self.auth_mut().reason =
                    Some("channel binding type not offered, or `y` flag while -PLUS was offered");
            }
        })?;
        let user = self.user_jid(&first.username, first.authzid.as_deref());
        let creds = match &user {
            Ok(user) => self.credentials(user).await?,
            Err(_) => None,
        };
        // An unknown or invalid user still gets a plausible server-first message, so the
        // exchange cannot be used to find out which accounts exist; it fails at the end.
        let server_first = server.server_first(creds.as_ref());
        let user = match user {
            Ok(user) => user,
            Err(SaslError::InvalidAuthzid) => return Err(SaslError::InvalidAuthzid),
            Err(_) => BareJid::new(&format!("invalid@{}", self.domain))
                .map_err(|_| SaslError::NotAuthorized)?,
        };
        self.auth_mut().account = Some(user.clone());
        self.auth_mut().exchange = Some(Exchange::AwaitingClientFinal(server, user));
        Ok(Step::Challenge(server_first))
    }

    async fn plain(&mut self, data: &[u8]) -> Result<Step, SaslError> {
        let plain = sasl::parse_plain(data)?;
        let user = self.user_jid(&plain.username, plain.authzid.as_deref())?;
        self.auth_mut().account = Some(user.clone());
        self.hold_back(&user).await;
        // An unknown account is checked against stand-in credentials, at the same cost as
        // a real one, so the time taken does not tell which accounts exist.
        let creds = match self.credentials(&user).await? {
            Some(creds) => creds,
            None => sasl::Credentials::unknown_user(&plain.username),
        };
        let password = plain.password;
        // PBKDF2 is deliberately slow: keep it off the async threads.
        let ok = tokio::task::spawn_blocking(move || creds.verify_password(&password))
            .await
            .map_err(|_| SaslError::TemporaryAuthFailure)?;
        if ok {
            Ok(Step::Success {
                user,
                additional: None,
            })
        } else {
            let state = self.auth_mut();
            state.bad_credentials = true;
            state.reason = Some("wrong password or unknown account");
            Err(SaslError::NotAuthorized)
        }
    }

    /// Holds an attempt back after repeated failures for its account or address
    /// (`auth_throttle.rs`), before the credentials are checked.
    async fn hold_back(&self, user: &BareJid) {
        let delay = self
            .server
            .auth_throttle
            .delay_for(user.as_str(), self.guard.key());
        if !delay.is_zero() {
            let counters = &self.server.connections.counters;
            self.server.connections.note(
                self.guard.key(),
                "authentication held back after repeated failures",
                &counters.auth_delayed,
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// The account a SASL username names on this stream's domain; the authzid, if any,
    /// must be that same account (we do not let one user act as another).
    fn user_jid(&self, username: &str, authzid: Option<&str>) -> Result<BareJid, SaslError> {
        if username.is_empty() || username.contains(['@', '/']) {
            return Err(SaslError::NotAuthorized);
        }
        let user = BareJid::new(&format!("{username}@{}", self.domain))
            .map_err(|_| SaslError::NotAuthorized)?;
        if let Some(authzid) = authzid.filter(|a| !a.is_empty()) {
            match BareJid::new(authzid) {
                Ok(z) if z == user => {}
                _ => return Err(SaslError::InvalidAuthzid),
            }
        }
        Ok(user)
    }

    async fn credentials(&self, user: &BareJid) -> Result<Option<sasl::Credentials>, SaslError> {
        let node = user.node().map(|n| n.as_str()).unwrap_or_default();
        let started = std::time::Instant::now();
        let found = self
            .server
            .store
            .credentials(node, user.domain().as_str())
            .await;
        self.server
            .metrics
            .store_credentials
            .observe(started.elapsed());
        found.map_err(|e| {
            tracing::warn!(error = %e, "credential lookup failed");
            SaslError::TemporaryAuthFailure
        })
    }
}

enum Step {
    Challenge(Vec<u8>),
    Success {
        user: BareJid,
        additional: Option<Vec<u8>>,
    },
}

/// The base64 text of an `<auth/>` or `<response/>`: `None` when absent, empty for "=".
fn decode_payload(el: &Element) -> Result<Option<Vec<u8>>, SaslError> {
    let text = el.text();
    let text = text.trim();
    match text {
        "" => Ok(None),
        "=" => Ok(Some(Vec::new())),
        _ => B64
            .decode(text)
            .map(Some)
            .map_err(|_| SaslError::IncorrectEncoding),
    }
}
