//! A cache of SCRAM salted passwords for corvid-proto's `ScramClient`.
//!
//! A load generator logs in thousands of accounts that share one password, and PBKDF2
//! (`Hi` of RFC 5802 §2.2) is the most expensive thing a client does: on a 2-core box
//! shared with the server under test it would skew the very figures we measure. So each
//! login reads server-first with `ScramClient::read_server_first`, asks this cache for
//! the salted password of those [`SaltedPasswordParams`], and finishes with
//! `ScramClient::client_final`; logins whose `(hash, password, salt, iterations)` match
//! cost one PBKDF2 in all. The cache can be kept in a file across runs (servers give
//! each account its own salt, so the file is what makes the second run against the same
//! accounts cheap).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use corvid_proto::sasl::{HashAlg, SaltedPasswordParams};
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// Iterations above this are refused: a server (or anything pretending to be one)
/// could otherwise make every login burn seconds of CPU.
const MAX_ITERATIONS: u32 = 1_000_000;

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    params: SaltedPasswordParams,
    /// SHA-256 of the password, so the cache file holds no password.
    password: [u8; 32],
}

fn tag(hash: HashAlg) -> &'static str {
    match hash {
        HashAlg::Sha1 => "sha1",
        HashAlg::Sha256 => "sha256",
    }
}

fn from_tag(tag: &str) -> Option<HashAlg> {
    match tag {
        "sha1" => Some(HashAlg::Sha1),
        "sha256" => Some(HashAlg::Sha256),
        _ => None,
    }
}

/// Salted passwords by (hash, password, salt, iterations); each is derived once, even
/// when many logins ask for it at the same time.
pub struct SaltedPasswordCache {
    entries: Mutex<HashMap<CacheKey, Arc<OnceCell<Vec<u8>>>>>,
    file: Option<PathBuf>,
    /// Entries derived since the file was loaded, appended by [`Self::save`].
    fresh: Mutex<Vec<(CacheKey, Vec<u8>)>>,
    derivations: std::sync::atomic::AtomicU64,
}

impl SaltedPasswordCache {
    pub fn in_memory() -> Self {
        SaltedPasswordCache {
            entries: Mutex::new(HashMap::new()),
            file: None,
            fresh: Mutex::new(Vec::new()),
            derivations: 0.into(),
        }
    }

    /// A cache backed by `path` (created by [`Self::save`] if missing). The file holds
    /// salted passwords, which are as good as the password for these accounts: keep it
    /// with the benchmark's throwaway data.
    pub fn with_file(path: &Path) -> Result<Self> {
        let mut cache = Self::in_memory();
        cache.file = Some(path.to_owned());
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut entries = cache.entries.lock().expect("not poisoned");
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    let (key, value) = parse_cache_line(line)
                        .with_context(|| format!("bad line in SCRAM cache {}", path.display()))?;
                    entries.insert(key, Arc::new(OnceCell::new_with(Some(value))));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
        Ok(cache)
    }

    /// How many PBKDF2 derivations this process has run.
    pub fn derivations(&self) -> u64 {
        self.derivations.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The salted password of `password` under `params`, derived at most once.
    pub async fn salted_password(
        &self,
        password: &str,
        params: &SaltedPasswordParams,
    ) -> Result<Vec<u8>> {
        if params.iterations > MAX_ITERATIONS {
            bail!("unreasonable iteration count {}", params.iterations);
        }
        let key = CacheKey {
            params: params.clone(),
            password: Sha256::digest(password.as_bytes()).into(),
        };
        let cell = self
            .entries
            .lock()
            .expect("not poisoned")
            .entry(key.clone())
            .or_default()
            .clone();
        let value = cell
            .get_or_try_init(|| async {
                let password = password.to_owned();
                let params = params.clone();
                // PBKDF2 is CPU work: keep it off the threads that drive sockets.
                let derived = tokio::task::spawn_blocking(move || params.derive(&password))
                    .await
                    .map_err(|e| anyhow!("PBKDF2 task failed: {e}"))?;
                self.derivations
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.fresh
                    .lock()
                    .expect("not poisoned")
                    .push((key, derived.clone()));
                Ok::<_, anyhow::Error>(derived)
            })
            .await?;
        Ok(value.clone())
    }

    /// Appends the entries derived in this run to the cache file, if there is one.
    pub fn save(&self) -> Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let fresh = std::mem::take(&mut *self.fresh.lock().expect("not poisoned"));
        if fresh.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for (key, value) in &fresh {
            text.push_str(&format_cache_line(key, value));
            text.push('\n');
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        file.write_all(text.as_bytes())?;
        Ok(())
    }
}

fn format_cache_line(key: &CacheKey, value: &[u8]) -> String {
    let mut password = String::new();
    for b in key.password {
        let _ = write!(password, "{b:02x}");
    }
    let params = &key.params;
    format!(
        "{} {} {} {} {}",
        tag(params.hash),
        params.iterations,
        B64.encode(&params.salt),
        password,
        B64.encode(value)
    )
}

fn parse_cache_line(line: &str) -> Result<(CacheKey, Vec<u8>)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [tag, iterations, salt, password, value] = fields[..] else {
        bail!("expected 5 fields");
    };
    let hash = from_tag(tag).ok_or_else(|| anyhow!("unknown hash {tag}"))?;
    let mut digest = [0u8; 32];
    if password.len() != 64 {
        bail!("bad password digest");
    }
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&password[2 * i..2 * i + 2], 16)?;
    }
    let params = SaltedPasswordParams {
        hash,
        salt: B64.decode(salt)?,
        iterations: iterations.parse()?,
    };
    Ok((
        CacheKey {
            params,
            password: digest,
        },
        B64.decode(value)?,
    ))
}

#[cfg(test)]
mod tests {
    use corvid_proto::sasl::{ChannelBindings, Credentials, Mechanism, ScramClient, ScramServer};

    use super::*;

    /// One login to Corvid's SCRAM server side, the way `login.rs` does it.
    async fn exchange_with_corvid(
        mechanism: Mechanism,
        cache: &SaltedPasswordCache,
        password: &str,
    ) -> Result<()> {
        let creds = Credentials::derive("pencil", b"fixed-salt", 4096);
        let mut server = ScramServer::new(mechanism, ChannelBindings::default(), false);
        let mut client = ScramClient::new(mechanism, "user", password, None);
        let who = server.client_first(&client.client_first())?;
        assert_eq!(who.username, "user");
        let params = client.read_server_first(&server.server_first(Some(&creds)))?;
        let salted = cache.salted_password(password, &params).await?;
        let server_final = server.client_final(&client.client_final(&salted)?)?;
        Ok(client.verify_server_final(&server_final)?)
    }

    #[tokio::test]
    async fn logs_in_to_corvids_scram_server_and_derives_once() {
        let cache = SaltedPasswordCache::in_memory();
        for mechanism in [Mechanism::ScramSha1, Mechanism::ScramSha256] {
            for _ in 0..3 {
                exchange_with_corvid(mechanism, &cache, "pencil")
                    .await
                    .unwrap();
            }
        }
        assert_eq!(cache.derivations(), 2, "one PBKDF2 per hash");
        assert!(
            exchange_with_corvid(Mechanism::ScramSha1, &cache, "wrong")
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn refuses_absurd_iteration_counts() {
        let cache = SaltedPasswordCache::in_memory();
        let params = SaltedPasswordParams {
            hash: HashAlg::Sha1,
            salt: b"s".to_vec(),
            iterations: u32::MAX,
        };
        assert!(cache.salted_password("p", &params).await.is_err());
        assert_eq!(cache.derivations(), 0);
    }

    #[test]
    fn cache_lines_round_trip() {
        let key = CacheKey {
            params: SaltedPasswordParams {
                hash: HashAlg::Sha256,
                salt: b"salt".to_vec(),
                iterations: 4096,
            },
            password: Sha256::digest(b"pw").into(),
        };
        let line = format_cache_line(&key, b"derived");
        assert!(!line.contains("pw "));
        let (parsed, value) = parse_cache_line(&line).unwrap();
        assert!(parsed == key);
        assert_eq!(value, b"derived");
        assert!(parse_cache_line("sha1 4096 c2FsdA==").is_err());
    }
}
