//! XEP-0092 Software Version of the server itself.

use async_trait::async_trait;
use corvid_proto::{Iq, ns};
use corvid_xml::Element;

use crate::module::{Ctx, IqResult, Module};

pub struct Version;

#[async_trait]
impl Module for Version {
    fn name(&self) -> &'static str {
        "version"
    }

    fn features(&self) -> &[&'static str] {
        &[ns::VERSION]
    }

    fn iq_namespaces(&self) -> &[&'static str] {
        &[ns::VERSION]
    }

    async fn handle_iq(&self, _ctx: &Ctx, iq: Iq) -> IqResult {
        crate::module::server_get(&iq)?;
        Ok(Some(
            Element::new("query", ns::VERSION)
                .with_child(Element::new("name", ns::VERSION).with_text("Corvid"))
                .with_child(
                    Element::new("version", ns::VERSION).with_text(env!("CARGO_PKG_VERSION")),
                )
                .with_child(Element::new("os", ns::VERSION).with_text(std::env::consts::OS)),
        ))
    }
}
