//! XEP-0202 Entity Time of the server (always UTC).

use std::time::SystemTime;

use async_trait::async_trait;
use corvid_proto::{Iq, ns};
use corvid_xml::Element;

use crate::module::{Ctx, IqResult, Module};

pub struct EntityTime;

#[async_trait]
impl Module for EntityTime {
    fn name(&self) -> &'static str {
        "time"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::TIME]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::TIME]
    }

    async fn handle_iq(&self, _ctx: &Ctx, iq: Iq) -> IqResult {
        crate::module::server_get(&iq)?;
        Ok(Some(
            Element::new("time", ns::TIME)
                .with_child(Element::new("tzo", ns::TIME).with_text("+00:00"))
                .with_child(
                    Element::new("utc", ns::TIME)
                        .with_text(corvid_proto::time::format_datetime(SystemTime::now())),
                ),
        ))
    }
}
