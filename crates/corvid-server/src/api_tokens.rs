//! Bearer tokens for the HTTP admin API (`http/admin_api.rs`).
//!
//! `corvid token create` makes one and prints it once; only its SHA-256 is kept, in
//! `api-tokens` in the data directory (mode 0600), one line per token:
//! `NAME<TAB>SHA-256 in hex<TAB>created, Unix seconds`. The server reads the file for each
//! request, so a revoked token stops working at once, without a restart. A token is
//! `corvid_` and 64 hex digits (256 random bits), so hashing it unsalted is enough: there
//! is nothing to guess from the hash.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Config;

const FILE_NAME: &str = "api-tokens";
const PREFIX: &str = "corvid_";
/// Longest token name, in bytes.
const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a token named {0:?} already exists")]
    Exists(String),
    #[error("no token is named {0:?}")]
    NotFound(String),
    #[error("{0:?} is not a token name (letters, digits, '.', '_', '-'; at most 64)")]
    InvalidName(String),
    #[error("no randomness for a token: {0}")]
    Random(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One token as listed (its secret is not kept).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    /// SHA-256 of the token.
    hash: [u8; 32],
    /// When it was made, Unix seconds.
    pub created: u64,
}

/// Where the tokens of the server configured by `config` are kept.
pub fn path(config: &Config) -> PathBuf {
    config.data_dir.join(FILE_NAME)
}

/// Makes a token (named `name`, or `token-` and a random suffix), keeps its hash and
/// returns (name, token): the only time the token is seen.
pub fn create(config: &Config, name: Option<&str>) -> Result<(String, String), TokenError> {
    let file = path(config);
    let mut entries = read(&file)?;
    let name = match name {
        Some(name) => valid_name(name)?,
        None => format!("token-{}", &hex(&random::<4>()?)),
    };
    if entries.iter().any(|e| e.name == name) {
        return Err(TokenError::Exists(name));
    }
    let token = format!("{PREFIX}{}", hex(&random::<32>()?));
    entries.push(TokenEntry {
        name: name.clone(),
        hash: Sha256::digest(token.as_bytes()).into(),
        created: now_secs(),
    });
    std::fs::create_dir_all(&config.data_dir).map_err(|source| TokenError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    write(&file, &entries)?;
    Ok((name, token))
}

/// Every token, in the order made.
pub fn list(config: &Config) -> Result<Vec<TokenEntry>, TokenError> {
    read(&path(config))
}

/// Forgets a token: requests bearing it are refused from now on.
pub fn revoke(config: &Config, name: &str) -> Result<(), TokenError> {
    let file = path(config);
    let mut entries = read(&file)?;
    let before = entries.len();
    entries.retain(|e| e.name != name);
    if entries.len() == before {
        return Err(TokenError::NotFound(name.to_owned()));
    }
    write(&file, &entries)
}

/// The name of the token `presented` is, if any, among the tokens in `file` (the text of
/// the tokens file). Every hash is compared, in constant time.
pub fn verify(file: &str, presented: &str) -> Option<String> {
    let hash: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    let mut found = None;
    for entry in parse(file) {
        if bool::from(entry.hash.ct_eq(&hash)) {
            found = Some(entry.name);
        }
    }
    found
}

fn valid_name(name: &str) -> Result<String, TokenError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(name.to_owned())
    } else {
        Err(TokenError::InvalidName(name.to_owned()))
    }
}

fn read(file: &Path) -> Result<Vec<TokenEntry>, TokenError> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(parse(&text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(TokenError::Io {
            path: file.to_owned(),
            source,
        }),
    }
}

/// The entries of a tokens file; lines that do not read as one are skipped.
fn parse(text: &str) -> Vec<TokenEntry> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let name = fields.next()?.to_owned();
            let hash = unhex32(fields.next()?)?;
            let created = fields.next()?.parse().ok()?;
            Some(TokenEntry {
                name,
                hash,
                created,
            })
        })
        .collect()
}

/// Replaces the file whole (written beside it, then renamed), readable by its owner only.
fn write(file: &Path, entries: &[TokenEntry]) -> Result<(), TokenError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| TokenError::Io {
        path: file.to_owned(),
        source,
    };
    let text: String = entries
        .iter()
        .map(|e| format!("{}\t{}\t{}\n", e.name, hex(&e.hash), e.created))
        .collect();
    let temp = file.with_extension("new");
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io)?;
    out.write_all(text.as_bytes()).map_err(io)?;
    out.sync_all().map_err(io)?;
    std::fs::rename(&temp, file).map_err(io)
}

fn random<const N: usize>() -> Result<[u8; N], TokenError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn unhex32(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &tempfile::TempDir) -> Config {
        Config {
            data_dir: dir.path().to_owned(),
            ..Config::default()
        }
    }

    #[test]
    fn a_created_token_verifies_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        let (name, token) = create(&config, Some("ci")).unwrap();
        assert_eq!(name, "ci");
        assert!(token.starts_with(PREFIX) && token.len() == PREFIX.len() + 64);
        let text = std::fs::read_to_string(path(&config)).unwrap();
        assert!(!text.contains(&token), "only the hash is kept");
        assert_eq!(verify(&text, &token), Some("ci".to_owned()));
        assert_eq!(verify(&text, "corvid_wrong"), None);
        assert!(matches!(
            create(&config, Some("ci")),
            Err(TokenError::Exists(_))
        ));
        revoke(&config, "ci").unwrap();
        let text = std::fs::read_to_string(path(&config)).unwrap();
        assert_eq!(verify(&text, &token), None);
        assert!(matches!(
            revoke(&config, "ci"),
            Err(TokenError::NotFound(_))
        ));
    }

    #[test]
    fn names_are_checked_and_defaulted() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(&dir);
        assert!(matches!(
            create(&config, Some("a b")),
            Err(TokenError::InvalidName(_))
        ));
        let (name, _) = create(&config, None).unwrap();
        assert!(name.starts_with("token-"));
        assert_eq!(list(&config).unwrap().len(), 1);
    }
}
