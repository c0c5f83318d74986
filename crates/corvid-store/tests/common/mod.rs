//! Helpers shared by the integration tests: a store on a fresh temp directory, sample secrets.

#![allow(dead_code)] // each test binary uses a different subset

use corvid_proto::sasl::{Credentials, ScramKeys};
use corvid_store::SqlStore;
use tempfile::TempDir;

/// A store on `corvid.sqlite` in a new temp directory; keep the `TempDir` alive while using it.
pub async fn temp_store() -> (TempDir, SqlStore) {
    let dir = tempfile::tempdir().expect("create temp dir");
    let store = SqlStore::open_in_dir(dir.path()).await.expect("open store");
    (dir, store)
}

/// Distinct, recognisable credentials per `seed` (not real SCRAM output; the store is opaque).
pub fn creds(seed: u8) -> Credentials {
    Credentials {
        salt: vec![seed; 16],
        iterations: 4096 + u32::from(seed),
        sha1: ScramKeys {
            stored_key: vec![seed.wrapping_add(1); 20],
            server_key: vec![seed.wrapping_add(2); 20],
        },
        sha256: ScramKeys {
            stored_key: vec![seed.wrapping_add(3); 32],
            server_key: vec![seed.wrapping_add(4); 32],
        },
    }
}

pub fn pair(username: &str, domain: &str) -> (String, String) {
    (username.to_owned(), domain.to_owned())
}
