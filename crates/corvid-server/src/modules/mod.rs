//! The modules, one per XEP. Adding a XEP adds a file here and one line in `all`.

pub mod blocking;
pub mod bookmarks;
pub mod caps;
pub mod carbons;
pub mod disco;
pub mod extdisco;
pub mod last;
pub mod mam;
pub mod muc;
pub mod offline;
pub mod ping;
pub mod presence;
pub mod private;
pub mod pubsub;
pub mod push;
pub mod register;
pub mod roster;
pub mod stanza_id;
pub mod subscription;
pub mod subscriptions;
pub mod time;
pub mod upload;
pub mod vcard;
pub mod version;

use std::sync::Arc;

use crate::config::Config;
use crate::module::Module;

/// In hook order: blocking filters first; vCard and caps see presence before it is broadcast,
/// and PEP right after caps (the presence module ends a client's own presence's journey);
/// last activity sees an explicit unavailable before presence handles it; MUC comes after
/// presence, whose unavailable at logout is what usually takes a session out of its rooms.
/// The archive comes after the stanza id (the recipient's copy is archived under the id the
/// recipient sees) and carbons, and before offline storage takes undeliverable messages.
fn all(config: &Config) -> Vec<Arc<dyn Module>> {
    vec![
        Arc::new(blocking::Blocking::default()),
        Arc::new(disco::Disco),
        Arc::new(roster::Roster),
        Arc::new(vcard::VCard::default()),
        Arc::new(caps::Caps::default()),
        Arc::new(pubsub::pep::Pep::default()),
        Arc::new(last::Last),
        Arc::new(subscriptions::Subscriptions),
        Arc::new(presence::Presence),
        Arc::new(stanza_id::StanzaId),
        Arc::new(carbons::Carbons),
        Arc::new(mam::Mam::default()),
        Arc::new(offline::Offline::default()),
        Arc::new(push::Push::default()),
        Arc::new(private::Private),
        Arc::new(bookmarks::Bookmarks),
        Arc::new(ping::Ping),
        Arc::new(version::Version),
        Arc::new(time::EntityTime),
        Arc::new(extdisco::ExtDisco::new(config)),
        Arc::new(register::Register),
        Arc::new(muc::Muc::default()),
        Arc::new(pubsub::PubSubService),
        Arc::new(upload::Upload),
    ]
}

/// The modules the config leaves enabled.
pub fn enabled(config: &Config) -> Vec<Arc<dyn Module>> {
    all(config)
        .into_iter()
        .filter(|m| !config.modules.disabled.iter().any(|d| d == m.name()))
        .collect()
}
