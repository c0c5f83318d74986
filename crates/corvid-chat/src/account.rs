//! Which account to log in to and how: flags first, then `CORVID_CHAT_*` environment
//! variables, then the config file (`~/.config/corvid-chat/config.toml` or `--config`).
//!
//! The password never comes from a flag of its own: a flag's value shows in `ps` and in
//! shell history. It comes from `--password-file`, `CORVID_CHAT_PASSWORD`, the config
//! file's `password_file`, or a prompt with echo off, in that order.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use corvid_client::{Security, Verification};
use corvid_proto::BareJid;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

/// The account options every command takes.
#[derive(Args, Debug, Default, Clone)]
pub struct AccountArgs {
    /// The account's bare JID [env: CORVID_CHAT_JID].
    #[arg(long, global = true)]
    pub jid: Option<String>,
    /// The server's host and port (HOST:PORT, or HOST) instead of the JID's domain
    /// [env: CORVID_CHAT_SERVER].
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// TLS from the first byte (XEP-0368, port 5223 by default) instead of STARTTLS.
    #[arg(long, global = true)]
    pub direct_tls: bool,
    /// Accept any server certificate (self-signed test servers only: anyone on the path
    /// can read everything).
    #[arg(long, global = true)]
    pub insecure: bool,
    /// Accept exactly the certificate(s) in this PEM file [env: CORVID_CHAT_PIN_CERT].
    #[arg(long, global = true, value_name = "FILE")]
    pub pin_cert: Option<PathBuf>,
    /// Trust only the CA certificate(s) in this PEM file [env: CORVID_CHAT_CA].
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// The resource to bind (the server picks one by default) [env: CORVID_CHAT_RESOURCE].
    #[arg(long, global = true)]
    pub resource: Option<String>,
    /// Read the password from this file's first line.
    #[arg(long, global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// The config file (default ~/.config/corvid-chat/config.toml) [env: CORVID_CHAT_CONFIG].
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// The config file: every key optional, unknown keys refused.
#[derive(Deserialize, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub jid: Option<String>,
    pub server: Option<String>,
    #[serde(default)]
    pub direct_tls: bool,
    #[serde(default)]
    pub insecure: bool,
    pub pin_cert: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub resource: Option<String>,
    pub password_file: Option<PathBuf>,
}

impl ConfigFile {
    pub fn parse(text: &str) -> anyhow::Result<ConfigFile> {
        Ok(toml::from_str(text)?)
    }
}

/// How the server's certificate is to be checked, before the files are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertCheck {
    System,
    Insecure,
    Pinned(PathBuf),
    Ca(PathBuf),
}

/// Where the password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordSource {
    File(PathBuf),
    Env(String),
    Prompt,
}

/// Everything needed to log in, resolved from flags, environment and config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub jid: BareJid,
    pub server: Option<(String, u16)>,
    pub security: Security,
    pub cert: CertCheck,
    pub resource: Option<String>,
    pub password: PasswordSource,
}

impl Account {
    /// Resolves the account from `args`, the environment (`env`) and the config file
    /// (`load` reads a path; a missing default file is no config at all).
    pub fn resolve(
        args: &AccountArgs,
        env: &dyn Fn(&str) -> Option<String>,
        load: &dyn Fn(&Path) -> std::io::Result<String>,
    ) -> anyhow::Result<Account> {
        let config = load_config(args, env, load)?;
        let jid = args
            .jid
            .clone()
            .or_else(|| env("CORVID_CHAT_JID"))
            .or(config.jid)
            .context("no account: give --jid, CORVID_CHAT_JID or `jid` in the config file")?;
        let jid: BareJid = jid
            .parse()
            .with_context(|| format!("{jid} is not a bare JID"))?;
        if jid.node().is_none() {
            bail!("{jid} has no username (user@domain)");
        }
        let direct_tls = args.direct_tls || config.direct_tls;
        let security = if direct_tls {
            Security::DirectTls
        } else {
            Security::StartTls
        };
        let server = args
            .server
            .clone()
            .or_else(|| env("CORVID_CHAT_SERVER"))
            .or(config.server)
            .map(|s| parse_server(&s, security))
            .transpose()?;
        let pin = args
            .pin_cert
            .clone()
            .or_else(|| env("CORVID_CHAT_PIN_CERT").map(PathBuf::from))
            .or(config.pin_cert);
        let ca = args
            .ca
            .clone()
            .or_else(|| env("CORVID_CHAT_CA").map(PathBuf::from))
            .or(config.ca);
        let insecure = args.insecure || config.insecure;
        let cert = match (insecure, pin, ca) {
            (false, None, None) => CertCheck::System,
            (true, None, None) => CertCheck::Insecure,
            (false, Some(pin), None) => CertCheck::Pinned(pin),
            (false, None, Some(ca)) => CertCheck::Ca(ca),
            _ => bail!("choose one of --insecure, --pin-cert and --ca"),
        };
        let password = if let Some(file) = args.password_file.clone() {
            PasswordSource::File(file)
        } else if let Some(password) = env("CORVID_CHAT_PASSWORD") {
            PasswordSource::Env(password)
        } else if let Some(file) = config.password_file {
            PasswordSource::File(file)
        } else {
            PasswordSource::Prompt
        };
        Ok(Account {
            jid,
            server,
            security,
            cert,
            resource: args
                .resource
                .clone()
                .or_else(|| env("CORVID_CHAT_RESOURCE"))
                .or(config.resource),
            password,
        })
    }

    /// The password: read from its file, taken from the environment, or asked for on the
    /// terminal with echo off.
    pub fn password(&self) -> anyhow::Result<String> {
        match &self.password {
            PasswordSource::Env(password) => Ok(password.clone()),
            PasswordSource::File(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read the password file {}", path.display()))?;
                Ok(text.lines().next().unwrap_or_default().to_owned())
            }
            PasswordSource::Prompt => rpassword::prompt_password(format!(
                "Password for {}: ",
                self.jid
            ))
            .context(
                "no password: set CORVID_CHAT_PASSWORD, give --password-file, or run on a terminal",
            ),
        }
    }

    /// The certificate check, with its PEM file read.
    pub fn verification(&self) -> anyhow::Result<Verification> {
        Ok(match &self.cert {
            CertCheck::System => Verification::System,
            CertCheck::Insecure => Verification::DangerAcceptAny,
            CertCheck::Pinned(path) => Verification::Pinned(read_certs(path)?),
            CertCheck::Ca(path) => Verification::Roots(read_certs(path)?),
        })
    }
}

/// The config file named by `--config` or `CORVID_CHAT_CONFIG` (which must exist), else the
/// default one if it exists.
fn load_config(
    args: &AccountArgs,
    env: &dyn Fn(&str) -> Option<String>,
    load: &dyn Fn(&Path) -> std::io::Result<String>,
) -> anyhow::Result<ConfigFile> {
    let named = args
        .config
        .clone()
        .or_else(|| env("CORVID_CHAT_CONFIG").map(PathBuf::from));
    let (path, required) = match named {
        Some(path) => (path, true),
        None => match default_config_path(env) {
            Some(path) => (path, false),
            None => return Ok(ConfigFile::default()),
        },
    };
    match load(&path) {
        Ok(text) => ConfigFile::parse(&text).with_context(|| format!("in {}", path.display())),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            Ok(ConfigFile::default())
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `$XDG_CONFIG_HOME/corvid-chat/config.toml`, or under `$HOME/.config`.
fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|home| Path::new(&home).join(".config")))?;
    Some(base.join("corvid-chat").join("config.toml"))
}

/// `host:port`, `[v6]:port` or a bare host (on the default port for `security`).
pub fn parse_server(text: &str, security: Security) -> anyhow::Result<(String, u16)> {
    let default_port = match security {
        Security::DirectTls => 5223,
        Security::StartTls | Security::DangerPlaintext => 5222,
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .with_context(|| format!("{text}: unclosed ["))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => bail!("{text}: expected [HOST]:PORT"),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            _ => (text, None),
        }
    };
    if host.is_empty() {
        bail!("{text}: no host");
    }
    let port = match port {
        Some(port) => port
            .parse()
            .with_context(|| format!("{text}: {port} is not a port"))?,
        None => default_port,
    };
    Ok((host.to_owned(), port))
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        args: AccountArgs,
        env: &[(&str, &str)],
        files: &[(&str, &str)],
    ) -> anyhow::Result<Account> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let files: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        Account::resolve(&args, &|k| env.get(k).cloned(), &|p| {
            files
                .get(p)
                .cloned()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        })
    }

    #[test]
    fn flags_win_over_environment_and_config() {
        let args = AccountArgs {
            jid: Some("flag@example.org".into()),
            ..Default::default()
        };
        let account = resolve(
            args,
            &[
                ("CORVID_CHAT_JID", "env@example.org"),
                ("CORVID_CHAT_SERVER", "env.host:5999"),
                ("HOME", "/home/u"),
            ],
            &[(
                "/home/u/.config/corvid-chat/config.toml",
                "jid = 'file@example.org'\nserver = 'file.host'\nresource = 'desk'",
            )],
        )
        .unwrap();
        assert_eq!(account.jid.as_str(), "flag@example.org");
        assert_eq!(account.server, Some(("env.host".into(), 5999)));
        assert_eq!(account.resource.as_deref(), Some("desk"));
        assert_eq!(account.cert, CertCheck::System);
        assert_eq!(account.password, PasswordSource::Prompt);
    }

    #[test]
    fn the_config_file_fills_in_what_is_missing() {
        let args = AccountArgs {
            config: Some("/etc/chat.toml".into()),
            ..Default::default()
        };
        let account = resolve(
            args,
            &[],
            &[(
                "/etc/chat.toml",
                "jid = 'me@example.org'\ndirect_tls = true\nserver = 'xmpp.example.org'\n\
                 pin_cert = '/etc/cert.pem'\npassword_file = '/etc/pw'",
            )],
        )
        .unwrap();
        assert_eq!(account.security, Security::DirectTls);
        // Direct TLS's default port.
        assert_eq!(account.server, Some(("xmpp.example.org".into(), 5223)));
        assert_eq!(account.cert, CertCheck::Pinned("/etc/cert.pem".into()));
        assert_eq!(account.password, PasswordSource::File("/etc/pw".into()));
    }

    #[test]
    fn password_comes_from_file_flag_then_environment() {
        let env = [
            ("CORVID_CHAT_JID", "me@example.org"),
            ("CORVID_CHAT_PASSWORD", "s3cret"),
        ];
        let account = resolve(AccountArgs::default(), &env, &[]).unwrap();
        assert_eq!(account.password, PasswordSource::Env("s3cret".into()));
        let args = AccountArgs {
            password_file: Some("/run/pw".into()),
            ..Default::default()
        };
        let account = resolve(args, &env, &[]).unwrap();
        assert_eq!(account.password, PasswordSource::File("/run/pw".into()));
    }

    #[test]
    fn a_named_config_file_must_exist_and_be_valid() {
        let env = [("CORVID_CHAT_JID", "me@example.org")];
        let args = AccountArgs {
            config: Some("/nowhere.toml".into()),
            ..Default::default()
        };
        assert!(resolve(args.clone(), &env, &[]).is_err());
        let bad = resolve(args, &env, &[("/nowhere.toml", "password = 'no'")]);
        assert!(bad.is_err(), "a password key is unknown, so refused");
        // The default file may be missing.
        assert!(resolve(AccountArgs::default(), &env, &[]).is_ok());
    }

    #[test]
    fn accounts_need_a_bare_jid_with_a_user() {
        assert!(resolve(AccountArgs::default(), &[], &[]).is_err());
        let env = [("CORVID_CHAT_JID", "example.org")];
        assert!(resolve(AccountArgs::default(), &env, &[]).is_err());
    }

    #[test]
    fn one_certificate_check_at_a_time() {
        let env = [("CORVID_CHAT_JID", "me@example.org")];
        let args = AccountArgs {
            insecure: true,
            ca: Some("/ca.pem".into()),
            ..Default::default()
        };
        assert!(resolve(args, &env, &[]).is_err());
        let args = AccountArgs {
            insecure: true,
            ..Default::default()
        };
        assert_eq!(resolve(args, &env, &[]).unwrap().cert, CertCheck::Insecure);
    }

    #[test]
    fn server_addresses() {
        let st = Security::StartTls;
        assert_eq!(parse_server("h:1", st).unwrap(), ("h".into(), 1));
        assert_eq!(parse_server("h", st).unwrap(), ("h".into(), 5222));
        assert_eq!(parse_server("[::1]:5", st).unwrap(), ("::1".into(), 5));
        assert_eq!(parse_server("[::1]", st).unwrap(), ("::1".into(), 5222));
        assert_eq!(parse_server("::1", st).unwrap(), ("::1".into(), 5222));
        assert!(parse_server("h:port", st).is_err());
        assert!(parse_server(":5", st).is_err());
    }
}
