//! XML namespace names, in one place so no module spells one differently.

pub const CLIENT: &str = "jabber:client";
pub const SERVER: &str = "jabber:server";
pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const STREAM_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const STANZA_ERRORS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0440: SASL channel-binding type capability.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
pub const PING: &str = "urn:xmpp:ping";
pub const VERSION: &str = "jabber:iq:version";
pub const TIME: &str = "urn:xmpp:time";
pub const REGISTER: &str = "jabber:iq:register";
pub const REGISTER_FEATURE: &str = "http://jabber.org/features/iq-register";
pub const DATA_FORMS: &str = "jabber:x:data";
pub const DELAY: &str = "urn:xmpp:delay";
pub const ROSTER: &str = "jabber:iq:roster";
/// RFC 6121 §2.6.1 roster versioning stream feature.
pub const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
/// RFC 6121 §3.4 subscription pre-approval stream feature.
pub const PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
pub const STANZA_ID: &str = "urn:xmpp:sid:0";
pub const VCARD: &str = "vcard-temp";
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";
pub const CARBONS: &str = "urn:xmpp:carbons:2";
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0313 message archive management, and its `#extended` feature (before-id, after-id,
/// ids, flip-page, metadata).
pub const MAM: &str = "urn:xmpp:mam:2";
pub const MAM_EXTENDED: &str = "urn:xmpp:mam:2#extended";
/// XEP-0184 message delivery receipts.
pub const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 chat markers.
pub const CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0384 OMEMO encryption: the legacy (Conversations) namespace and the current one.
pub const OMEMO_LEGACY: &str = "eu.siacs.conversations.axolotl";
pub const OMEMO: &str = "urn:xmpp:omemo:2";
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0198 stream management.
pub const SM: &str = "urn:xmpp:sm:3";
/// XEP-0357 push notifications, and the summary form they carry.
pub const PUSH: &str = "urn:xmpp:push:0";
pub const PUSH_SUMMARY: &str = "urn:xmpp:push:summary";
/// XEP-0352 client state indication.
pub const CSI: &str = "urn:xmpp:csi:0";
pub const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub const BLOCKING: &str = "urn:xmpp:blocking";
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
pub const PRIVATE: &str = "jabber:iq:private";
pub const LAST: &str = "jabber:iq:last";
pub const CAPS: &str = "http://jabber.org/protocol/caps";
pub const OFFLINE: &str = "msgoffline";
/// XEP-0045 multi-user chat.
pub const MUC: &str = "http://jabber.org/protocol/muc";
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
pub const MUC_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
pub const MUC_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
/// XEP-0249 direct MUC invitations.
pub const MUC_DIRECT_INVITE: &str = "jabber:x:conference";
/// XEP-0421 occupant identifiers.
pub const OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";

// XEP-0060 publish-subscribe and what builds on it.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
pub const PUBSUB_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
pub const PUBSUB_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
pub const PUBSUB_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
pub const PUBSUB_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";
pub const PUBSUB_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
pub const PUBSUB_SUBSCRIBE_OPTIONS: &str = "http://jabber.org/protocol/pubsub#subscribe_options";
pub const PUBSUB_META_DATA: &str = "http://jabber.org/protocol/pubsub#meta-data";
/// XEP-0059 result set management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0131 stanza headers (the SubID of a notification).
pub const SHIM: &str = "http://jabber.org/protocol/shim";
/// XEP-0084 user avatars.
pub const AVATAR_DATA: &str = "urn:xmpp:avatar:data";
pub const AVATAR_METADATA: &str = "urn:xmpp:avatar:metadata";
/// XEP-0402 PEP native bookmarks, and the XEP-0048 storage they replace.
pub const BOOKMARKS: &str = "urn:xmpp:bookmarks:1";
pub const BOOKMARKS_COMPAT: &str = "urn:xmpp:bookmarks:1#compat";
pub const BOOKMARKS_LEGACY: &str = "storage:bookmarks";
/// XEP-0363 HTTP file upload.
pub const HTTP_UPLOAD: &str = "urn:xmpp:http:upload:0";
/// XEP-0215 external service discovery.
pub const EXTDISCO: &str = "urn:xmpp:extdisco:2";
