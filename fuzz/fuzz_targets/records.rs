//! Fuzzes Corvid's TLS 1.3 record reader (corvid-server `c2s::records`): the input picks
//! how many well-formed records (sealed with a fixed AES-128-GCM key, random inner
//! plaintext: padding, content types, KeyUpdates, alerts) come first, then raw bytes
//! follow; the stream is read in pieces whose size the input also picks, as from a socket.
//! Whatever arrives, the reader must refuse or accept it without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    corvid_server::c2s::fuzz_record_stream(data);
});
