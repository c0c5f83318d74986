//! The client side of SCRAM-SHA-1/-256 (RFC 5802, RFC 7677) with a cache of salted
//! passwords.
//!
//! corvid-proto's `ScramClient` derives the salted password on every exchange. A load
//! generator logs in thousands of accounts that share one password, and PBKDF2 is the
//! most expensive thing a client does: on a 2-core box shared with the server under
//! test it would skew the very figures we measure. So this client asks a
//! [`SaltedPasswordCache`] for `Hi(password, salt, i)`; logins whose
//! `(password, salt, iterations)` match cost one PBKDF2 in all, and the cache can be
//! kept in a file across runs (servers give each account its own salt, so the file is
//! what makes the second run against the same accounts cheap).
//!
//! No channel binding (gs2 header `n,,`) and no SASLprep: bench usernames and passwords
//! are ASCII.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

/// The hash of a SCRAM mechanism.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ScramHash {
    Sha1,
    Sha256,
}

impl ScramHash {
    pub fn mechanism_name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SCRAM-SHA-1",
            ScramHash::Sha256 => "SCRAM-SHA-256",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "sha1",
            ScramHash::Sha256 => "sha256",
        }
    }

    fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "sha1" => Some(ScramHash::Sha1),
            "sha256" => Some(ScramHash::Sha256),
            _ => None,
        }
    }

    fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => Sha1::digest(data).to_vec(),
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
        }
    }

    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
            let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        match self {
            ScramHash::Sha1 => run::<Hmac<Sha1>>(key, data),
            ScramHash::Sha256 => run::<Hmac<Sha256>>(key, data),
        }
    }

    /// Hi(password, salt, i) of RFC 5802 §2.2: PBKDF2 with one output block.
    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha1 => {
                let mut out = vec![0; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha256 => {
                let mut out = vec![0; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    hash: ScramHash,
    /// SHA-256 of the password, so the cache file holds no password.
    password: [u8; 32],
    salt: Vec<u8>,
    iterations: u32,
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

    async fn salted_password(
        &self,
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Vec<u8>> {
        let key = CacheKey {
            hash,
            password: Sha256::digest(password.as_bytes()).into(),
            salt: salt.to_vec(),
            iterations,
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
                let password = password.as_bytes().to_vec();
                let salt = salt.to_vec();
                // PBKDF2 is CPU work: keep it off the threads that drive sockets.
                let derived = tokio::task::spawn_blocking(move || {
                    hash.salted_password(&password, &salt, iterations)
                })
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
    format!(
        "{} {} {} {} {}",
        key.hash.tag(),
        key.iterations,
        B64.encode(&key.salt),
        password,
        B64.encode(value)
    )
}

fn parse_cache_line(line: &str) -> Result<(CacheKey, Vec<u8>)> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [tag, iterations, salt, password, value] = fields[..] else {
        bail!("expected 5 fields");
    };
    let hash = ScramHash::from_tag(tag).ok_or_else(|| anyhow!("unknown hash {tag}"))?;
    let mut digest = [0u8; 32];
    if password.len() != 64 {
        bail!("bad password digest");
    }
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&password[2 * i..2 * i + 2], 16)?;
    }
    Ok((
        CacheKey {
            hash,
            password: digest,
            salt: B64.decode(salt)?,
            iterations: iterations.parse()?,
        },
        B64.decode(value)?,
    ))
}

/// One SCRAM exchange from the client side.
pub struct ScramExchange {
    hash: ScramHash,
    client_first_bare: String,
    nonce: String,
    server_signature: Option<Vec<u8>>,
}

/// The gs2 header `n,,` (no channel binding, no authzid), base64-encoded for `c=`.
const GS2_HEADER: &str = "n,,";
const GS2_HEADER_B64: &str = "biws";

/// Iterations above this are refused: a server (or anything pretending to be one)
/// could otherwise make every login burn seconds of CPU.
const MAX_ITERATIONS: u32 = 1_000_000;

impl ScramExchange {
    pub fn new(hash: ScramHash, username: &str) -> Self {
        let mut raw = [0u8; 18];
        getrandom::fill(&mut raw).expect("the OS random generator works");
        Self::with_nonce(hash, username, &B64.encode(raw))
    }

    fn with_nonce(hash: ScramHash, username: &str, nonce: &str) -> Self {
        let escaped = username.replace('=', "=3D").replace(',', "=2C");
        ScramExchange {
            hash,
            client_first_bare: format!("n={escaped},r={nonce}"),
            nonce: nonce.to_owned(),
            server_signature: None,
        }
    }

    /// client-first-message, the initial response of `<auth/>`.
    pub fn client_first(&self) -> Vec<u8> {
        format!("{GS2_HEADER}{}", self.client_first_bare).into_bytes()
    }

    /// Answers server-first-message with client-final-message.
    pub async fn client_final(
        &mut self,
        server_first: &[u8],
        password: &str,
        cache: &SaltedPasswordCache,
    ) -> Result<Vec<u8>> {
        let server_first = std::str::from_utf8(server_first).context("server-first is not UTF-8")?;
        let parsed = parse_server_first(server_first)?;
        // RFC 5802 §5.1: the server extends our nonce.
        if !parsed.nonce.starts_with(&self.nonce) || parsed.nonce.len() <= self.nonce.len() {
            bail!("server nonce does not extend ours");
        }
        if parsed.iterations == 0 || parsed.iterations > MAX_ITERATIONS {
            bail!("unreasonable iteration count {}", parsed.iterations);
        }
        let salted = cache
            .salted_password(self.hash, password, &parsed.salt, parsed.iterations)
            .await?;
        let (final_message, server_signature) =
            self.proof(server_first, parsed.nonce, &salted);
        self.server_signature = Some(server_signature);
        Ok(final_message.into_bytes())
    }

    /// client-final-message and the ServerSignature it must be answered with.
    fn proof(&self, server_first: &str, nonce: &str, salted: &[u8]) -> (String, Vec<u8>) {
        let h = self.hash;
        let without_proof = format!("c={GS2_HEADER_B64},r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let client_key = h.hmac(salted, b"Client Key");
        let stored_key = h.digest(&client_key);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = h.hmac(salted, b"Server Key");
        let server_signature = h.hmac(&server_key, auth_message.as_bytes());
        (
            format!("{without_proof},p={}", B64.encode(proof)),
            server_signature,
        )
    }

    /// Checks server-final-message (`v=…`): the server proves it knew our credentials.
    pub fn verify_server_final(&self, message: &[u8]) -> Result<()> {
        let text = std::str::from_utf8(message).context("server-final is not UTF-8")?;
        if let Some(error) = text.strip_prefix("e=") {
            bail!("server-final error: {error}");
        }
        let value = text
            .split(',')
            .find_map(|f| f.strip_prefix("v="))
            .ok_or_else(|| anyhow!("server-final without verifier"))?;
        let signature = B64.decode(value).context("server-final verifier is not base64")?;
        match &self.server_signature {
            Some(expected) if *expected == signature => Ok(()),
            _ => bail!("server signature does not match"),
        }
    }
}

struct ServerFirst<'a> {
    nonce: &'a str,
    salt: Vec<u8>,
    iterations: u32,
}

fn parse_server_first(message: &str) -> Result<ServerFirst<'_>> {
    let (mut nonce, mut salt, mut iterations) = (None, None, None);
    for field in message.split(',') {
        match field.split_at_checked(2) {
            Some(("m=", _)) => bail!("server-first has a mandatory extension"),
            Some(("r=", v)) => nonce = Some(v),
            Some(("s=", v)) => salt = Some(B64.decode(v).context("salt is not base64")?),
            Some(("i=", v)) => iterations = Some(v.parse::<u32>().context("bad iteration count")?),
            _ => {}
        }
    }
    match (nonce, salt, iterations) {
        (Some(nonce), Some(salt), Some(iterations)) => Ok(ServerFirst { nonce, salt, iterations }),
        _ => bail!("server-first lacks r=, s= or i="),
    }
}

#[cfg(test)]
mod tests {
    use corvid_proto::sasl::{ChannelBindings, Credentials, Mechanism, ScramServer};

    use super::*;

    async fn exchange_with_corvid(hash: ScramHash, cache: &SaltedPasswordCache, password: &str) -> Result<()> {
        let mechanism = match hash {
            ScramHash::Sha1 => Mechanism::ScramSha1,
            ScramHash::Sha256 => Mechanism::ScramSha256,
        };
        let creds = Credentials::derive("pencil", b"fixed-salt", 4096);
        let mut server = ScramServer::new(
            mechanism,
            ChannelBindings { tls_exporter: None, tls_server_end_point: None },
            false,
        );
        let mut client = ScramExchange::new(hash, "user");
        let who = server.client_first(&client.client_first()).map_err(|e| anyhow!("{e:?}"))?;
        assert_eq!(who.username, "user");
        let server_first = server.server_first(Some(&creds));
        let client_final = client.client_final(&server_first, password, cache).await?;
        let server_final = server.client_final(&client_final).map_err(|e| anyhow!("{e:?}"))?;
        client.verify_server_final(&server_final)
    }

    #[tokio::test]
    async fn logs_in_to_corvids_scram_server_and_derives_once() {
        let cache = SaltedPasswordCache::in_memory();
        for hash in [ScramHash::Sha1, ScramHash::Sha256] {
            for _ in 0..3 {
                exchange_with_corvid(hash, &cache, "pencil").await.unwrap();
            }
        }
        assert_eq!(cache.derivations(), 2, "one PBKDF2 per hash");
        assert!(exchange_with_corvid(ScramHash::Sha1, &cache, "wrong").await.is_err());
    }

    #[test]
    fn rfc5802_vector() {
        let exchange = ScramExchange::with_nonce(ScramHash::Sha1, "user", "fyko+d2lbbFgONRv9qkxdawL");
        assert_eq!(exchange.client_first(), b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL");
        let server_first = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
        let parsed = parse_server_first(server_first).unwrap();
        let salted = ScramHash::Sha1.salted_password(b"pencil", &parsed.salt, 4096);
        let (final_message, signature) = exchange.proof(server_first, parsed.nonce, &salted);
        assert_eq!(
            final_message,
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="
        );
        assert_eq!(B64.encode(signature), "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
    }

    #[test]
    fn rejects_a_server_that_does_not_extend_the_nonce() {
        let mut exchange = ScramExchange::with_nonce(ScramHash::Sha1, "user", "abc");
        let cache = SaltedPasswordCache::in_memory();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let result = rt.block_on(exchange.client_final(b"r=xyz123,s=QSXCR+Q6sek8bf92,i=4096", "p", &cache));
        assert!(result.is_err());
    }

    #[test]
    fn cache_lines_round_trip() {
        let key = CacheKey {
            hash: ScramHash::Sha256,
            password: Sha256::digest(b"pw").into(),
            salt: b"salt".to_vec(),
            iterations: 4096,
        };
        let line = format_cache_line(&key, b"derived");
        assert!(!line.contains("pw "));
        let (parsed, value) = parse_cache_line(&line).unwrap();
        assert!(parsed == key);
        assert_eq!(value, b"derived");
        assert!(parse_cache_line("sha1 4096 c2FsdA==").is_err());
    }
}
