//! XEP-0421 occupant identifiers: an opaque id per (room, real bare JID), the same across
//! nick changes, reconnects and restarts, so clients can tell occupants apart in a
//! semi-anonymous room without learning their real JIDs.
//!
//! The id is a keyed hash of the room and the user; the key is the service's secret,
//! kept in the data directory so the ids survive a restart.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use corvid_proto::{BareJid, ns};
use corvid_xml::Element;
use sha2::{Digest, Sha256};

pub type Secret = [u8; 32];

const SECRET_FILE: &str = "muc-occupant-id.secret";

/// The occupant id of `user` in `room` (XEP-0421 §4).
pub fn of(secret: &Secret, room: &BareJid, user: &BareJid) -> String {
    let mut hash = Sha256::new();
    hash.update(secret);
    hash.update(room.as_str().as_bytes());
    hash.update([0]);
    hash.update(user.as_str().as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.finalize()[..18])
}

/// The `<occupant-id/>` element.
pub fn element(id: &str) -> Element {
    Element::new("occupant-id", ns::OCCUPANT_ID).with_attr("id", id)
}

/// XEP-0421 §4: whatever a client put there itself must not pass.
pub fn strip(stanza: &mut Element) {
    stanza.remove_children(|c| c.is("occupant-id", ns::OCCUPANT_ID));
}

/// Reads the secret from the data directory, making it on first use. When the file
/// cannot be read or written, a secret for this run only (ids then change on restart).
pub async fn load_secret(data_dir: &Path) -> Secret {
    let path = data_dir.join(SECRET_FILE);
    let result = tokio::task::spawn_blocking(move || read_or_create(&path)).await;
    match result {
        Ok(Ok(secret)) => secret,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "muc: cannot keep the occupant-id secret; ids will change on restart");
            random_secret()
        }
        Err(_) => random_secret(),
    }
}

fn read_or_create(path: &PathBuf) -> std::io::Result<Secret> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut secret = [0u8; 32];
            secret.copy_from_slice(&bytes);
            return Ok(secret);
        }
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not 32 bytes",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret = random_secret();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(&secret)?;
    file.sync_all()?;
    Ok(secret)
}

fn random_secret() -> Secret {
    let mut secret = [0u8; 32];
    if getrandom::fill(&mut secret).is_err() {
        // No entropy source: still unique to this run, though guessable.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        secret[..16].copy_from_slice(&nanos.to_le_bytes());
    }
    secret
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_per_room_and_user_and_keyed() {
        let room: BareJid = "room@conf.x".parse().unwrap();
        let other_room: BareJid = "hall@conf.x".parse().unwrap();
        let (a, b): (BareJid, BareJid) = ("a@x".parse().unwrap(), "b@x".parse().unwrap());
        let secret = [7u8; 32];
        assert_eq!(of(&secret, &room, &a), of(&secret, &room, &a));
        assert_ne!(of(&secret, &room, &a), of(&secret, &room, &b));
        assert_ne!(of(&secret, &room, &a), of(&secret, &other_room, &a));
        assert_ne!(of(&secret, &room, &a), of(&[8u8; 32], &room, &a));
        assert!(!of(&secret, &room, &a).contains("a@x"));
    }

    #[tokio::test]
    async fn the_secret_is_kept_in_the_data_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_secret(dir.path()).await;
        assert_eq!(load_secret(dir.path()).await, first);
        assert_eq!(std::fs::read(dir.path().join(SECRET_FILE)).unwrap(), first);
    }
}
