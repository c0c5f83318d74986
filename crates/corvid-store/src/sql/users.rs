//! [`Users`] over SQL: the `users` table.

use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use corvid_proto::sasl::{Credentials, ScramKeys};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::locks::{self, Lock};
use crate::{StoreError, Users};

/// Deletes every row an account owns, children before parents (`$1` domain, `$2` username).
/// Every table holding per-account data gets its statement here; the foreign keys to `users`
/// make `delete_user` fail rather than leave rows of a forgotten table behind.
/// Other accounts' roster items naming this one are the server's business: it must tell those
/// contacts with unsubscribes and roster pushes, which storage cannot.
const DELETE_ACCOUNT_DATA: &[&str] = &[
    "DELETE FROM roster_groups WHERE domain = $1 AND username = $2",
    "DELETE FROM roster_items WHERE domain = $1 AND username = $2",
    "DELETE FROM roster_versions WHERE domain = $1 AND username = $2",
    "DELETE FROM offline_messages WHERE domain = $1 AND username = $2",
    "DELETE FROM vcards WHERE domain = $1 AND username = $2",
    "DELETE FROM private_xml WHERE domain = $1 AND username = $2",
    "DELETE FROM blocklist WHERE domain = $1 AND username = $2",
    "DELETE FROM last_activity WHERE domain = $1 AND username = $2",
    "DELETE FROM push_registrations WHERE domain = $1 AND username = $2",
];

#[async_trait]
impl Users for SqlStore {
    async fn create_user(
        &self,
        username: &str,
        domain: &str,
        creds: &Credentials,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (domain, username, salt, iterations, sha1_stored_key,
                sha1_server_key, sha256_stored_key, sha256_server_key, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(domain)
        .bind(username)
        .bind(creds.salt.as_slice())
        .bind(i64::from(creds.iterations))
        .bind(creds.sha1.stored_key.as_slice())
        .bind(creds.sha1.server_key.as_slice())
        .bind(creds.sha256.stored_key.as_slice())
        .bind(creds.sha256.server_key.as_slice())
        .bind(unix_now())
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_insert)?;
        tracing::info!(username, domain, "user created");
        Ok(())
    }

    async fn credentials(
        &self,
        username: &str,
        domain: &str,
    ) -> Result<Option<Credentials>, StoreError> {
        let row = sqlx::query(
            "SELECT salt, iterations, sha1_stored_key, sha1_server_key, sha256_stored_key,
                sha256_server_key
             FROM users WHERE domain = $1 AND username = $2",
        )
        .bind(domain)
        .bind(username)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(credentials_from_row).transpose()
    }

    async fn set_credentials(
        &self,
        username: &str,
        domain: &str,
        creds: &Credentials,
    ) -> Result<(), StoreError> {
        let updated = sqlx::query(
            "UPDATE users SET salt = $1, iterations = $2, sha1_stored_key = $3,
                sha1_server_key = $4, sha256_stored_key = $5, sha256_server_key = $6
             WHERE domain = $7 AND username = $8",
        )
        .bind(creds.salt.as_slice())
        .bind(i64::from(creds.iterations))
        .bind(creds.sha1.stored_key.as_slice())
        .bind(creds.sha1.server_key.as_slice())
        .bind(creds.sha256.stored_key.as_slice())
        .bind(creds.sha256.server_key.as_slice())
        .bind(domain)
        .bind(username)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 0 {
            return Err(StoreError::NotFound);
        }
        tracing::info!(username, domain, "user credentials changed");
        Ok(())
    }

    async fn delete_user(&self, username: &str, domain: &str) -> Result<(), StoreError> {
        // Messages queued for the account's archive before now are written first, so the
        // deletion below takes them too instead of leaving them to a later account of the
        // same name.
        self.archive.flush().await?;
        let mut tx = self.begin_write().await?;
        // Removing an account is all-or-nothing. The account row goes last (the per-account
        // tables reference it); if it is absent we roll back. Locked first: a write to the
        // account's data that comes later fails as on an account already gone.
        locks::account(&mut tx, self.backend, Lock::Delete, username, domain).await?;
        for statement in DELETE_ACCOUNT_DATA {
            sqlx::query(*statement)
                .bind(domain)
                .bind(username)
                .execute(&mut *tx)
                .await?;
        }
        // XEP-0163 §3: the account's PEP service is its bare JID; it goes with the account.
        // Usernames and domains are stored normalized, so this is the key PEP wrote under.
        let bare_jid = format!("{username}@{domain}");
        super::pubsub::delete_service(&mut tx, self.backend, &bare_jid).await?;
        // XEP-0313: the account's archive is keyed by its bare JID too.
        super::archive::delete_archive(&mut tx, &bare_jid).await?;
        let deleted = sqlx::query("DELETE FROM users WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound); // dropping `tx` rolls back
        }
        let committed = tx.commit().await;
        self.roster_cache.invalidate(username, domain);
        self.changed(crate::StoreChange::Roster {
            username: username.to_owned(),
            domain: domain.to_owned(),
        });
        committed?;
        tracing::info!(username, domain, "user deleted");
        Ok(())
    }

    async fn user_exists(&self, username: &str, domain: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT username FROM users WHERE domain = $1 AND username = $2")
            .bind(domain)
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    async fn list_users(&self, domain: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        let rows = match domain {
            Some(domain) => {
                sqlx::query(
                    "SELECT username, domain FROM users WHERE domain = $1 ORDER BY username",
                )
                .bind(domain)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT username, domain FROM users ORDER BY domain, username")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| Ok((row.try_get("username")?, row.try_get("domain")?)))
            .collect()
    }
}

fn credentials_from_row(row: &AnyRow) -> Result<Credentials, StoreError> {
    let iterations: i64 = row.try_get("iterations")?;
    let iterations = u32::try_from(iterations)
        .map_err(|_| StoreError::Corrupt(format!("SCRAM iteration count {iterations}")))?;
    Ok(Credentials {
        salt: row.try_get("salt")?,
        iterations,
        sha1: ScramKeys {
            stored_key: row.try_get("sha1_stored_key")?,
            server_key: row.try_get("sha1_server_key")?,
        },
        sha256: ScramKeys {
            stored_key: row.try_get("sha256_stored_key")?,
            server_key: row.try_get("sha256_server_key")?,
        },
    })
}

/// Seconds since the Unix epoch, for `created_at` columns.
fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new table of per-account data must get its DELETE in [`DELETE_ACCOUNT_DATA`].
    #[tokio::test]
    async fn delete_user_clears_every_account_table() {
        let (_db, store) = crate::sql::test_db::test_store().await;
        let tables: Vec<String> = crate::sql::test_db::table_names(&store)
            .await
            .into_iter()
            .filter(|name| !["users", "muc_rooms", "muc_affiliations"].contains(&name.as_str()))
            // keyed by service (for PEP, the bare JID): see pubsub::DELETE_SERVICE
            .filter(|name| !name.starts_with("pubsub"))
            // keyed by archive (the bare JID): see archive::DELETE_ARCHIVE
            .filter(|name| !name.starts_with("archive"))
            .collect();
        assert!(!tables.is_empty());
        for table in tables {
            let statement = format!("DELETE FROM {table} WHERE domain = $1 AND username = $2");
            assert!(
                DELETE_ACCOUNT_DATA.contains(&statement.as_str()),
                "{table} is not cleared by delete_user"
            );
        }
    }
}
