//! The client side of stream features and SASL (RFC 6120 §6): what the server offers,
//! SCRAM (with and without channel binding) and PLAIN, and the restart after success.

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::ns;
use corvid_proto::sasl::{Mechanism, ScramClient, encode_plain};
use corvid_xml::Element;

use super::client::Client;
use super::tls::CbType;

/// Result of a SASL exchange.
#[derive(Debug, PartialEq, Eq)]
pub enum Sasl {
    Success,
    /// `<failure/>` with this condition.
    Failure(String),
}

impl Client {
    // --- features ------------------------------------------------------------------------

    /// The SASL mechanisms offered in the last features.
    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.get_child("mechanisms", ns::SASL))
            .map(|m| {
                m.children()
                    .filter(|c| c.is("mechanism", ns::SASL))
                    .map(|c| c.text())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The channel binding types of XEP-0440 in the last features.
    pub fn channel_binding_types(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.get_child("sasl-channel-binding", ns::SASL_CB))
            .map(|cb| {
                cb.children()
                    .filter_map(|c| c.attr("type").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has_feature(&self, name: &str, namespace: &str) -> bool {
        self.features
            .as_ref()
            .is_some_and(|f| f.has_child(name, namespace))
    }

    // --- SASL ----------------------------------------------------------------------------

    fn sasl_element(name: &str, mechanism: Option<&str>, data: &[u8]) -> String {
        let payload = if data.is_empty() {
            "=".to_string()
        } else {
            B64.encode(data)
        };
        match mechanism {
            Some(m) => format!(
                "<{name} xmlns='{}' mechanism='{m}'>{payload}</{name}>",
                ns::SASL
            ),
            None => format!("<{name} xmlns='{}'>{payload}</{name}>", ns::SASL),
        }
    }

    fn sasl_failure(el: &Element) -> Result<Option<String>> {
        if el.is("failure", ns::SASL) {
            let cond = el
                .children()
                .find(|c| c.ns() == ns::SASL && c.name() != "text")
                .map(|c| c.name().to_string())
                .ok_or_else(|| anyhow!("<failure/> without a condition: {el}"))?;
            return Ok(Some(cond));
        }
        Ok(None)
    }

    /// A SCRAM exchange with this client's `binding` (`None`: the `n` flag; for a non-PLUS
    /// mechanism `Some` means the `y` flag). Checks the server's signature on success.
    pub async fn sasl_scram(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
        binding: Option<(String, Vec<u8>)>,
    ) -> Result<Sasl> {
        let mut scram = ScramClient::new(mechanism, user, password, binding);
        let first = scram.client_first();
        self.send_raw(Client::sasl_element("auth", Some(mechanism.name()), &first))
            .await?;
        let reply = self.recv().await?;
        if let Some(cond) = Client::sasl_failure(&reply)? {
            return Ok(Sasl::Failure(cond));
        }
        ensure!(
            reply.is("challenge", ns::SASL),
            "expected a SCRAM challenge, got {reply}"
        );
        let server_first = B64
            .decode(reply.text().trim())
            .context("challenge is not base64")?;
        let client_final = scram
            .handle_server_first(&server_first)
            .map_err(|e| anyhow!("server-first-message rejected by the client: {e}"))?;
        self.send_raw(Client::sasl_element("response", None, &client_final))
            .await?;
        let reply = self.recv().await?;
        if let Some(cond) = Client::sasl_failure(&reply)? {
            return Ok(Sasl::Failure(cond));
        }
        ensure!(
            reply.is("success", ns::SASL),
            "expected <success/>, got {reply}"
        );
        let server_final = B64
            .decode(reply.text().trim())
            .context("success data is not base64")?;
        scram
            .verify_server_final(&server_final)
            .map_err(|e| anyhow!("the server did not prove it knows the credentials: {e}"))?;
        Ok(Sasl::Success)
    }

    /// A PLAIN exchange with the credentials as initial response.
    pub async fn sasl_plain(&mut self, user: &str, password: &str) -> Result<Sasl> {
        let msg = encode_plain(None, user, password);
        self.send_raw(Client::sasl_element("auth", Some("PLAIN"), &msg))
            .await?;
        let reply = self.recv().await?;
        if let Some(cond) = Client::sasl_failure(&reply)? {
            return Ok(Sasl::Failure(cond));
        }
        ensure!(
            reply.is("success", ns::SASL),
            "expected <success/>, got {reply}"
        );
        Ok(Sasl::Success)
    }

    /// After `<success/>`: restart the stream and expect the bind feature.
    async fn restart_after_auth(&mut self) -> Result<()> {
        self.reset_parser();
        self.open_stream().await?;
        ensure!(
            self.has_feature("bind", ns::BIND),
            "no bind feature after authentication: {:?}",
            self.features
        );
        Ok(())
    }

    /// SCRAM with channel binding type `cb` for -PLUS mechanisms (ignored otherwise), then
    /// the stream restart.
    pub async fn auth_scram(
        &mut self,
        mechanism: Mechanism,
        user: &str,
        password: &str,
        cb: Option<CbType>,
    ) -> Result<()> {
        let binding = match cb {
            Some(cb) if mechanism.is_plus() => Some(self.channel_binding(cb)?),
            _ => None,
        };
        match self.sasl_scram(mechanism, user, password, binding).await? {
            Sasl::Success => self.restart_after_auth().await,
            Sasl::Failure(cond) => bail!("{} failed with <{cond}/>", mechanism.name()),
        }
    }

    /// PLAIN, then the stream restart.
    pub async fn auth_plain(&mut self, user: &str, password: &str) -> Result<()> {
        match self.sasl_plain(user, password).await? {
            Sasl::Success => self.restart_after_auth().await,
            Sasl::Failure(cond) => bail!("PLAIN failed with <{cond}/>"),
        }
    }

    /// SCRAM-SHA-256-PLUS with tls-exporter, then bind.
    pub async fn login(
        &mut self,
        user: &str,
        password: &str,
        resource: Option<&str>,
    ) -> Result<String> {
        self.auth_scram(
            Mechanism::ScramSha256Plus,
            user,
            password,
            Some(CbType::TlsExporter),
        )
        .await?;
        self.bind(resource).await
    }
}
