//! XEP-0115 entity capabilities: the server's own caps, and its verified cache of what
//! clients' caps hashes mean (asked once per verification string, never cached unverified).

mod common;

use anyhow::{Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_xml::Element;

const PASSWORD: &str = "pw";
const NODE: &str = "http://code.google.com/p/exodus";
/// XEP-0115 §5.2: the hash of `exodus_info()`.
const EXODUS_VER: &str = "QgayPKawpkPSDYmwT/WM94uAlu0=";

fn exodus_info() -> Element {
    let mut query = Element::new("query", ns::DISCO_INFO).with_child(
        Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", "client")
            .with_attr("type", "pc")
            .with_attr("name", "Exodus 0.9.1"),
    );
    for var in [
        ns::DISCO_INFO,
        ns::DISCO_ITEMS,
        "http://jabber.org/protocol/muc",
        ns::CAPS,
    ] {
        query.append_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
    }
    query
}

fn is_caps_query(el: &Element, ver: &str) -> bool {
    el.is("iq", ns::CLIENT)
        && el.attr("type") == Some("get")
        && el
            .get_child("query", ns::DISCO_INFO)
            .is_some_and(|q| q.attr("node") == Some(format!("{NODE}#{ver}").as_str()))
}

async fn present_caps(client: &mut Client, ver: &str) -> Result<()> {
    let presence = Element::new("presence", ns::CLIENT).with_child(
        Element::new("c", ns::CAPS)
            .with_attr("hash", "sha-1")
            .with_attr("node", NODE)
            .with_attr("ver", ver),
    );
    client.send(&presence).await
}

/// Presents `ver` and answers the server's disco#info query with `info`.
async fn present_and_answer(client: &mut Client, ver: &str, info: Element) -> Result<()> {
    present_caps(client, ver).await?;
    let (query, _) = client.recv_until(|el| is_caps_query(el, ver)).await?;
    ensure!(
        query.attr("from") == Some(DOMAIN),
        "query not from the server: {query}"
    );
    let mut reply = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("to", DOMAIN);
    if let Some(id) = query.attr("id") {
        reply.set_attr("id", id);
    }
    let info = info.with_attr("node", format!("{NODE}#{ver}"));
    client.send(&reply.with_child(info)).await?;
    client.sync().await
}

/// Presents `ver` and reports whether the server asked what it means.
async fn server_asks_about(client: &mut Client, ver: &str) -> Result<bool> {
    present_caps(client, ver).await?;
    let ping_id = "caps-sync";
    let ping = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", ping_id)
        .with_attr("to", DOMAIN)
        .with_child(Element::new("ping", ns::PING));
    client.send(&ping).await?;
    let (_, skipped) = client
        .recv_until(|el| el.attr("id") == Some(ping_id))
        .await?;
    // The lookup runs beside the session; give it a moment to ask, if it is going to.
    if skipped.iter().any(|el| is_caps_query(el, ver)) {
        return Ok(true);
    }
    match tokio::time::timeout(
        std::time::Duration::from_millis(300),
        client.recv_until(|el| is_caps_query(el, ver)),
    )
    .await
    {
        Ok(Ok(_)) => Ok(true),
        _ => Ok(false),
    }
}

#[tokio::test]
async fn server_announces_its_own_caps_and_answers_their_node() -> Result<()> {
    let ts = start_server().await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut client = ts.login("alice", PASSWORD, Some("r")).await?;
    // XEP-0115 §6.3: <c/> in the stream features after authentication.
    let c = client
        .features
        .as_ref()
        .and_then(|f| f.get_child("c", ns::CAPS))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no caps in the stream features: {:?}", client.features))?;
    let (node, ver) = (
        c.attr("node").unwrap_or_default(),
        c.attr("ver").unwrap_or_default(),
    );
    ensure!(
        c.attr("hash") == Some("sha-1") && !ver.is_empty(),
        "bad caps element: {c}"
    );
    // §6.2: disco#info on node#ver answers with the info the hash was computed from.
    let node_ver = format!("{node}#{ver}");
    let info = client
        .iq_result(
            "get",
            Some(DOMAIN),
            Element::new("query", ns::DISCO_INFO).with_attr("node", node_ver.as_str()),
        )
        .await?;
    let query = info
        .get_child("query", ns::DISCO_INFO)
        .expect("disco#info result has a query");
    ensure!(
        query.attr("node") == Some(node_ver.as_str()),
        "node not echoed: {info}"
    );
    ensure!(
        query.children().any(|f| f.attr("var") == Some(ns::CAPS)),
        "caps feature not listed: {info}"
    );
    // Any other node is unknown.
    let (_, cond) = client
        .iq_error(
            "get",
            Some(DOMAIN),
            Element::new("query", ns::DISCO_INFO).with_attr("node", format!("{node}#wrong")),
        )
        .await?;
    ensure!(cond == "item-not-found", "unknown node gave {cond}");
    Ok(())
}

#[tokio::test]
async fn a_verified_caps_hash_is_asked_about_once() -> Result<()> {
    let ts = start_server().await?;
    ts.create_user("alice", PASSWORD).await?;
    ts.create_user("bob", PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("r")).await?;
    present_and_answer(&mut alice, EXODUS_VER, exodus_info()).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("r")).await?;
    ensure!(
        !server_asks_about(&mut bob, EXODUS_VER).await?,
        "a known hash was asked about again"
    );
    Ok(())
}

#[tokio::test]
async fn an_answer_that_does_not_match_its_hash_is_not_cached() -> Result<()> {
    let ts = start_server().await?;
    ts.create_user("alice", PASSWORD).await?;
    ts.create_user("bob", PASSWORD).await?;
    let forged = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    let mut alice = ts.login("alice", PASSWORD, Some("r")).await?;
    present_and_answer(&mut alice, forged, exodus_info()).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("r")).await?;
    ensure!(
        server_asks_about(&mut bob, forged).await?,
        "an unverified hash was cached (XEP-0115 §5.4)"
    );
    Ok(())
}

#[tokio::test]
async fn a_session_has_one_caps_query_outstanding_at_a_time() -> Result<()> {
    // Each unknown hash costs the server a query and a wait: a client presenting hash after
    // hash without answering gets asked about the first only.
    let ts = start_server().await?;
    ts.create_user("alice", PASSWORD).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("r")).await?;
    ensure!(
        server_asks_about(&mut alice, "BBBBBBBBBBBBBBBBBBBBBBBBBBB=").await?,
        "an unknown hash was not asked about"
    );
    ensure!(
        !server_asks_about(&mut alice, "CCCCCCCCCCCCCCCCCCCCCCCCCCC=").await?,
        "a second query went out while the first was unanswered"
    );
    Ok(())
}

#[tokio::test]
async fn a_disco_info_with_more_features_than_the_cap_is_not_cached() -> Result<()> {
    let ts = start_server_with(|c| c.limits.caps_max_features = 3).await?;
    ts.create_user("alice", PASSWORD).await?;
    ts.create_user("bob", PASSWORD).await?;
    // The Exodus example has four features.
    let mut alice = ts.login("alice", PASSWORD, Some("r")).await?;
    present_and_answer(&mut alice, EXODUS_VER, exodus_info()).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("r")).await?;
    ensure!(
        server_asks_about(&mut bob, EXODUS_VER).await?,
        "an entry over the feature cap was cached"
    );
    Ok(())
}
