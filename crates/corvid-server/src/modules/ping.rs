//! XEP-0199 XMPP Ping: the server answers pings to itself and, on their behalf, to its
//! accounts' bare JIDs. (The server pinging idle clients lives in the c2s session.)

use async_trait::async_trait;
use corvid_proto::{Iq, ns};

use crate::module::{Ctx, IqResult, Module};

pub struct Ping;

#[async_trait]
impl Module for Ping {
    fn name(&self) -> &'static str {
        "ping"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::PING]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::PING]
    }

    async fn handle_iq(&self, _ctx: &Ctx, iq: Iq) -> IqResult {
        match (iq.kind, iq.payload.name()) {
            (corvid_proto::IqType::Get, "ping") => Ok(None),
            _ => Err(corvid_proto::StanzaError::bad_request()),
        }
    }
}
