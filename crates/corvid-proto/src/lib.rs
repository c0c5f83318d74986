//! What Corvid's client and server share: JIDs, namespaces, stanza helpers, stream and
//! stanza errors, and SASL (both sides).

pub mod sasl;

pub use jid::{BareJid, FullJid, Jid};
