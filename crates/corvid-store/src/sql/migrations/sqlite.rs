//! SQLite's schema steps (see `migrations.rs`). Text compares bytewise (BINARY collation),
//! as the code expects of keys and ordered columns.

use super::Migration;

pub(super) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        statements: &[
            // Credentials are SCRAM salted keys (RFC 5802 §3), one salt/iteration count for both
            // hashes. TEXT compares bytewise (BINARY collation), so `list_users` sorts by byte order.
            "CREATE TABLE users (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            salt BLOB NOT NULL,
            iterations INTEGER NOT NULL,
            sha1_stored_key BLOB NOT NULL,
            sha1_server_key BLOB NOT NULL,
            sha256_stored_key BLOB NOT NULL,
            sha256_server_key BLOB NOT NULL,
            created_at INTEGER NOT NULL,
            PRIMARY KEY (domain, username)
        )",
        ],
    },
    Migration {
        version: 2,
        // Per-account data. Every table references `users`, so no row can outlive (or predate) its
        // account: a write racing `delete_user` fails instead of leaving data that a later account
        // of the same name would inherit, and `delete_user` fails loudly if a table is forgotten.
        statements: &[
            // RFC 6121 Appendix A state of one contact; `in_roster = 0` rows only remember a
            // pending inbound request. `contact` is a normalized bare JID, ordered bytewise.
            // Flags are 0/1 integers: sqlx's Any driver cannot decode SQLite BOOLEAN columns.
            "CREATE TABLE roster_items (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            contact TEXT NOT NULL,
            name TEXT,
            subscription TEXT NOT NULL CHECK (subscription IN ('none', 'to', 'from', 'both')),
            pending_out INTEGER NOT NULL CHECK (pending_out IN (0, 1)),
            pending_in INTEGER NOT NULL CHECK (pending_in IN (0, 1)),
            approved INTEGER NOT NULL CHECK (approved IN (0, 1)),
            in_roster INTEGER NOT NULL CHECK (in_roster IN (0, 1)),
            pending_in_stanza TEXT,
            PRIMARY KEY (domain, username, contact),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
            // Groups in a table of their own: any group name round-trips, no separator to escape.
            // `position` keeps the order the item was stored with.
            "CREATE TABLE roster_groups (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            contact TEXT NOT NULL,
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            PRIMARY KEY (domain, username, contact, position),
            FOREIGN KEY (domain, username, contact)
                REFERENCES roster_items (domain, username, contact)
        )",
            // XEP-0237 roster version: bumped in the transaction of every roster change.
            "CREATE TABLE roster_versions (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            version INTEGER NOT NULL,
            PRIMARY KEY (domain, username),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
            // XEP-0160 offline storage. AUTOINCREMENT: an id is never reused, so a stale id held
            // by a session (or a XEP-0013 node) can never delete a newer message.
            "CREATE TABLE offline_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            stanza TEXT NOT NULL,
            stamp_ms INTEGER NOT NULL,
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
            "CREATE INDEX offline_messages_by_owner ON offline_messages (domain, username, id)",
            // XEP-0054 vCard, with the XEP-0153 photo hash kept beside it for presence.
            "CREATE TABLE vcards (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            xml TEXT NOT NULL,
            photo_hash TEXT,
            PRIMARY KEY (domain, username),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
            // XEP-0049 private XML storage, one element per namespace.
            "CREATE TABLE private_xml (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            namespace TEXT NOT NULL,
            xml TEXT NOT NULL,
            PRIMARY KEY (domain, username, namespace),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
            // XEP-0191 blocking command.
            "CREATE TABLE blocklist (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            jid TEXT NOT NULL,
            PRIMARY KEY (domain, username, jid),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
            // XEP-0012 last activity: when the last resource went offline, and its status.
            "CREATE TABLE last_activity (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            logout_secs INTEGER NOT NULL,
            status TEXT NOT NULL,
            PRIMARY KEY (domain, username),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
        ],
    },
    Migration {
        version: 3,
        // XEP-0045 persistent rooms: configuration and subject, and the affiliations. A room
        // belongs to its service, not to an account: no foreign key to `users`.
        statements: &[
            "CREATE TABLE muc_rooms (
            service TEXT NOT NULL,
            name TEXT NOT NULL,
            creator TEXT NOT NULL,
            config TEXT NOT NULL,
            subject TEXT NOT NULL,
            subject_nick TEXT NOT NULL,
            PRIMARY KEY (service, name)
        )",
            "CREATE TABLE muc_affiliations (
            service TEXT NOT NULL,
            name TEXT NOT NULL,
            jid TEXT NOT NULL,
            affiliation TEXT NOT NULL CHECK (affiliation IN ('owner', 'admin', 'member', 'outcast')),
            PRIMARY KEY (service, name, jid),
            FOREIGN KEY (service, name) REFERENCES muc_rooms (service, name)
        )",
        ],
    },
    Migration {
        version: 4,
        // XEP-0060 publish-subscribe and XEP-0163 PEP. `service` is a service domain or, for
        // PEP, the owner's bare JID; like MUC rooms, nodes reference no account (`delete_user`
        // deletes the PEP service by its bare JID). Every child row references its node, so
        // none outlives it; deletions remove children explicitly (no ON DELETE CASCADE).
        statements: &[
            "CREATE TABLE pubsub_nodes (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            config TEXT NOT NULL,
            PRIMARY KEY (service, node)
        )",
            // XEP-0060 §4.1 affiliations; `none` is the absence of a row.
            "CREATE TABLE pubsub_affiliations (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            jid TEXT NOT NULL,
            affiliation TEXT NOT NULL
                CHECK (affiliation IN ('owner', 'publisher', 'publish-only', 'member', 'outcast')),
            PRIMARY KEY (service, node, jid),
            FOREIGN KEY (service, node) REFERENCES pubsub_nodes (service, node)
        )",
            // XEP-0060 §4.2 subscription states; `none` is the absence of a row. One JID may
            // hold several subscriptions told apart by subid (§6.1.6).
            "CREATE TABLE pubsub_subscriptions (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            jid TEXT NOT NULL,
            subid TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('subscribed', 'pending', 'unconfigured')),
            options TEXT NOT NULL,
            PRIMARY KEY (service, node, jid, subid),
            FOREIGN KEY (service, node) REFERENCES pubsub_nodes (service, node)
        )",
            // `seq` orders a node's items by publication, higher = newer; republishing an id
            // gives it a new, highest `seq`.
            "CREATE TABLE pubsub_items (
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            item_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            publisher TEXT NOT NULL,
            payload TEXT NOT NULL,
            published_at INTEGER NOT NULL,
            PRIMARY KEY (service, node, item_id),
            FOREIGN KEY (service, node) REFERENCES pubsub_nodes (service, node)
        )",
            // Keyset paging (XEP-0059) and trimming walk this index from either end; a page
            // deep in a large node costs what the first page of a small one does.
            "CREATE UNIQUE INDEX pubsub_items_by_seq ON pubsub_items (service, node, seq)",
        ],
    },
    Migration {
        version: 5,
        // XEP-0313 message archives, keyed by the archive's bare JID (an account's or a
        // room's): no foreign key to `users`, `delete_user` deletes the account's archive by
        // its bare JID, like its PEP service.
        statements: &[
            // `seq` is the order of every archive at once (see sql/archive_writer.rs): the
            // rowid, so new messages append to the table's B-tree. `stamp_ms` never decreases
            // as `seq` grows, so a time window is a `seq` range.
            "CREATE TABLE archive_messages (
            seq INTEGER PRIMARY KEY,
            archive TEXT NOT NULL,
            id TEXT NOT NULL,
            stamp_ms INTEGER NOT NULL,
            with_bare TEXT NOT NULL,
            with_full TEXT NOT NULL,
            stanza TEXT NOT NULL
        )",
            // Every SQLite index entry ends with the rowid, `seq`: an index on `archive` is
            // walked in (archive, seq) order. Every page is a range scan of one of these two
            // (no filter, `with` a JID: a full JID filters the entries of its bare one), from
            // either end. Few indexes, because each costs every archived message a B-tree
            // insert at a random place; `seq` and `stamp_ms` only grow, so theirs are appends.
            "CREATE INDEX archive_messages_by_archive ON archive_messages (archive)",
            "CREATE INDEX archive_messages_by_with ON archive_messages (archive, with_bare)",
            // XEP-0359: a stanza-id is unique in its archive; RSM anchors and `ids` look up here.
            "CREATE UNIQUE INDEX archive_messages_by_id ON archive_messages (archive, id)",
            // A time window's ends (their `seq`, the same in every archive), and retention.
            "CREATE INDEX archive_messages_by_stamp ON archive_messages (stamp_ms)",
            // What the archive table looks like to SQLite's planner until an ANALYZE measures
            // it (stat: rows, then rows per value of each index prefix): many messages per
            // archive, few per correspondent. Without it the planner scores the archive index
            // and the `with` index alike and may page a `with` query by filtering the whole
            // archive. ANALYZE of the schema table creates `sqlite_stat1`.
            "ANALYZE sqlite_schema",
            "DELETE FROM sqlite_stat1 WHERE tbl = 'archive_messages'",
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
                ('archive_messages', 'archive_messages_by_archive', '100000 1000'),
                ('archive_messages', 'archive_messages_by_with', '100000 1000 50'),
                ('archive_messages', 'archive_messages_by_id', '100000 1000 1'),
                ('archive_messages', 'archive_messages_by_stamp', '100000 1')",
            // Loads them into this connection; the others load them with the new schema.
            "ANALYZE sqlite_schema",
            // XEP-0313 §6 preferences; `always` and `never` are newline-separated bare JIDs
            // (RFC 7622 §3.2-3.3: no JID part may hold a control character).
            "CREATE TABLE archive_prefs (
            archive TEXT NOT NULL PRIMARY KEY,
            default_mode TEXT NOT NULL CHECK (default_mode IN ('always', 'never', 'roster')),
            always TEXT NOT NULL,
            never TEXT NOT NULL
        )",
        ],
    },
    Migration {
        version: 6,
        statements: &[
            // XEP-0357 push registrations: one row per (app server, node) of an account.
            "CREATE TABLE push_registrations (
            domain TEXT NOT NULL,
            username TEXT NOT NULL,
            service TEXT NOT NULL,
            node TEXT NOT NULL,
            options TEXT NOT NULL,
            PRIMARY KEY (domain, username, service, node),
            FOREIGN KEY (domain, username) REFERENCES users (domain, username)
        )",
        ],
    },
    Migration {
        version: 7,
        // Archive ids become archive numbers (see archive.rs): the stanza-id is `seq` in
        // decimal and the stamp is `seq`'s upper bits, so neither needs a column or an index.
        // Each index costs every archived message a B-tree insert and, at commit, a page
        // written per archive it touched; with one index left, an archive costs a third of
        // what it did to write. Messages archived before keep their order and time, under new
        // numbers; the ids clients knew them by are gone (a query naming one gets
        // item-not-found, and clients then sync from a date).
        statements: &[
            "CREATE TABLE archive_messages_7 (
            seq INTEGER PRIMARY KEY,
            archive TEXT NOT NULL,
            with_bare TEXT NOT NULL,
            with_full TEXT NOT NULL,
            stanza TEXT NOT NULL
        )",
            "INSERT INTO archive_messages_7 (seq, archive, with_bare, with_full, stanza)
             SELECT (MAX(stamp_ms, 0) << 20)
                    + ROW_NUMBER() OVER (PARTITION BY MAX(stamp_ms, 0) ORDER BY seq) - 1,
                    archive, with_bare, with_full, stanza
             FROM archive_messages",
            "DROP TABLE archive_messages",
            "ALTER TABLE archive_messages_7 RENAME TO archive_messages",
            // Pages walk this index in (archive, seq) order from either end; a `with` filter
            // is checked on the index entries themselves (the rows are read only for the
            // messages returned), so filtering costs a few index entries per message skipped.
            "CREATE INDEX archive_messages_by_archive ON archive_messages (archive, seq, with_bare)",
            "DELETE FROM sqlite_stat1 WHERE tbl = 'archive_messages'",
            "INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES
                ('archive_messages', 'archive_messages_by_archive', '100000 1000 1 1')",
            "ANALYZE sqlite_schema",
        ],
    },
];
