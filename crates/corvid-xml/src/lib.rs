//! XML stream framing for XMPP (placeholder, being written).
