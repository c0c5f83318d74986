//! `[limits]`: what one client, one address or the whole server may cost, with safe
//! defaults that do not lock out honest users (many share one address behind NAT).

use serde::Deserialize;

/// What to do with a session whose outgoing queue is full.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumerPolicy {
    /// Close it with `policy-violation` (its unsent stanzas are lost to it, as on any disconnect).
    #[default]
    Close,
    /// Drop the stanza for it and keep the session.
    Drop,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest stanza accepted, in bytes (checked while parsing).
    pub max_stanza_bytes: usize,
    /// Deepest element nesting inside a stanza.
    pub max_depth: usize,
    /// Not-yet-authenticated connections one address (IPv4 address, IPv6 /64) may hold;
    /// when a newer one arrives, the least recently active of them is closed to make room
    /// (nobody is refused for their address alone: many users can share one).
    pub max_unauthenticated_per_ip: u32,
    /// Not-yet-authenticated connections in all; past it, the least recently active one of
    /// the address holding the most is closed to make room.
    pub max_unauthenticated: u32,
    /// Simultaneous connections in all (past it, an idle unauthenticated connection is
    /// closed to make room, or the newcomer is refused with `resource-constraint`).
    pub max_connections: u32,
    /// Seconds a connection may take to authenticate.
    pub unauthenticated_timeout_secs: u64,
    /// Seconds an unauthenticated connection may stay silent before it is closed.
    pub unauthenticated_idle_secs: u64,
    /// TLS handshakes per second one address may start (sustained); more wait their turn,
    /// and an address that would wait over 10 s is refused.
    pub tls_handshakes_per_sec_per_ip: u32,
    /// Handshakes one address may start at once before the rate applies.
    pub tls_handshake_burst_per_ip: u32,
    /// In-band registrations (XEP-0077) per second from one address (sustained); more wait
    /// their turn, and past 10 s of waiting get `resource-constraint`.
    pub registrations_per_sec_per_ip: u32,
    /// Registrations one address may make at once before the rate applies.
    pub registration_burst_per_ip: u32,
    /// Failed authentications (per account, and per address) after which each further
    /// attempt is held back, 0.25 s doubling with each failure up to `auth_max_delay_secs`.
    pub auth_failures_before_delay: u32,
    /// The longest an authentication is held back after repeated failures.
    pub auth_max_delay_secs: u64,
    /// Sustained inbound bytes per second per session (token bucket); reading pauses beyond it.
    pub session_bytes_per_sec: u32,
    /// Burst size of that bucket, in bytes.
    pub session_burst_bytes: u32,
    /// Stanzas queued for one session before the slow-consumer policy applies.
    pub outgoing_queue: usize,
    /// Bytes queued for one session before the slow-consumer policy applies (a single
    /// stanza larger than this is still queued when nothing else is waiting).
    pub outgoing_queue_bytes: usize,
    pub slow_consumer: SlowConsumerPolicy,
    /// Seconds of client silence before the server pings it (XEP-0199); 0 disables.
    pub idle_ping_secs: u64,
    /// Seconds to wait for any data after that ping before closing the stream.
    pub ping_timeout_secs: u64,
    /// SASL failures before the stream is closed (RFC 6120 §6.4.5); never fewer than the
    /// number of mechanisms offered, so a client may step down through all of them.
    pub max_auth_failures: u32,
    /// XEP-0115 verification strings remembered (least recently used forgotten first).
    pub caps_cache_entries: usize,
    /// Bytes of features those entries may hold in all.
    pub caps_cache_bytes: usize,
    /// Features kept per verification string: a disco#info with more is not cached.
    pub caps_max_features: usize,
    /// Resources of remote contacts whose caps are followed (from the presence they send
    /// local users, for PEP notifications across the federation); beyond it, more are not.
    pub caps_remote_resources: usize,
    /// Distinct entities one resource may send directed presence to (RFC 6121 §4.6); an
    /// available presence to one more is refused with `policy-violation`.
    pub max_directed_presences: usize,
    /// Roster items per account (RFC 6121 §2.1.4): an add beyond it, by the user or by an
    /// incoming subscription request, is refused with `resource-constraint`.
    pub max_roster_items: usize,
    /// Bound resources per account (RFC 6120 §7.6.2.2): one more bind is refused with
    /// `resource-constraint`.
    pub max_resources_per_account: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_stanza_bytes: 256 * 1024,
            max_depth: 48,
            max_unauthenticated_per_ip: 128,
            max_unauthenticated: 8192,
            max_connections: 200_000,
            unauthenticated_timeout_secs: 60,
            unauthenticated_idle_secs: 20,
            tls_handshakes_per_sec_per_ip: 100,
            tls_handshake_burst_per_ip: 300,
            registrations_per_sec_per_ip: 50,
            registration_burst_per_ip: 200,
            auth_failures_before_delay: 5,
            auth_max_delay_secs: 8,
            session_bytes_per_sec: 256 * 1024,
            session_burst_bytes: 1024 * 1024,
            outgoing_queue: 2048,
            outgoing_queue_bytes: 4 * 1024 * 1024,
            slow_consumer: SlowConsumerPolicy::Close,
            idle_ping_secs: 300,
            ping_timeout_secs: 60,
            max_auth_failures: 3,
            caps_cache_entries: 10_000,
            caps_cache_bytes: 16 * 1024 * 1024,
            caps_max_features: 256,
            caps_remote_resources: 100_000,
            max_directed_presences: 1000,
            max_roster_items: 2000,
            max_resources_per_account: 100,
        }
    }
}
