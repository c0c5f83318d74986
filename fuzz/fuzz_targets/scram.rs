//! Fuzzes the server side of a SCRAM exchange (RFC 5802) with a client's arbitrary
//! messages: the input is split at its first NUL into client-first and client-final, and
//! fed to a `ScramServer` of each mechanism, with and without -PLUS offered, for an account
//! that exists. It must never panic, and must never accept a client-final it could not
//! have checked (no success without a proof made from the password).
#![no_main]

use corvid_proto::sasl::{ChannelBindings, Credentials, Mechanism, ScramServer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (first, last) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let creds = Credentials::derive("pencil", b"QSXCR+Q6sek8bf92", 64);
    let bindings = ChannelBindings {
        tls_exporter: Some(vec![7; 32]),
        tls_server_end_point: Some(vec![9; 32]),
    };
    for mechanism in [
        Mechanism::ScramSha1,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256Plus,
    ] {
        for plus_advertised in [false, true] {
            let mut server = ScramServer::new(mechanism, bindings.clone(), plus_advertised);
            if server.client_first(first).is_err() {
                continue;
            }
            let _ = server.server_first(Some(&creds));
            // Without the random server nonce in it, no client-final can be right.
            assert!(server.client_final(last).is_err());
        }
    }
    let _ = corvid_proto::sasl::parse_plain(data);
});
