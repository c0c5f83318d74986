//! Several Corvid nodes serving `localhost` together (`[cluster]`): one database, one real
//! Redis (tests/shared/redis_process.rs) for the registry and the node-to-node channel,
//! each node its own c2s port. Users logged in on different nodes chat, see each other's
//! presence, share rooms and avatars; a full JID bound again on another node replaces the
//! old session; a node that stops takes its sessions out of the registry.
//!
//! The database is one SQLite file, or with `CORVID_TEST_POSTGRES_URL` set (as scripts/test.sh
//! does) a PostgreSQL database of the test's own (tests/shared/postgres.rs). The nodes here
//! run in the test's process; a node killed with SIGKILL is tested with real processes in
//! tests/interop/test_cluster.py.

mod common;
#[path = "../../../tests/shared/postgres.rs"]
mod postgres;
#[path = "../../../tests/shared/redis_process.rs"]
mod redis_process;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use common::services::{Home, a_remote_user_joins_a_room, avatars_cross_the_federation};
use common::{DOMAIN, TestServer, message, start_server_with};
use corvid_proto::ns;
use corvid_store::{RosterItem, Rosters, Subscription};
use corvid_xml::Element;
use redis_process::Redis;

const PASSWORD: &str = common::federation::PASSWORD;

/// Nodes sharing one database and one Redis.
struct Cluster {
    nodes: Vec<TestServer>,
    redis: Redis,
    _db: Database,
}

/// Where the nodes' shared data lives, removed with the test.
enum Database {
    Sqlite(tempfile::TempDir),
    Postgres(postgres::TestDatabase),
}

impl Database {
    async fn new() -> Result<Database> {
        Ok(match postgres::admin_url() {
            Some(admin) => Database::Postgres(postgres::TestDatabase::create(&admin).await),
            None => Database::Sqlite(tempfile::tempdir()?),
        })
    }

    fn url(&self) -> String {
        match self {
            Database::Sqlite(dir) => {
                format!("sqlite:{}", dir.path().join("corvid.sqlite").display())
            }
            Database::Postgres(db) => db.url().to_owned(),
        }
    }
}

async fn cluster(size: usize) -> Result<Cluster> {
    let redis = Redis::start()?;
    let db = Database::new().await?;
    let url = db.url();
    let mut nodes = Vec::new();
    for i in 0..size {
        nodes.push(start_node(&url, &redis, i).await?);
    }
    Ok(Cluster {
        nodes,
        redis,
        _db: db,
    })
}

/// Node `n{i}` of the cluster on database `url` and `redis`.
async fn start_node(url: &str, redis: &Redis, i: usize) -> Result<TestServer> {
    start_server_with(|config| {
        config.storage.url = Some(url.to_owned());
        config.cluster.redis = Some(redis.url());
        config.cluster.node = Some(format!("n{i}"));
        config.cluster.heartbeat_ms = 100;
        config.cluster.dead_after_ms = 1_000;
        config.s2s.enabled = false;
        config.http.enabled = false;
    })
    .await
    .with_context(|| format!("start node n{i}"))
}

impl Cluster {
    fn home(&self, node: usize) -> Home {
        Home::new(DOMAIN, self.nodes[node].c2s_addr.port())
    }

    async fn users(&self, names: &[&str]) -> Result<()> {
        for name in names {
            self.nodes[0].create_user(name, PASSWORD).await?;
        }
        Ok(())
    }

    /// `a` and `b` are each other's contacts, subscribed both ways.
    async fn befriend(&self, a: &str, b: &str) -> Result<()> {
        for (user, contact) in [(a, b), (b, a)] {
            let item = RosterItem {
                jid: format!("{contact}@{DOMAIN}"),
                subscription: Subscription::Both,
                in_roster: true,
                ..RosterItem::default()
            };
            self.nodes[0]
                .server
                .store
                .put_roster_item(user, DOMAIN, &item)
                .await?;
        }
        Ok(())
    }

    /// Waits until every node knows `count` sessions of the others in all.
    async fn settled(&self, count: usize) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let known: Vec<usize> = self
                .nodes
                .iter()
                .map(|n| {
                    n.server.sessions.count()
                        + n.server
                            .sessions
                            .remote_counts()
                            .iter()
                            .map(|(_, c)| c)
                            .sum::<usize>()
                })
                .collect();
            if known.iter().all(|k| *k == count) {
                return Ok(());
            }
            ensure!(
                tokio::time::Instant::now() < deadline,
                "the nodes know {known:?} sessions, not {count} each"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn presence_from(el: &Element) -> Option<(String, Option<String>)> {
    el.is("presence", ns::CLIENT).then(|| {
        (
            el.attr("from").unwrap_or_default().to_owned(),
            el.attr("type").map(str::to_owned),
        )
    })
}

#[tokio::test]
async fn users_on_two_nodes_chat_and_see_each_others_presence() -> Result<()> {
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    c.befriend("alice", "bob").await?;
    let mut bob = c.nodes[1].login("bob", PASSWORD, Some("desk")).await?;
    bob.send_presence(0).await?;
    c.settled(1).await?;
    let mut alice = c.nodes[0].login("alice", PASSWORD, Some("phone")).await?;
    // (Not `send_presence`, whose round trip would skip what comes back.)
    alice.send(&Element::new("presence", ns::CLIENT)).await?;
    // Alice's probe is answered with Bob's presence, kept by his node and known by hers;
    // Bob hears her come online through his node.
    alice
        .recv_until(|el| presence_from(el).is_some_and(|(from, _)| from == "bob@localhost/desk"))
        .await
        .context("alice sees bob's presence")?;
    bob.recv_until(|el| {
        presence_from(el)
            .is_some_and(|(from, kind)| from == "alice@localhost/phone" && kind.is_none())
    })
    .await
    .context("bob sees alice come online")?;

    // To the bare JID (the best resource, on the other node) and to the full JID.
    alice
        .send(&message("bob@localhost", "chat", "hi bob"))
        .await?;
    let got = bob.expect_message("hi bob").await?;
    ensure!(got.attr("from") == Some("alice@localhost/phone"), "{got}");
    bob.send(&message("alice@localhost/phone", "chat", "hi alice"))
        .await?;
    alice.expect_message("hi alice").await?;
    // A burst keeps its order across the nodes.
    for i in 0..200 {
        alice
            .send(&message("bob@localhost/desk", "chat", &format!("m{i}")))
            .await?;
    }
    for i in 0..200 {
        bob.expect_message(&format!("m{i}")).await?;
    }
    // Bob's node said it wrote them all: Alice's keeps no copies (`cluster/acks.rs`).
    let alices_node = c.nodes[0].server.cluster.get().context("clustered")?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while alices_node.unacknowledged() > 0 {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "{} stanzas never acknowledged",
            alices_node.unacknowledged()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // Bob leaves: Alice hears it from his node.
    bob.send(&Element::new("presence", ns::CLIENT).with_attr("type", "unavailable"))
        .await?;
    alice
        .recv_until(|el| {
            presence_from(el).is_some_and(|(from, kind)| {
                from == "bob@localhost/desk" && kind.as_deref() == Some("unavailable")
            })
        })
        .await
        .context("alice sees bob go")?;
    Ok(())
}

#[tokio::test]
async fn a_message_for_a_user_offline_everywhere_is_stored_and_delivered_on_another_node()
-> Result<()> {
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    let mut alice = c.nodes[0].login("alice", PASSWORD, None).await?;
    alice.send_presence(0).await?;
    alice
        .send(&message("bob@localhost", "chat", "while you were out"))
        .await?;
    alice.sync().await?;
    // Stored by node 0; Bob logs in on node 1, whose offline index heard of it.
    let mut bob = c.nodes[1].login("bob", PASSWORD, None).await?;
    bob.send(&Element::new("presence", ns::CLIENT)).await?;
    bob.expect_message("while you were out").await?;
    Ok(())
}

#[tokio::test]
async fn a_full_jid_bound_on_another_node_replaces_the_old_session() -> Result<()> {
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    let mut old = c.nodes[0].login("alice", PASSWORD, Some("phone")).await?;
    old.send_presence(0).await?;
    c.settled(1).await?;
    let mut new = c.nodes[1].login("alice", PASSWORD, Some("phone")).await?;
    new.send_presence(0).await?;
    let (ending, _) = old.read_to_end().await?;
    ensure!(
        matches!(&ending, common::Ending::StreamError(c) if c == "conflict"),
        "the old session ends with {ending:?}"
    );
    c.settled(1).await?;
    let mut bob = c.nodes[0].login("bob", PASSWORD, None).await?;
    bob.send(&message("alice@localhost/phone", "chat", "to the new one"))
        .await?;
    new.expect_message("to the new one").await?;
    Ok(())
}

#[tokio::test]
async fn a_room_is_shared_by_users_of_two_nodes() -> Result<()> {
    let c = cluster(3).await?;
    c.users(&["alice", "bob"]).await?;
    // The room is made through node 1, joined through node 2, and run by whichever node
    // took it first: the stanzas of the user on the other node cross the cluster.
    a_remote_user_joins_a_room(&c.home(1), "alice", &c.home(2), "bob").await
}

#[tokio::test]
async fn avatars_reach_contacts_on_another_node() -> Result<()> {
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    avatars_cross_the_federation(&c.home(0), "alice", &c.home(1), "bob").await
}

#[tokio::test]
async fn a_stopped_node_leaves_the_registry_and_its_users_log_in_elsewhere() -> Result<()> {
    let mut c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    c.befriend("alice", "bob").await?;
    let mut alice = c.nodes[0].login("alice", PASSWORD, None).await?;
    alice.send_presence(0).await?;
    let mut bob = c.nodes[1].login("bob", PASSWORD, Some("desk")).await?;
    bob.send_presence(0).await?;
    alice
        .recv_until(|el| presence_from(el).is_some_and(|(from, _)| from == "bob@localhost/desk"))
        .await?;
    let stopped = c.nodes.remove(1);
    stopped.shutdown().await;
    alice
        .recv_until(|el| {
            presence_from(el).is_some_and(|(from, kind)| {
                from == "bob@localhost/desk" && kind.as_deref() == Some("unavailable")
            })
        })
        .await
        .context("alice sees bob go with his node")?;
    let status = corvid_server::cluster::cluster_status(&c.nodes[0].server.config.cluster).await?;
    let names: Vec<&str> = status.iter().map(|n| n.name.as_str()).collect();
    ensure!(names == ["n0"], "the registry still has {names:?}");
    // Bob logs in again, on the node left, with the same resource.
    let mut bob = c.nodes[0].login("bob", PASSWORD, Some("desk")).await?;
    bob.send_presence(0).await?;
    alice
        .send(&message("bob@localhost", "chat", "welcome back"))
        .await?;
    bob.expect_message("welcome back").await?;
    drop(c.redis);
    Ok(())
}

fn muc_status_codes(el: &Element) -> Vec<String> {
    el.get_child("x", ns::MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", ns::MUC_USER))
                .filter_map(|c| c.attr("code").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Joins `room/nick` and waits for the self-presence (status 110).
async fn join_room(client: &mut common::Client, occupant: &str) -> Result<Element> {
    client
        .send(
            &Element::new("presence", ns::CLIENT)
                .with_attr("to", occupant)
                .with_child(Element::new("x", ns::MUC)),
        )
        .await?;
    let (own, _) = client
        .recv_until(|el| muc_status_codes(el).contains(&"110".to_string()))
        .await
        .with_context(|| format!("joining {occupant}"))?;
    Ok(own)
}

#[tokio::test]
async fn a_room_moves_to_a_live_node_when_its_node_stops() -> Result<()> {
    let mut c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    // Alice makes the room through node 0, which takes it.
    let mut alice = c.nodes[0].login("alice", PASSWORD, None).await?;
    let own = join_room(&mut alice, "lobby@conference.localhost/alice").await?;
    ensure!(muc_status_codes(&own).contains(&"201".to_string()), "{own}");
    let owner = c.nodes[0].server.cluster.get().context("clustered")?;
    ensure!(
        owner.owner_of("lobby@conference.localhost").await == corvid_server::cluster::Owner::Here,
        "node 0 runs the room it made"
    );
    // Node 0 stops; Bob, on node 1, joins: node 1 takes the room over (a new room: it
    // was not persistent, and its occupants went with node 0).
    let stopped = c.nodes.remove(0);
    stopped.shutdown().await;
    let mut bob = c.nodes[0].login("bob", PASSWORD, None).await?;
    let own = join_room(&mut bob, "lobby@conference.localhost/bob").await?;
    ensure!(muc_status_codes(&own).contains(&"201".to_string()), "{own}");
    let node1 = c.nodes[0].server.cluster.get().context("clustered")?;
    ensure!(
        node1.owner_of("lobby@conference.localhost").await == corvid_server::cluster::Owner::Here,
        "the live node runs the room now"
    );
    Ok(())
}

#[tokio::test]
async fn carbons_reach_a_resource_on_another_node() -> Result<()> {
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    let mut phone = c.nodes[0].login("alice", PASSWORD, Some("phone")).await?;
    let mut desk = c.nodes[1].login("alice", PASSWORD, Some("desk")).await?;
    for client in [&mut phone, &mut desk] {
        client
            .iq_result("set", None, Element::new("enable", ns::CARBONS))
            .await?;
        client.send_presence(0).await?;
    }
    c.settled(2).await?;
    let mut bob = c.nodes[0].login("bob", PASSWORD, None).await?;
    bob.send_presence(0).await?;
    // To the phone (node 0): the desk (node 1) gets a carbon of it.
    bob.send(&message("alice@localhost/phone", "chat", "to the phone"))
        .await?;
    phone.expect_message("to the phone").await?;
    let (carbon, _) = desk
        .recv_until(|el| el.has_child("received", ns::CARBONS))
        .await
        .context("the desk's carbon")?;
    ensure!(
        carbon.to_string().contains("to the phone"),
        "a carbon of the message: {carbon}"
    );
    // Sent from the desk (node 1): the phone (node 0) gets a sent carbon.
    desk.send(&message("bob@localhost", "chat", "from the desk"))
        .await?;
    bob.expect_message("from the desk").await?;
    let (carbon, _) = phone
        .recv_until(|el| el.has_child("sent", ns::CARBONS))
        .await
        .context("the phone's sent carbon")?;
    ensure!(carbon.to_string().contains("from the desk"), "{carbon}");
    Ok(())
}

/// What an operator does through any node (the admin API and socket call these) reaches
/// the sessions of every node: the list shows them with their node, an announcement gets
/// to them, a kick closes them.
#[tokio::test]
async fn admin_operations_on_one_node_reach_the_sessions_of_every_node() -> Result<()> {
    use corvid_server::operations;
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    let mut alice = c.nodes[0].login("alice", PASSWORD, Some("desk")).await?;
    alice.send_presence(0).await?;
    let mut bob = c.nodes[1].login("bob", PASSWORD, Some("phone")).await?;
    bob.send_presence(0).await?;
    c.settled(2).await?;

    let via = &c.nodes[0].server;
    let listed: Vec<(String, Option<String>, bool)> = operations::sessions(via)
        .into_iter()
        .map(|s| {
            (
                s.jid.to_string(),
                s.node.as_deref().map(str::to_owned),
                s.origin.is_some(),
            )
        })
        .collect();
    ensure!(
        listed
            == [
                ("alice@localhost/desk".to_owned(), None, true),
                (
                    "bob@localhost/phone".to_owned(),
                    Some("n1".to_owned()),
                    false
                ),
            ],
        "{listed:?}"
    );

    ensure!(operations::announce(via, "maintenance at noon").await == 2);
    for client in [&mut alice, &mut bob] {
        let got = client.expect_message("maintenance at noon").await?;
        ensure!(got.attr("type") == Some("headline"), "{got}");
    }

    let bob_jid = corvid_proto::FullJid::new("bob@localhost/phone")?;
    ensure!(operations::kick(via, &bob_jid), "bob's session not found");
    bob.expect_stream_error("policy-violation").await?;
    Ok(())
}

/// Redis restarted without persistence comes back empty: each node subscribes again and
/// puts back its place, its sessions and the rooms it runs; they route to each other again,
/// and a room still has one node running it.
#[tokio::test]
async fn the_nodes_recover_when_redis_restarts_empty() -> Result<()> {
    let mut c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    let mut alice = c.nodes[0].login("alice", PASSWORD, Some("desk")).await?;
    alice.send_presence(0).await?;
    let mut bob = c.nodes[1].login("bob", PASSWORD, Some("phone")).await?;
    bob.send_presence(0).await?;
    c.settled(2).await?;
    join_room(&mut alice, "hall@conference.localhost/alice").await?;
    // XEP-0045 §10.1.2: an instant room, unlocked for others.
    let submit = Element::new("query", ns::MUC_OWNER)
        .with_child(Element::new("x", "jabber:x:data").with_attr("type", "submit"));
    alice
        .send(
            &Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", "unlock")
                .with_attr("to", "hall@conference.localhost")
                .with_child(submit),
        )
        .await?;
    let (unlocked, _) = alice
        .recv_until(|el| el.name() == "iq" && el.attr("id") == Some("unlock"))
        .await?;
    ensure!(unlocked.attr("type") == Some("result"), "{unlocked}");
    join_room(&mut bob, "hall@conference.localhost/bob").await?;

    c.redis.restart()?;
    let config = c.nodes[0].server.config.cluster.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = corvid_server::cluster::cluster_status(&config).await;
        let listed: Vec<(String, bool, u64)> = status
            .iter()
            .flatten()
            .map(|n| (n.name.clone(), n.alive, n.sessions))
            .collect();
        if listed == [("n0".to_owned(), true, 1), ("n1".to_owned(), true, 1)] {
            break;
        }
        ensure!(
            tokio::time::Instant::now() < deadline,
            "the registry after the restart: {listed:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.settled(2).await?;

    alice
        .send(&message("bob@localhost/phone", "chat", "after the restart"))
        .await?;
    bob.recv_until(|el| has_body(el, "after the restart"))
        .await
        .context("alice's message after the restart")?;
    // A node that joins now finds the room's owner in Redis again: node 0.
    let url = c._db.url();
    let late = start_node(&url, &c.redis, 2).await?;
    let node2 = late.server.cluster.get().context("clustered")?;
    ensure!(
        node2.owner_of("hall@conference.localhost").await
            == corvid_server::cluster::Owner::Node("n0".into()),
        "node 0 still runs the room"
    );
    // And the dialback secret the others put back (XEP-0220 keys any node can verify).
    let key = |node: &TestServer| node.server.s2s.dialback_key("remote.example", DOMAIN, "s1");
    ensure!(
        key(&late) == key(&c.nodes[0]) && key(&late) == key(&c.nodes[1]),
        "the nodes make different dialback keys"
    );
    c.nodes.push(late);
    bob.send(&message(
        "hall@conference.localhost",
        "groupchat",
        "one room still",
    ))
    .await?;
    alice
        .recv_until(|el| has_body(el, "one room still"))
        .await
        .context("bob's groupchat after the restart")?;
    Ok(())
}

fn has_body(el: &Element, body: &str) -> bool {
    el.is("message", ns::CLIENT)
        && el
            .get_child("body", ns::CLIENT)
            .is_some_and(|b| b.text() == body)
}

/// The pubsub service (XEP-0060) is run by one node: a user of another node subscribes
/// through it, gets the notifications of items published on the other, and reads them.
#[tokio::test]
async fn the_pubsub_service_serves_users_of_every_node() -> Result<()> {
    const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
    const SERVICE: &str = "pubsub.localhost";
    let c = cluster(2).await?;
    c.users(&["alice", "bob"]).await?;
    let mut alice = c.nodes[0].login("alice", PASSWORD, Some("desk")).await?;
    let mut bob = c.nodes[1].login("bob", PASSWORD, Some("phone")).await?;
    let pubsub = |child: Element| Element::new("pubsub", PUBSUB).with_child(child);

    alice
        .iq_result(
            "set",
            Some(SERVICE),
            pubsub(Element::new("create", PUBSUB).with_attr("node", "news")),
        )
        .await?;
    let subscribed = bob
        .iq_result(
            "set",
            Some(SERVICE),
            pubsub(
                Element::new("subscribe", PUBSUB)
                    .with_attr("node", "news")
                    .with_attr("jid", "bob@localhost/phone"),
            ),
        )
        .await?;
    let state = subscribed
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("subscription", PUBSUB))
        .and_then(|s| s.attr("subscription"));
    ensure!(state == Some("subscribed"), "{subscribed}");
    let item = Element::new("item", PUBSUB)
        .with_attr("id", "first")
        .with_child(Element::new("entry", "urn:example:news").with_text("hello"));
    alice
        .iq_result(
            "set",
            Some(SERVICE),
            pubsub(
                Element::new("publish", PUBSUB)
                    .with_attr("node", "news")
                    .with_child(item),
            ),
        )
        .await?;
    let (event, _) = bob
        .recv_until(|el| el.is("message", ns::CLIENT) && el.attr("from") == Some(SERVICE))
        .await
        .context("the notification on node 1")?;
    const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
    let notified = event
        .get_child("event", EVENT)
        .and_then(|e| e.get_child("items", EVENT))
        .and_then(|i| i.get_child("item", EVENT))
        .and_then(|i| i.attr("id"));
    ensure!(notified == Some("first"), "{event}");
    let items = bob
        .iq_result(
            "get",
            Some(SERVICE),
            pubsub(Element::new("items", PUBSUB).with_attr("node", "news")),
        )
        .await?;
    let text = items
        .get_child("pubsub", PUBSUB)
        .and_then(|p| p.get_child("items", PUBSUB))
        .and_then(|i| i.get_child("item", PUBSUB))
        .and_then(|i| i.get_child("entry", "urn:example:news"))
        .map(|e| e.text());
    ensure!(text.as_deref() == Some("hello"), "{items}");
    Ok(())
}
