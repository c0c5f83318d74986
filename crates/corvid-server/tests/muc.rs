//! XEP-0045 multi-user chat over real TLS sessions with raw stanzas: the service domain
//! (default, configured, disabled), hostile addresses and payloads, and that a groupchat
//! message reaches each occupant exactly once. The slixmpp interop suite
//! (tests/interop/test_muc.py) covers the use cases as a client sees them.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_xml::Element;

const PASSWORD: &str = "secret";
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

fn join_presence(occupant_jid: &str) -> Element {
    Element::new("presence", ns::CLIENT)
        .with_attr("to", occupant_jid)
        .with_child(Element::new("x", ns::MUC))
}

fn status_codes(el: &Element) -> Vec<String> {
    el.get_child("x", ns::MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", ns::MUC_USER))
                .filter_map(|c| c.attr("code").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Enters a room and reads up to the subject, the last stanza of the entry (§7.2.16).
async fn enter(client: &mut Client, occupant_jid: &str) -> Result<Vec<Element>> {
    client.send(&join_presence(occupant_jid)).await?;
    let (subject, mut got) = client
        .recv_until(|el| {
            el.is("message", ns::CLIENT) && el.has_child("subject", ns::CLIENT)
                || el.attr("type") == Some("error")
        })
        .await
        .with_context(|| format!("entering {occupant_jid}"))?;
    ensure!(
        subject.attr("type") != Some("error"),
        "could not enter {occupant_jid}: {subject}"
    );
    got.push(subject);
    Ok(got)
}

/// Creates an instant room (§10.1.2) with `owner` in it as `nick`.
async fn instant_room(owner: &mut Client, room: &str, nick: &str) -> Result<()> {
    let got = enter(owner, &format!("{room}/{nick}")).await?;
    ensure!(
        got.iter()
            .any(|el| status_codes(el).contains(&"201".to_string())),
        "no 201 in {got:?}"
    );
    let submit = Element::new("query", ns::MUC_OWNER)
        .with_child(Element::new("x", ns::DATA_FORMS).with_attr("type", "submit"));
    owner.iq_result("set", Some(room), submit).await?;
    Ok(())
}

async fn error_condition(client: &mut Client, name: &str) -> Result<String> {
    let (el, _) = client
        .recv_until(|el| el.name() == name && el.attr("type") == Some("error"))
        .await?;
    let (_, condition) = stanza_error(&el).with_context(|| format!("no condition in {el}"))?;
    Ok(condition)
}

#[tokio::test]
async fn service_answers_disco_on_its_default_domain_and_the_server_lists_it() -> Result<()> {
    let ts = server_with(&["alice"], |_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let items = alice
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    let query = items
        .get_child("query", ns::DISCO_ITEMS)
        .context("no query")?;
    ensure!(
        query.children().any(|i| i.attr("jid") == Some(SERVICE)),
        "{items}"
    );
    let info = alice
        .iq_result("get", Some(SERVICE), Element::new("query", ns::DISCO_INFO))
        .await?;
    let query = info
        .get_child("query", ns::DISCO_INFO)
        .context("no query")?;
    let identity = query
        .get_child("identity", ns::DISCO_INFO)
        .context("no identity")?;
    ensure!(
        identity.attr("category") == Some("conference") && identity.attr("type") == Some("text"),
        "{info}"
    );
    Ok(())
}

#[tokio::test]
async fn configured_domain_is_served_and_a_disabled_module_leaves_none() -> Result<()> {
    let ts = server_with(&["alice"], |c| {
        c.muc.domain = Some("rooms.localhost".into())
    })
    .await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .iq_result(
            "get",
            Some("rooms.localhost"),
            Element::new("query", ns::DISCO_INFO),
        )
        .await?;
    let (_, condition) = alice
        .iq_error("get", Some(SERVICE), Element::new("query", ns::DISCO_INFO))
        .await?;
    ensure!(condition == "remote-server-not-found", "{condition}");

    let ts = server_with(&["alice"], |c| c.modules.disabled = vec!["muc".into()]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let (_, condition) = alice
        .iq_error("get", Some(SERVICE), Element::new("query", ns::DISCO_INFO))
        .await?;
    ensure!(condition == "remote-server-not-found", "{condition}");
    Ok(())
}

#[tokio::test]
async fn overlong_nicks_and_room_names_are_refused() -> Result<()> {
    let ts = server_with(&["alice"], |_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send(&join_presence(&format!(
            "room@{SERVICE}/{}",
            "n".repeat(65)
        )))
        .await?;
    ensure!(error_condition(&mut alice, "presence").await? == "not-acceptable");
    alice
        .send(&join_presence(&format!(
            "{}@{SERVICE}/nick",
            "r".repeat(300)
        )))
        .await?;
    ensure!(error_condition(&mut alice, "presence").await? == "not-acceptable");
    // Neither created a room.
    let items = alice
        .iq_result("get", Some(SERVICE), Element::new("query", ns::DISCO_ITEMS))
        .await?;
    ensure!(
        items
            .get_child("query", ns::DISCO_ITEMS)
            .is_some_and(|q| q.children().next().is_none()),
        "{items}"
    );
    Ok(())
}

#[tokio::test]
async fn stanzas_to_missing_rooms_and_bad_admin_queries_get_errors() -> Result<()> {
    let ts = server_with(&["alice", "bob"], |_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let groupchat = Element::new("message", ns::CLIENT)
        .with_attr("to", format!("nowhere@{SERVICE}"))
        .with_attr("type", "groupchat")
        .with_child(Element::new("body", ns::CLIENT).with_text("anyone?"));
    alice.send(&groupchat).await?;
    ensure!(error_condition(&mut alice, "message").await? == "item-not-found");

    let room = format!("lounge@{SERVICE}");
    instant_room(&mut alice, &room, "alice").await?;
    let bogus = Element::new("query", ns::MUC_ADMIN).with_child(
        Element::new("item", ns::MUC_ADMIN)
            .with_attr("affiliation", "king")
            .with_attr("jid", "x@y"),
    );
    let (_, condition) = alice.iq_error("set", Some(&room), bogus).await?;
    ensure!(condition == "bad-request", "{condition}");
    let no_jid = Element::new("query", ns::MUC_ADMIN).with_child(
        Element::new("item", ns::MUC_ADMIN)
            .with_attr("affiliation", "outcast")
            .with_attr("jid", "@@"),
    );
    let (_, condition) = alice.iq_error("set", Some(&room), no_jid).await?;
    ensure!(condition == "jid-malformed", "{condition}");
    let both = Element::new("query", ns::MUC_ADMIN).with_child(
        Element::new("item", ns::MUC_ADMIN)
            .with_attr("nick", "alice")
            .with_attr("role", "none")
            .with_attr("affiliation", "none"),
    );
    let (_, condition) = alice.iq_error("set", Some(&room), both).await?;
    ensure!(condition == "bad-request", "{condition}");
    // Lists are for admins and owners (§9.5); the config form for owners (§10.2).
    let members = Element::new("query", ns::MUC_ADMIN)
        .with_child(Element::new("item", ns::MUC_ADMIN).with_attr("affiliation", "member"));
    let (_, condition) = bob.iq_error("get", Some(&room), members).await?;
    ensure!(condition == "forbidden", "{condition}");
    let (_, condition) = bob
        .iq_error("get", Some(&room), Element::new("query", ns::MUC_OWNER))
        .await?;
    ensure!(condition == "forbidden", "{condition}");
    Ok(())
}

#[tokio::test]
async fn self_presence_carries_the_id_of_the_join() -> Result<()> {
    let ts = server_with(&["alice"], |_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    alice
        .send(&join_presence(&format!("den@{SERVICE}/alice")).with_attr("id", "join-1"))
        .await?;
    let (own, _) = alice
        .recv_until(|el| status_codes(el).contains(&"110".to_string()))
        .await?;
    ensure!(own.attr("id") == Some("join-1"), "{own}");
    Ok(())
}

#[tokio::test]
async fn a_groupchat_message_reaches_each_occupant_once() -> Result<()> {
    let ts = server_with(&["alice", "bob", "carol"], |_| {}).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let mut carol = ts.login("carol", PASSWORD, Some("c")).await?;
    let room = format!("hall@{SERVICE}");
    instant_room(&mut alice, &room, "alice").await?;
    enter(&mut bob, &format!("{room}/bob")).await?;
    enter(&mut carol, &format!("{room}/carol")).await?;
    let message = Element::new("message", ns::CLIENT)
        .with_attr("to", room.as_str())
        .with_attr("type", "groupchat")
        .with_attr("id", "g1")
        .with_child(Element::new("body", ns::CLIENT).with_text("one <&> 二"));
    bob.send(&message).await?;
    for (client, me) in [
        (&mut alice, "alice@localhost/a"),
        (&mut bob, "bob@localhost/b"),
        (&mut carol, "carol@localhost/c"),
    ] {
        let (got, _) = client
            .recv_until(|el| el.is("message", ns::CLIENT) && el.attr("id") == Some("g1"))
            .await
            .with_context(|| format!("the message, at {me}"))?;
        ensure!(
            got.attr("to") == Some(me) && got.attr("from") == Some(format!("{room}/bob").as_str()),
            "{got}"
        );
        ensure!(
            got.get_child("body", ns::CLIENT)
                .is_some_and(|b| b.text() == "one <&> 二"),
            "{got}"
        );
        // A ping round trip later, no second copy has come.
        let ping = Element::new("iq", ns::CLIENT)
            .with_attr("type", "get")
            .with_attr("id", "after")
            .with_attr("to", DOMAIN)
            .with_child(Element::new("ping", ns::PING));
        client.send(&ping).await?;
        let (_, between) = client
            .recv_until(|el| el.is("iq", ns::CLIENT) && el.attr("id") == Some("after"))
            .await?;
        ensure!(
            !between.iter().any(|el| el.attr("id") == Some("g1")),
            "a second copy at {me}: {between:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn two_resources_of_one_user_share_a_nick_and_leave_one_by_one() -> Result<()> {
    let ts = server_with(&["alice", "bob", "eve"], |_| {}).await?;
    let mut phone = ts.login("alice", PASSWORD, Some("phone")).await?;
    let mut laptop = ts.login("alice", PASSWORD, Some("laptop")).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    let mut eve = ts.login("eve", PASSWORD, Some("e")).await?;
    let room = format!("shared@{SERVICE}");
    instant_room(&mut phone, &room, "alice").await?;
    enter(&mut bob, &format!("{room}/bob")).await?;
    // §7.2.9: the same user's second resource shares the nick …
    let got = enter(&mut laptop, &format!("{room}/alice")).await?;
    ensure!(
        got.iter().any(
            |el| el.attr("from") == Some(format!("{room}/alice").as_str())
                && status_codes(el).contains(&"110".to_string())
        ),
        "no self-presence in {got:?}"
    );
    // … another user gets conflict.
    eve.send(&join_presence(&format!("{room}/alice"))).await?;
    ensure!(error_condition(&mut eve, "presence").await? == "conflict");

    // A private message to the nick reaches both devices.
    let pm = Element::new("message", ns::CLIENT)
        .with_attr("to", format!("{room}/alice"))
        .with_attr("type", "chat")
        .with_attr("id", "pm1")
        .with_child(Element::new("body", ns::CLIENT).with_text("psst"));
    bob.send(&pm).await?;
    for device in [&mut phone, &mut laptop] {
        device
            .recv_until(|el| el.attr("id") == Some("pm1"))
            .await
            .context("the private message on each device")?;
    }

    // The laptop leaves: it gets its unavailable self-presence; bob sees nothing of it,
    // and his next groupchat reaches the phone.
    let leave = Element::new("presence", ns::CLIENT)
        .with_attr("to", format!("{room}/alice"))
        .with_attr("type", "unavailable");
    laptop.send(&leave).await?;
    let (gone, _) = laptop
        .recv_until(|el| el.attr("type") == Some("unavailable"))
        .await?;
    ensure!(status_codes(&gone).contains(&"110".to_string()), "{gone}");
    let message = Element::new("message", ns::CLIENT)
        .with_attr("to", room.as_str())
        .with_attr("type", "groupchat")
        .with_attr("id", "g2")
        .with_child(Element::new("body", ns::CLIENT).with_text("still there?"));
    bob.send(&message).await?;
    let (_, before) = bob.recv_until(|el| el.attr("id") == Some("g2")).await?;
    ensure!(
        !before
            .iter()
            .any(|el| el.attr("type") == Some("unavailable")),
        "bob saw a device leave: {before:?}"
    );
    phone.recv_until(|el| el.attr("id") == Some("g2")).await?;

    // The last device leaving takes the occupant out, for bob too.
    phone.send(&leave).await?;
    let (out, _) = bob
        .recv_until(|el| el.attr("type") == Some("unavailable"))
        .await?;
    ensure!(
        out.attr("from") == Some(format!("{room}/alice").as_str()),
        "{out}"
    );
    Ok(())
}
