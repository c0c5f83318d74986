//! [`MucRooms`] over SQL: the `muc_rooms` and `muc_affiliations` tables.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::Row;

use super::SqlStore;
use super::locks::{self, Lock};
use crate::{MucRooms, StoreError, StoredRoom};

#[async_trait]
impl MucRooms for SqlStore {
    async fn muc_rooms(&self, service: &str) -> Result<Vec<StoredRoom>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, creator, config, subject, subject_nick FROM muc_rooms
             WHERE service = $1 ORDER BY name",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        let mut rooms = Vec::with_capacity(rows.len());
        let mut index = HashMap::new();
        for row in &rows {
            let name: String = row.try_get("name")?;
            index.insert(name.clone(), rooms.len());
            rooms.push(StoredRoom {
                service: service.to_owned(),
                name,
                creator: row.try_get("creator")?,
                config: row.try_get("config")?,
                subject: row.try_get("subject")?,
                subject_nick: row.try_get("subject_nick")?,
                affiliations: Vec::new(),
            });
        }
        let rows = sqlx::query(
            "SELECT name, jid, affiliation FROM muc_affiliations WHERE service = $1 ORDER BY name, jid",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let name: String = row.try_get("name")?;
            if let Some(&i) = index.get(&name) {
                rooms[i]
                    .affiliations
                    .push((row.try_get("jid")?, row.try_get("affiliation")?));
            }
        }
        Ok(rooms)
    }

    async fn save_muc_room(&self, room: &StoredRoom) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO muc_rooms (service, name, creator, config, subject, subject_nick)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (service, name) DO UPDATE SET creator = excluded.creator,
                config = excluded.config, subject = excluded.subject,
                subject_nick = excluded.subject_nick",
        )
        .bind(&room.service)
        .bind(&room.name)
        .bind(&room.creator)
        .bind(&room.config)
        .bind(&room.subject)
        .bind(&room.subject_nick)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM muc_affiliations WHERE service = $1 AND name = $2")
            .bind(&room.service)
            .bind(&room.name)
            .execute(&mut *tx)
            .await?;
        for (jid, affiliation) in &room.affiliations {
            sqlx::query(
                "INSERT INTO muc_affiliations (service, name, jid, affiliation) VALUES ($1, $2, $3, $4)",
            )
            .bind(&room.service)
            .bind(&room.name)
            .bind(jid)
            .bind(affiliation)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_muc_room(&self, service: &str, name: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        locks::room(&mut tx, self.backend, Lock::Delete, service, name).await?;
        sqlx::query("DELETE FROM muc_affiliations WHERE service = $1 AND name = $2")
            .bind(service)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM muc_rooms WHERE service = $1 AND name = $2")
            .bind(service)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
