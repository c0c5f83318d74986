//! Where uploaded files live (XEP-0363), and the keys that guard them.
//!
//! `[upload] dir` holds one directory per account, named by a keyed hash of its JID (no
//! JID on disk or in URLs), and in it, per slot: `<slot>.json` (owner, file name, size,
//! content type, when given out, until when the PUT URL is good), written when the slot
//! is given out; `<slot>.part` while the PUT streams in; `<slot>.data` once complete.
//!
//! Why files beside the data rather than a table in the store: one directory listing tells
//! an account's usage with nothing to keep in step (a crash leaves at most stray files the
//! sweep removes), several nodes sharing the directory agree without talking, and the
//! expiry is a walk over the directory the files are in anyway.
//!
//! Every call here touches the disk; callers run them with `spawn_blocking`.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Config;

type HmacSha256 = Hmac<Sha256>;

/// How long a slot given out but never completed stays counted, past its PUT URL's
/// expiry, before the sweep removes it: an upload that started in time may still be
/// streaming.
pub const UNFINISHED_GRACE_SECS: u64 = 3600;

/// What is known of a slot, from the moment it is given out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotMeta {
    /// The bare JID it was given to.
    pub owner: String,
    pub filename: String,
    pub size: u64,
    /// As the slot request said; `None` when it said nothing (any type is then accepted).
    pub content_type: Option<String>,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the PUT URL is refused.
    pub put_until: u64,
}

/// A slot counted against its owner's quota, and when it stops counting (`None`: never).
#[derive(Clone, Copy, Debug)]
pub struct Held {
    pub size: u64,
    pub frees_at: Option<u64>,
}

/// The upload directory and the secret its URLs are signed with.
pub struct Files {
    dir: PathBuf,
    secret: [u8; 32],
    /// Slots are given out one at a time (and not during a sweep), so two requests at
    /// once cannot both take the room one account had left. Slot requests are rare; no
    /// message waits on this.
    pub(super) lock: tokio::sync::Mutex<()>,
}

impl Files {
    /// Creates the directory and reads (or makes, on first start) the secret kept in the
    /// data directory as `upload.secret`.
    pub fn open(config: &Config) -> io::Result<Files> {
        let dir = config
            .upload
            .dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("upload"));
        fs::create_dir_all(&dir)?;
        let secret = load_or_make_secret(&config.data_dir.join("upload.secret"))?;
        Ok(Files {
            dir,
            secret,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The directory name of an account: a keyed hash of its bare JID, 32 hex digits.
    pub fn user_key(&self, owner: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"user\0");
        mac.update(owner.as_bytes());
        hex(&mac.finalize().into_bytes()[..16])
    }

    /// The PUT URL's token: an HMAC over everything the slot allows.
    pub fn token(&self, user: &str, slot: &str, meta: &SlotMeta) -> String {
        hex(&self.token_mac(user, slot, meta).finalize().into_bytes())
    }

    /// Whether `token` is the one [`Files::token`] gives (compared in constant time).
    pub fn verify_token(&self, user: &str, slot: &str, meta: &SlotMeta, token: &str) -> bool {
        match unhex(token) {
            Some(bytes) => self
                .token_mac(user, slot, meta)
                .verify_slice(&bytes)
                .is_ok(),
            None => false,
        }
    }

    fn token_mac(&self, user: &str, slot: &str, meta: &SlotMeta) -> HmacSha256 {
        let mut mac = self.mac();
        for part in [
            "put",
            user,
            slot,
            &meta.filename,
            &meta.size.to_string(),
            meta.content_type.as_deref().unwrap_or(""),
            &meta.put_until.to_string(),
        ] {
            // Lengths first, so that no two different field lists sign the same bytes.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length")
    }

    /// A slot's file with this extension (`json`, `part`, `data`). `user` and `slot` must
    /// have passed [`valid_id`].
    pub fn path(&self, user: &str, slot: &str, ext: &str) -> PathBuf {
        self.dir.join(user).join(format!("{slot}.{ext}"))
    }

    pub fn user_dir(&self, user: &str) -> PathBuf {
        self.dir.join(user)
    }
}

/// Whether an id from a URL is one of ours (32 lowercase hex digits): nothing else may
/// become part of a path.
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A new slot id: 128 random bits.
pub fn new_slot_id() -> String {
    hex(&crate::random_bytes::<16>())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Reads a slot's metadata.
pub fn read_meta(path: &Path) -> io::Result<SlotMeta> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Writes a slot's metadata (under a temporary name first, so that no reader ever sees
/// half of it).
pub fn write_meta(dir: &Path, slot: &str, meta: &SlotMeta) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{slot}.json.tmp"));
    let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
    fs::write(&tmp, json)?;
    fs::rename(&tmp, dir.join(format!("{slot}.json")))
}

/// What an account's directory holds against its quota at `now`: every complete file,
/// and every slot whose PUT URL is still good.
pub fn held(user_dir: &Path, now: u64, expire_after: u64) -> io::Result<Vec<Held>> {
    let entries = match fs::read_dir(user_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut held = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|ext| ext != "json") {
            continue;
        }
        let Ok(meta) = read_meta(&path) else { continue };
        if path.with_extension("data").exists() {
            let frees_at = (expire_after > 0).then(|| meta.created.saturating_add(expire_after));
            held.push(Held {
                size: meta.size,
                frees_at,
            });
        } else if meta.put_until >= now {
            held.push(Held {
                size: meta.size,
                frees_at: Some(meta.put_until),
            });
        }
    }
    Ok(held)
}

/// When an account holding `held` may have room for `size` more bytes within `quota`:
/// `Ok(())` now, else `Err` with the time enough of it frees up (`None`: never).
pub fn room_for(held: &[Held], size: u64, quota: u64) -> Result<(), Option<u64>> {
    let used: u64 = held.iter().map(|h| h.size).sum();
    if quota == 0 || used.saturating_add(size) <= quota {
        return Ok(());
    }
    let mut freeing: Vec<(u64, u64)> = held
        .iter()
        .filter_map(|h| h.frees_at.map(|at| (at, h.size)))
        .collect();
    freeing.sort_unstable();
    let mut still_used = used;
    for (at, bytes) in freeing {
        still_used -= bytes;
        if still_used.saturating_add(size) <= quota {
            return Err(Some(at));
        }
    }
    Err(None)
}

/// What a sweep removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub files: usize,
    pub unfinished: usize,
}

/// Removes expired files, slots never completed in time, and strays (a file without its
/// metadata, left by a crash); then empty account directories.
pub fn sweep(dir: &Path, now: u64, expire_after: u64) -> io::Result<Swept> {
    let mut swept = Swept::default();
    for user in fs::read_dir(dir)? {
        let user = user?.path();
        if !user.is_dir() {
            continue;
        }
        for entry in fs::read_dir(&user)? {
            let path = entry?.path();
            sweep_one(&path, now, expire_after, &mut swept);
        }
        // Fails, as it should, unless the directory is empty.
        let _ = fs::remove_dir(&user);
    }
    Ok(swept)
}

fn sweep_one(path: &Path, now: u64, expire_after: u64, swept: &mut Swept) {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let meta_path = path.with_extension("json");
    match ext {
        "json" => {
            let data = path.with_extension("data");
            let part = path.with_extension("part");
            let Ok(meta) = read_meta(path) else {
                tracing::warn!(path = %path.display(), "unreadable upload metadata removed");
                remove_all(&[&data, &part, path]);
                return;
            };
            if data.exists() {
                if expire_after > 0 && meta.created.saturating_add(expire_after) <= now {
                    remove_all(&[&data, path]);
                    swept.files += 1;
                }
            } else if meta.put_until.saturating_add(UNFINISHED_GRACE_SECS) <= now
                || (meta.put_until < now && !recently_written(&part, now))
            {
                remove_all(&[&part, path]);
                swept.unfinished += 1;
            }
        }
        "data" | "part" if !meta_path.exists() => remove_all(&[path]),
        // A metadata file being written by a slot request right now, or one a crash left.
        "tmp" if !recently_written(path, now) => remove_all(&[path]),
        _ => {}
    }
}

/// Whether a file was written to in the last minute (an upload still streaming in).
fn recently_written(path: &Path, now: u64) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .is_some_and(|t| t.as_secs() + 60 > now)
}

fn remove_all(paths: &[&Path]) {
    for path in paths {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove upload file");
        }
    }
}

fn load_or_make_secret(path: &Path) -> io::Result<[u8; 32]> {
    match fs::read_to_string(path) {
        Ok(text) => unhex(text.trim())
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not 64 hex digits", path.display()),
                )
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(io::Error::other)?;
            let mut options = fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(path)?;
            file.write_all(hex(&secret).as_bytes())?;
            file.sync_all()?;
            Ok(secret)
        }
        Err(e) => Err(e),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Files {
        let config = Config {
            data_dir: dir.to_owned(),
            ..Config::default()
        };
        Files::open(&config).unwrap()
    }

    fn meta(size: u64) -> SlotMeta {
        SlotMeta {
            owner: "juliet@localhost".into(),
            filename: "a.txt".into(),
            size,
            content_type: Some("text/plain".into()),
            created: 1000,
            put_until: 1300,
        }
    }

    #[test]
    fn tokens_sign_every_field_and_the_secret_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let (user, slot) = (files.user_key("juliet@localhost"), new_slot_id());
        assert!(valid_id(&user) && valid_id(&slot));
        let token = files.token(&user, &slot, &meta(5));
        assert!(files.verify_token(&user, &slot, &meta(5), &token));
        assert!(!files.verify_token(&user, &slot, &meta(6), &token));
        let mut other_type = meta(5);
        other_type.content_type = None;
        assert!(!files.verify_token(&user, &slot, &other_type, &token));
        assert!(!files.verify_token(&user, &slot, &meta(5), "zz"));
        let reopened = self::files(dir.path());
        assert!(reopened.verify_token(&user, &slot, &meta(5), &token));
        assert_ne!(files.user_key("romeo@localhost"), user);
    }

    #[test]
    fn room_frees_up_with_the_oldest_files_first() {
        let held = [
            Held {
                size: 60,
                frees_at: Some(200),
            },
            Held {
                size: 30,
                frees_at: Some(100),
            },
        ];
        assert_eq!(room_for(&held, 10, 100), Ok(()));
        assert_eq!(room_for(&held, 10, 0), Ok(()));
        assert_eq!(room_for(&held, 30, 100), Err(Some(100)));
        assert_eq!(room_for(&held, 50, 100), Err(Some(200)));
        let forever = [Held {
            size: 90,
            frees_at: None,
        }];
        assert_eq!(room_for(&forever, 20, 100), Err(None));
    }

    #[test]
    fn sweep_removes_expired_files_stale_slots_and_strays() {
        let dir = tempfile::tempdir().unwrap();
        let files = files(dir.path());
        let user = files.user_key("juliet@localhost");
        let user_dir = files.user_dir(&user);
        let (kept, expired, stale) = (new_slot_id(), new_slot_id(), new_slot_id());
        let mut young = meta(1);
        young.created = 5000;
        write_meta(&user_dir, &kept, &young).unwrap();
        fs::write(files.path(&user, &kept, "data"), b"k").unwrap();
        write_meta(&user_dir, &expired, &meta(1)).unwrap();
        fs::write(files.path(&user, &expired, "data"), b"e").unwrap();
        write_meta(&user_dir, &stale, &meta(1)).unwrap();
        fs::write(files.path(&user, &new_slot_id(), "data"), b"stray").unwrap();

        let held = held(&user_dir, 1200, 3000).unwrap();
        assert_eq!(held.len(), 3, "both files and the slot still good");
        let swept = sweep(files.dir(), 5000, 3000).unwrap();
        assert_eq!(
            swept,
            Swept {
                files: 1,
                unfinished: 1
            }
        );
        let left: Vec<_> = fs::read_dir(&user_dir).unwrap().collect();
        assert_eq!(left.len(), 2, "the young file and its metadata");
        assert!(files.path(&user, &kept, "data").exists());
        fs::remove_file(files.path(&user, &kept, "data")).unwrap();
        fs::remove_file(files.path(&user, &kept, "json")).unwrap();
        sweep(files.dir(), 5000, 3000).unwrap();
        assert!(!user_dir.exists(), "an empty account directory goes too");
    }
}
