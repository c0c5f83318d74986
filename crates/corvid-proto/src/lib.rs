//! What Corvid's client and server share: JIDs, namespaces, stanza helpers, stream and
//! stanza errors, and SASL (both sides).

pub mod bare;
pub mod error;
pub mod forms;
pub mod ns;
pub mod rsm;
pub mod sasl;
pub mod stanza;
pub mod time;

pub use bare::{Bare, same_bare};
pub use error::{ErrorType, StanzaError, StreamError, StreamErrorCondition};
pub use jid::{BareJid, FullJid, Jid};
pub use stanza::{Iq, IqType, MessageType, StanzaKind};
