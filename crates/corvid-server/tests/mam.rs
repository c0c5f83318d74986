//! XEP-0313 message archives over real TLS sessions with raw stanzas: what each party's
//! archive keeps (and the id the recipient saw), preferences, the quota and retention,
//! pages bounded in bytes, the errors a query can get, and room archives with their access
//! rules. The slixmpp interop suite (tests/interop/test_mam.py) covers the everyday use
//! as a client library sees it.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use common::*;
use corvid_proto::ns;
use corvid_store::{Archive, ArchiveEntry, Offline, RosterItem, Rosters, Subscription};
use corvid_xml::Element;

const PASSWORD: &str = "pw";
const SERVICE: &str = "conference.localhost";

async fn server_with(
    users: &[&str],
    adjust: impl FnOnce(&mut corvid_server::Config),
) -> Result<TestServer> {
    let ts = start_server_with(adjust).await?;
    for name in users {
        ts.create_user(name, PASSWORD).await?;
    }
    Ok(ts)
}

fn jid(name: &str) -> String {
    format!("{name}@{DOMAIN}")
}

/// What a query returned: the results' (archive id, forwarded message), and the `<fin/>`.
struct Answer {
    results: Vec<(String, Element)>,
    fin: Element,
}

impl Answer {
    fn bodies(&self) -> Vec<String> {
        self.results
            .iter()
            .filter_map(|(_, m)| message_body(m))
            .collect()
    }

    fn complete(&self) -> bool {
        self.fin.attr("complete") == Some("true")
    }

    fn rsm(&self, name: &str) -> Option<String> {
        self.fin
            .get_child("set", ns::RSM)
            .and_then(|s| s.get_child(name, ns::RSM))
            .map(Element::text)
    }
}

fn form(fields: &[(&str, &str)]) -> Element {
    let mut all = vec![("FORM_TYPE", ns::MAM)];
    all.extend_from_slice(fields);
    corvid_proto::forms::submit(&all)
}

fn set(items: &[(&str, &str)]) -> Element {
    let mut set = Element::new("set", ns::RSM);
    for (name, text) in items {
        set.append_child(Element::new(*name, ns::RSM).with_text(*text));
    }
    set
}

/// Sends a query and reads its results up to the IQ's answer; an error answer is `Err`
/// with the condition.
async fn query(
    client: &mut Client,
    to: Option<&str>,
    fields: &[(&str, &str)],
    rsm: &[(&str, &str)],
) -> Result<std::result::Result<Answer, String>> {
    query_with(client, to, fields, rsm, None).await
}

/// [`query`] with one more child in the `<query/>` (`<flip-page/>`).
async fn query_with(
    client: &mut Client,
    to: Option<&str>,
    fields: &[(&str, &str)],
    rsm: &[(&str, &str)],
    extra: Option<Element>,
) -> Result<std::result::Result<Answer, String>> {
    let id = client.next_id();
    let mut payload = Element::new("query", ns::MAM)
        .with_attr("queryid", format!("q-{id}"))
        .with_child(form(fields));
    if !rsm.is_empty() {
        payload.append_child(set(rsm));
    }
    if let Some(extra) = extra {
        payload.append_child(extra);
    }
    let mut iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", id.as_str())
        .with_child(payload);
    if let Some(to) = to {
        iq.set_attr("to", to);
    }
    client.send(&iq).await?;
    let (reply, skipped) = client
        .recv_until(|el| el.is("iq", ns::CLIENT) && el.attr("id") == Some(id.as_str()))
        .await?;
    if reply.attr("type") == Some("error") {
        let (_, condition) = stanza_error(&reply).context("error without condition")?;
        return Ok(Err(condition));
    }
    let fin = reply
        .get_child("fin", ns::MAM)
        .cloned()
        .with_context(|| format!("no <fin/> in {reply}"))?;
    let mut results = Vec::new();
    for el in skipped.iter().filter(|el| el.is("message", ns::CLIENT)) {
        let Some(result) = el.get_child("result", ns::MAM) else {
            continue;
        };
        ensure!(
            result.attr("queryid") == Some(format!("q-{id}").as_str()),
            "result of another query: {el}"
        );
        let message = result
            .get_child("forwarded", ns::FORWARD)
            .and_then(|f| f.get_child("message", ns::CLIENT))
            .cloned()
            .with_context(|| format!("no forwarded message in {el}"))?;
        results.push((result.attr("id").unwrap_or_default().to_string(), message));
    }
    Ok(Ok(answer_checked(results, fin)?))
}

/// Checks the `<set/>` names the page's oldest and newest result (in whichever order
/// they were sent).
fn answer_checked(results: Vec<(String, Element)>, fin: Element) -> Result<Answer> {
    let answer = Answer { results, fin };
    if let (Some((a, _)), Some((b, _))) = (answer.results.first(), answer.results.last()) {
        let ends = [answer.rsm("first"), answer.rsm("last")];
        ensure!(
            ends == [Some(a.clone()), Some(b.clone())]
                || ends == [Some(b.clone()), Some(a.clone())],
            "<set/> {ends:?} does not name the page's ends {a} and {b}"
        );
    }
    Ok(answer)
}

async fn own_archive(client: &mut Client, fields: &[(&str, &str)]) -> Result<Answer> {
    match query(client, None, fields, &[("max", "250")]).await? {
        Ok(answer) => Ok(answer),
        Err(condition) => bail!("query failed: {condition}"),
    }
}

async fn online(ts: &TestServer, name: &str) -> Result<Client> {
    let mut client = ts.login(name, PASSWORD, Some("r")).await?;
    client.send_presence(0).await?;
    Ok(client)
}

#[tokio::test]
async fn both_parties_archive_and_the_recipient_under_the_id_it_saw() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |_| {}).await?;
    let mut alice = online(&ts, "alice").await?;
    let mut bob = online(&ts, "bob").await?;
    alice.send(&message(&jid("bob"), "chat", "hello")).await?;
    let got = bob.expect_message("hello").await?;
    let seen_id = got
        .get_child("stanza-id", ns::STANZA_ID)
        .and_then(|s| s.attr("id"))
        .context("no stanza-id")?
        .to_string();
    // Chat states alone, no-store hints and errors are not archived.
    let composing = Element::new("message", ns::CLIENT)
        .with_attr("to", jid("bob"))
        .with_attr("type", "chat")
        .with_child(Element::new("composing", ns::CHATSTATES));
    alice.send(&composing).await?;
    let mut private = message(&jid("bob"), "chat", "off the record");
    private.append_child(Element::new("no-store", ns::HINTS));
    alice.send(&private).await?;
    alice.sync().await?;

    let answer = own_archive(&mut bob, &[]).await?;
    assert_eq!(answer.bodies(), ["hello"]);
    assert_eq!(answer.results[0].0, seen_id);
    assert_eq!(
        answer.results[0].1.attr("from"),
        Some(format!("{}/r", jid("alice")).as_str())
    );
    assert!(answer.complete());
    let answer = own_archive(&mut alice, &[]).await?;
    assert_eq!(answer.bodies(), ["hello"]);
    assert_ne!(
        answer.results[0].0, seen_id,
        "the sender's copy has its own id"
    );

    // #extended: by id, and the archive's metadata (its first and last message).
    bob.send(&message(&jid("alice"), "chat", "hello alice"))
        .await?;
    alice.expect_message("hello alice").await?;
    let by_id = own_archive(&mut bob, &[("ids", seen_id.as_str())]).await?;
    assert_eq!(by_id.bodies(), ["hello"]);
    let newest = own_archive(&mut bob, &[]).await?.results[1].0.clone();
    let metadata = bob
        .iq_result("get", None, Element::new("metadata", ns::MAM))
        .await?;
    let bound = |name: &str| {
        metadata
            .get_child("metadata", ns::MAM)
            .and_then(|m| m.get_child(name, ns::MAM))
            .and_then(|b| b.attr("id"))
            .map(str::to_string)
    };
    assert_eq!(bound("start"), Some(seen_id));
    assert_eq!(bound("end"), Some(newest));
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn an_offline_recipient_archives_and_a_missing_one_does_not() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |_| {}).await?;
    let mut alice = online(&ts, "alice").await?;
    alice
        .send(&message(&jid("bob"), "chat", "while you were out"))
        .await?;
    alice
        .send(&message(&jid("nobody"), "chat", "into the void"))
        .await?;
    let (bounce, _) = alice
        .recv_until(|el| el.attr("type") == Some("error"))
        .await?;
    assert_eq!(bounce.attr("from"), Some(jid("nobody").as_str()));
    assert_eq!(
        own_archive(&mut alice, &[]).await?.bodies(),
        ["while you were out"]
    );
    let mut bob = ts.login("bob", PASSWORD, Some("r")).await?;
    assert_eq!(
        own_archive(&mut bob, &[]).await?.bodies(),
        ["while you were out"]
    );
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn preferences_decide_what_is_archived() -> Result<()> {
    let ts = server_with(&["alice", "bob", "carol", "dave"], |_| {}).await?;
    let item = RosterItem {
        jid: jid("alice"),
        subscription: Subscription::Both,
        in_roster: true,
        ..RosterItem::default()
    };
    ts.server
        .store
        .put_roster_item("bob", DOMAIN, &item)
        .await?;
    let mut bob = online(&ts, "bob").await?;
    let prefs = Element::new("prefs", ns::MAM)
        .with_attr("default", "roster")
        .with_child(
            Element::new("always", ns::MAM)
                .with_child(Element::new("jid", ns::MAM).with_text(jid("carol"))),
        )
        .with_child(Element::new("never", ns::MAM));
    let set = bob.iq_result("set", None, prefs).await?;
    let echoed = set.get_child("prefs", ns::MAM).context("no prefs echoed")?;
    assert_eq!(echoed.attr("default"), Some("roster"));
    let got = bob
        .iq_result("get", None, Element::new("prefs", ns::MAM))
        .await?;
    let always: Vec<String> = got
        .get_child("prefs", ns::MAM)
        .and_then(|p| p.get_child("always", ns::MAM))
        .map(|a| a.children().map(Element::text).collect())
        .unwrap_or_default();
    assert_eq!(always, [jid("carol")]);

    for name in ["alice", "carol", "dave"] {
        let mut sender = online(&ts, name).await?;
        sender
            .send(&message(&jid("bob"), "chat", &format!("from {name}")))
            .await?;
        bob.expect_message(&format!("from {name}")).await?;
        // The sender's own default (always) still keeps its copy.
        assert_eq!(own_archive(&mut sender, &[]).await?.results.len(), 1);
    }
    // alice is in the roster, carol is listed always, dave is neither.
    assert_eq!(
        own_archive(&mut bob, &[]).await?.bodies(),
        ["from alice", "from carol"]
    );
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_quota_keeps_the_newest_messages() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |c| c.mam.max_messages_per_user = 5).await?;
    let mut alice = online(&ts, "alice").await?;
    for n in 0..12 {
        alice
            .send(&message(&jid("bob"), "chat", &format!("m{n}")))
            .await?;
    }
    alice.sync().await?;
    // Trimming runs beside the routing; ask until it has caught up (bounded).
    let mut bodies = Vec::new();
    for _ in 0..100 {
        bodies = own_archive(&mut alice, &[]).await?.bodies();
        if bodies.len() <= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bodies, ["m7", "m8", "m9", "m10", "m11"]);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn retention_removes_expired_messages() -> Result<()> {
    let ts = server_with(&["alice"], |c| c.mam.retention_days = 7).await?;
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let day_ms = 86_400_000;
    for (id, age_days) in [("old", 8), ("recent", 6)] {
        let stanza = message(&jid("alice"), "chat", id)
            .with_attr("from", "someone@localhost/x")
            .to_string();
        ts.server
            .store
            .append_archive(ArchiveEntry {
                archive: jid("alice"),
                seq: corvid_store::first_archive_seq_at(now_ms - age_days * day_ms),
                with_bare: "someone@localhost".into(),
                with_full: "someone@localhost/x".into(),
                stanza,
            })
            .await?;
    }
    ts.server.store.archive_sync().await?;
    // The first session starts the retention task.
    let mut alice = online(&ts, "alice").await?;
    let mut bodies = Vec::new();
    for _ in 0..100 {
        bodies = own_archive(&mut alice, &[]).await?.bodies();
        if bodies.len() < 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(bodies, ["recent"]);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_page_stops_short_of_its_byte_budget_and_paging_goes_on() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |c| c.mam.max_page_bytes = 8 * 1024).await?;
    let mut alice = online(&ts, "alice").await?;
    let sent: Vec<String> = (0..20)
        .map(|n| format!("{n:02}{}", "x".repeat(1000)))
        .collect();
    for body in &sent {
        alice.send(&message(&jid("bob"), "chat", body)).await?;
    }
    alice.sync().await?;
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut rsm = vec![("max", "50")];
        if let Some(after) = &after {
            rsm.push(("after", after.as_str()));
        }
        let answer = query(&mut alice, None, &[], &rsm)
            .await?
            .map_err(anyhow::Error::msg)?;
        pages += 1;
        ensure!(
            answer.results.len() < 20,
            "a page of 20 KiB exceeded an 8 KiB budget"
        );
        got.extend(answer.bodies());
        if answer.complete() {
            break;
        }
        after = answer.rsm("last");
        ensure!(pages < 20, "paging does not end");
    }
    assert_eq!(got, sent);
    assert!(pages > 2);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn queries_fail_with_the_conditions_the_xep_names() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |_| {}).await?;
    let mut alice = online(&ts, "alice").await?;
    type Case<'a> = (
        Option<String>,
        &'a [(&'a str, &'a str)],
        &'a [(&'a str, &'a str)],
        &'a str,
    );
    let cases: [Case; 5] = [
        (Some(jid("bob")), &[], &[], "forbidden"),
        (None, &[], &[("after", "no-such-id")], "item-not-found"),
        (None, &[("before-id", "no-such-id")], &[], "item-not-found"),
        (None, &[("start", "last tuesday")], &[], "bad-request"),
        (None, &[("colour", "blue")], &[], "bad-request"),
    ];
    for (to, fields, rsm, condition) in cases {
        let answer = query(&mut alice, to.as_deref(), fields, rsm).await?;
        assert_eq!(
            answer.err().as_deref(),
            Some(condition),
            "{fields:?} {rsm:?}"
        );
    }
    // Field discovery (§5.2) and the account's disco#info.
    let form = alice
        .iq_result("get", None, Element::new("query", ns::MAM))
        .await?;
    let vars: Vec<String> = form
        .get_child("query", ns::MAM)
        .and_then(|q| q.get_child("x", ns::DATA_FORMS))
        .map(|x| {
            x.children()
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for var in [
        "FORM_TYPE",
        "with",
        "start",
        "end",
        "after-id",
        "before-id",
        "ids",
    ] {
        assert!(vars.iter().any(|v| v == var), "{var} missing from {vars:?}");
    }
    let info = alice
        .iq_result(
            "get",
            Some(&jid("alice")),
            Element::new("query", ns::DISCO_INFO),
        )
        .await?;
    let features: Vec<String> = info
        .get_child("query", ns::DISCO_INFO)
        .map(|q| {
            q.children()
                .filter_map(|f| f.attr("var").map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        features.iter().any(|f| f == ns::MAM) && features.iter().any(|f| f == ns::MAM_EXTENDED)
    );
    ts.shutdown().await;
    Ok(())
}

/// An IQ that must succeed, whatever the room sends before its answer (status 104 …).
async fn room_request(
    client: &mut Client,
    kind: &str,
    to: &str,
    payload: Element,
) -> Result<Element> {
    let id = client.next_id();
    let iq = Element::new("iq", ns::CLIENT)
        .with_attr("type", kind)
        .with_attr("id", id.as_str())
        .with_attr("to", to)
        .with_child(payload);
    client.send(&iq).await?;
    let (reply, _) = client
        .recv_until(|el| el.is("iq", ns::CLIENT) && el.attr("id") == Some(id.as_str()))
        .await?;
    ensure!(reply.attr("type") == Some("result"), "{iq} failed: {reply}");
    Ok(reply)
}

/// Enters a room (reading up to its subject).
async fn enter(client: &mut Client, occupant: &str) -> Result<()> {
    let join = Element::new("presence", ns::CLIENT)
        .with_attr("to", occupant)
        .with_child(Element::new("x", ns::MUC));
    client.send(&join).await?;
    let (el, _) = client
        .recv_until(|el| {
            (el.is("message", ns::CLIENT) && el.has_child("subject", ns::CLIENT))
                || el.attr("type") == Some("error")
        })
        .await?;
    ensure!(
        el.attr("type") != Some("error"),
        "could not enter {occupant}: {el}"
    );
    Ok(())
}

#[tokio::test]
async fn room_archives_answer_occupants_and_members_only() -> Result<()> {
    let ts = server_with(&["owner", "member", "outsider"], |_| {}).await?;
    let room = format!("lounge@{SERVICE}");
    let mut owner = online(&ts, "owner").await?;
    enter(&mut owner, &format!("{room}/owner")).await?;
    let config = corvid_proto::forms::submit(&[
        ("FORM_TYPE", ns::MUC_ROOMCONFIG),
        ("muc#roomconfig_membersonly", "1"),
    ]);
    let owner_query = Element::new("query", ns::MUC_OWNER).with_child(config);
    room_request(&mut owner, "set", &room, owner_query).await?;
    let member_item = Element::new("item", ns::MUC_ADMIN)
        .with_attr("jid", jid("member"))
        .with_attr("affiliation", "member");
    let admin_query = Element::new("query", ns::MUC_ADMIN).with_child(member_item);
    room_request(&mut owner, "set", &room, admin_query).await?;
    let mut groupchat = message(&room, "groupchat", "minutes");
    groupchat.set_attr("id", "g1");
    // A muc#user <x/> of the sender's own making is not what the archive keeps.
    groupchat.append_child(
        Element::new("x", ns::MUC_USER)
            .with_child(Element::new("item", ns::MUC_USER).with_attr("jid", jid("outsider"))),
    );
    owner.send(&groupchat).await?;
    let (reflected, _) = owner
        .recv_until(|el| message_body(el).as_deref() == Some("minutes"))
        .await?;
    let room_id = reflected
        .children()
        .find(|c| c.is("stanza-id", ns::STANZA_ID) && c.attr("by") == Some(room.as_str()))
        .and_then(|c| c.attr("id"))
        .context("no stanza-id by the room")?
        .to_string();

    // A member who is not in the room may read it, an outsider may not.
    let mut member = online(&ts, "member").await?;
    let answer = query(&mut member, Some(&room), &[], &[])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(answer.bodies(), ["minutes"]);
    assert_eq!(answer.results[0].0, room_id);
    assert_eq!(
        answer.results[0].1.attr("from"),
        Some(format!("{room}/owner").as_str())
    );
    // A semi-anonymous room: a member outside sees no real JID, the moderator does.
    let real_jid = |m: &Element| {
        m.get_child("x", ns::MUC_USER)
            .and_then(|x| x.get_child("item", ns::MUC_USER))
            .and_then(|i| i.attr("jid"))
            .map(str::to_string)
    };
    assert_eq!(real_jid(&answer.results[0].1), None);
    let seen_by_owner = query(&mut owner, Some(&room), &[], &[])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(real_jid(&seen_by_owner.results[0].1), Some(jid("owner")));
    // Subject changes are kept too (XEP-0313 §7.1.2).
    let subject = Element::new("message", ns::CLIENT)
        .with_attr("to", room.as_str())
        .with_attr("type", "groupchat")
        .with_child(Element::new("subject", ns::CLIENT).with_text("agenda"));
    owner.send(&subject).await?;
    owner
        .recv_until(|el| el.has_child("subject", ns::CLIENT))
        .await?;
    let with_subject = query(&mut member, Some(&room), &[], &[])
        .await?
        .map_err(anyhow::Error::msg)?;
    let last = &with_subject.results.last().context("no results")?.1;
    assert_eq!(
        last.get_child("subject", ns::CLIENT)
            .map(Element::text)
            .as_deref(),
        Some("agenda")
    );
    let mut outsider = online(&ts, "outsider").await?;
    let refused = query(&mut outsider, Some(&room), &[], &[]).await?;
    assert_eq!(refused.err().as_deref(), Some("forbidden"));

    let info = member
        .iq_result("get", Some(&room), Element::new("query", ns::DISCO_INFO))
        .await?;
    assert!(info.to_string().contains(ns::MAM));

    // Archiving turned off: the room says so and keeps nothing more.
    let off = corvid_proto::forms::submit(&[
        ("FORM_TYPE", ns::MUC_ROOMCONFIG),
        ("muc#roomconfig_enablearchiving", "0"),
    ]);
    let owner_query = Element::new("query", ns::MUC_OWNER).with_child(off);
    room_request(&mut owner, "set", &room, owner_query).await?;
    let info = member
        .iq_result("get", Some(&room), Element::new("query", ns::DISCO_INFO))
        .await?;
    assert!(!info.to_string().contains(ns::MAM));
    let refused = query(&mut member, Some(&room), &[], &[]).await?;
    assert_eq!(refused.err().as_deref(), Some("service-unavailable"));
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_page_fits_in_half_the_session_queue() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |c| c.limits.outgoing_queue = 16).await?;
    let mut alice = online(&ts, "alice").await?;
    for n in 0..12 {
        alice
            .send(&message(&jid("bob"), "chat", &format!("m{n}")))
            .await?;
        alice.sync().await?;
    }
    let first = query(&mut alice, None, &[], &[("max", "50")])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(first.results.len(), 8);
    assert!(!first.complete());
    let last = first.rsm("last").context("no <last/>")?;
    let rest = query(&mut alice, None, &[], &[("max", "50"), ("after", &last)])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(rest.bodies(), ["m8", "m9", "m10", "m11"]);
    assert!(rest.complete());
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_flipped_page_is_the_same_page_newest_first() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |_| {}).await?;
    let mut alice = online(&ts, "alice").await?;
    for n in 0..5 {
        alice
            .send(&message(&jid("bob"), "chat", &format!("m{n}")))
            .await?;
    }
    alice.sync().await?;
    let straight = query(&mut alice, None, &[], &[("max", "3"), ("before", "")])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(straight.bodies(), ["m2", "m3", "m4"]);
    let flip = Element::new("flip-page", ns::MAM);
    let flipped = query_with(
        &mut alice,
        None,
        &[],
        &[("max", "3"), ("before", "")],
        Some(flip),
    )
    .await?
    .map_err(anyhow::Error::msg)?;
    assert_eq!(flipped.bodies(), ["m4", "m3", "m2"]);
    assert_eq!(
        (flipped.rsm("first"), flipped.rsm("last")),
        (straight.rsm("first"), straight.rsm("last"))
    );
    ts.shutdown().await;
    Ok(())
}

/// With `[offline] skip_fetched_from_archive = false`, the whole backlog comes, synced or not.
#[tokio::test]
async fn the_operator_can_have_the_whole_offline_backlog_delivered() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |c| {
        c.offline.skip_fetched_from_archive = false;
    })
    .await?;
    let mut alice = online(&ts, "alice").await?;
    for body in ["one", "two"] {
        alice.send(&message(&jid("bob"), "chat", body)).await?;
    }
    alice.sync().await?;
    let mut bob = ts.login("bob", PASSWORD, Some("phone")).await?;
    let synced = query(&mut bob, None, &[], &[("max", "2")])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(synced.bodies(), ["one", "two"]);
    bob.send(&Element::new("presence", ns::CLIENT)).await?;
    for body in ["one", "two"] {
        let delivered = bob.expect_message(body).await?;
        assert!(delivered.has_child("delay", ns::DELAY), "{delivered}");
    }
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn offline_messages_fetched_from_the_archive_before_presence_are_not_sent_again() -> Result<()>
{
    let ts = server_with(&["alice", "bob"], |_| {}).await?;
    let mut alice = online(&ts, "alice").await?;
    for body in ["one", "two", "three"] {
        alice.send(&message(&jid("bob"), "chat", body)).await?;
    }
    alice.sync().await?;
    // bob syncs the two newest from the archive, then comes online.
    let mut bob = ts.login("bob", PASSWORD, Some("phone")).await?;
    let synced = query(&mut bob, None, &[], &[("max", "2"), ("before", "")])
        .await?
        .map_err(anyhow::Error::msg)?;
    assert_eq!(synced.bodies(), ["two", "three"]);
    bob.send(&Element::new("presence", ns::CLIENT)).await?;
    let first = bob.expect_message("one").await?;
    assert!(first.has_child("delay", ns::DELAY), "{first}");
    // Offline storage is emptied (the backlog task deletes what it skipped and what was
    // taken; wait for it, bounded), and whatever it queued before that would have come
    // before a ping's answer: nothing did.
    let mut emptied = false;
    for _ in 0..100 {
        if ts
            .server
            .store
            .offline_messages("bob", DOMAIN)
            .await?
            .is_empty()
        {
            emptied = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(emptied, "offline storage still holds bob's messages");
    bob.sync().await?;
    ts.shutdown().await;
    Ok(())
}
