//! XML for Corvid's XMPP streams.
//!
//! - [`StreamParser`] turns the bytes of an incoming stream into
//!   [`StreamEvent`]s (stream header, one [`Element`] per stanza, close),
//!   enforcing [`Limits`] while it parses and rejecting what RFC 6120 §11
//!   forbids.
//! - [`Element`] is the owned tree every stanza lives in, and serializes
//!   itself back to bytes ([`Element::write_to`]).
//! - [`XmlError`] says why a stream was rejected and which RFC 6120 stream
//!   error condition to answer with.

mod attr_name;
pub mod cut;
mod element;
mod error;
mod framer;
mod parse;
mod serialize;
mod utf8;

pub use element::{Element, Node};
pub use error::XmlError;
pub use framer::{Limits, StreamEvent, StreamHeader, StreamParser};
pub use parse::parse_element;
pub use serialize::{FanOut, escape};
