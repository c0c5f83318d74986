//! Each user's settings (default nick and realname; per IRC server a nick, the server
//! password and a NickServ password), kept in `settings.json` in the data directory and
//! rewritten whole (to a temporary file, then renamed) on every change.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use jid::BareJid;
use serde::{Deserialize, Serialize};

/// One user's settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UserSettings {
    pub nick: Option<String>,
    pub realname: Option<String>,
    /// Folded server name → that server's settings.
    pub servers: BTreeMap<String, ServerSettings>,
}

/// One user's settings for one IRC server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerSettings {
    pub nick: Option<String>,
    pub realname: Option<String>,
    /// Sent as `PASS` before registering.
    pub password: Option<String>,
    /// Sent to NickServ (`IDENTIFY`) once registered.
    pub nickserv_password: Option<String>,
}

/// What a session on `server` uses, after merging server and global settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effective {
    pub nick: Option<String>,
    pub realname: Option<String>,
    pub password: Option<String>,
    pub nickserv_password: Option<String>,
}

/// Every user's settings, and the file they live in.
pub struct Settings {
    path: PathBuf,
    users: BTreeMap<String, UserSettings>,
}

impl Settings {
    /// Reads `settings.json` in `data_dir` (creating the directory); empty when absent.
    pub async fn open(data_dir: &std::path::Path) -> Result<Settings> {
        tokio::fs::create_dir_all(data_dir)
            .await
            .with_context(|| format!("create {}", data_dir.display()))?;
        let path = data_dir.join("settings.json");
        let users = match tokio::fs::read(&path).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .with_context(|| format!("parse {}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
        };
        Ok(Settings { path, users })
    }

    pub fn user(&self, user: &BareJid) -> UserSettings {
        self.users.get(user.as_str()).cloned().unwrap_or_default()
    }

    /// The settings a session for `user` on `server` starts with.
    pub fn effective(&self, user: &BareJid, server: &str) -> Effective {
        let user = self.user(user);
        let server = user
            .servers
            .get(&crate::irc::fold(server))
            .cloned()
            .unwrap_or_default();
        Effective {
            nick: server.nick.or(user.nick),
            realname: server.realname.or(user.realname),
            password: server.password,
            nickserv_password: server.nickserv_password,
        }
    }

    /// Replaces a user's settings and writes the file.
    pub async fn set_user(&mut self, user: &BareJid, settings: UserSettings) -> Result<()> {
        if settings == UserSettings::default() {
            self.users.remove(user.as_str());
        } else {
            self.users.insert(user.as_str().to_string(), settings);
        }
        self.save().await
    }

    async fn save(&self) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(&self.users)?;
        let tmp = self.path.with_extension("json.tmp");
        tokio::fs::write(&tmp, bytes)
            .await
            .with_context(|| format!("write {}", tmp.display()))?;
        tokio::fs::rename(&tmp, &self.path)
            .await
            .with_context(|| format!("rename to {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn settings_survive_a_restart_and_merge_per_server() {
        let dir = tempfile::tempdir().unwrap();
        let user: BareJid = "alice@localhost".parse().unwrap();
        let mut settings = Settings::open(dir.path()).await.unwrap();
        let mut mine = UserSettings {
            nick: Some("ali".into()),
            realname: Some("Alice".into()),
            ..Default::default()
        };
        mine.servers.insert(
            "irc.example".into(),
            ServerSettings {
                nick: Some("alice_irc".into()),
                nickserv_password: Some("pw".into()),
                ..Default::default()
            },
        );
        settings.set_user(&user, mine.clone()).await.unwrap();
        let reopened = Settings::open(dir.path()).await.unwrap();
        assert_eq!(reopened.user(&user), mine);
        let there = reopened.effective(&user, "IRC.example");
        assert_eq!(there.nick.as_deref(), Some("alice_irc"));
        assert_eq!(there.realname.as_deref(), Some("Alice"));
        assert_eq!(there.nickserv_password.as_deref(), Some("pw"));
        let elsewhere = reopened.effective(&user, "other");
        assert_eq!(elsewhere.nick.as_deref(), Some("ali"));
        assert_eq!(elsewhere.password, None);
    }
}
