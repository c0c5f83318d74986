//! The modules, one per XEP. Adding a XEP adds a file here and one line in `all`.

pub mod blocking;
pub mod bookmarks;
pub mod caps;
pub mod carbons;
pub mod disco;
pub mod last;
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
pub mod vcard;
pub mod version;

use std::sync::Arc;

use crate::config::Config;
use crate::module::Module;

/// In hook order: blocking filters first; vCard and caps see presence before it is broadcast,
/// and PEP right after caps (the presence module ends a client's own presence's journey);
/// last activity sees an explicit unavailable before presence handles it; MUC comes after
/// presence, whose unavailable at logout is what usually takes a session out of its rooms.
fn all() -> Vec<Arc<dyn Module>> {
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
        Arc::new(offline::Offline::default()),
        Arc::new(push::Push::default()),
        Arc::new(private::Private),
        Arc::new(bookmarks::Bookmarks),
        Arc::new(ping::Ping),
        Arc::new(version::Version),
        Arc::new(time::EntityTime),
        Arc::new(register::Register),
        Arc::new(muc::Muc::default()),
        Arc::new(pubsub::PubSubService),
    ]
}

/// The modules the config leaves enabled.
pub fn enabled(config: &Config) -> Vec<Arc<dyn Module>> {
    all()
        .into_iter()
        .filter(|m| !config.modules.disabled.iter().any(|d| d == m.name()))
        .collect()
}
