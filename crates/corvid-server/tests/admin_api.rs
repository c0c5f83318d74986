//! The HTTP admin API (`[http] admin_api`), over real HTTP: bearer tokens, and each
//! operation seen from the clients it affects.

mod common;

use anyhow::{Context, Result, ensure};
use common::http::{request, with_token};
use common::{Client, DOMAIN, TestServer, message_body, start_server_with};
use corvid_proto::ns;
use corvid_xml::Element;

const PASSWORD: &str = "secret";

/// A server with the admin API on, and a token for it.
async fn api_server(users: &[&str]) -> Result<(TestServer, String)> {
    let ts = start_server_with(|c| c.http.admin_api = true).await?;
    for user in users {
        ts.create_user(user, PASSWORD).await?;
    }
    let (_, token) = corvid_server::api_tokens::create(&ts.server.config, Some("test"))?;
    Ok((ts, token))
}

fn http(ts: &TestServer) -> std::net::SocketAddr {
    ts.http_addr.expect("the test server serves HTTP")
}

#[tokio::test]
async fn requests_without_a_valid_token_are_refused() -> Result<()> {
    let (ts, token) = api_server(&[]).await?;
    let addr = http(&ts);
    for (method, path) in [
        ("GET", "/api/v1/stats"),
        ("GET", "/api/v1/users"),
        ("DELETE", "/api/v1/sessions/a@localhost/r"),
        ("GET", "/api/v1/nothing-here"),
    ] {
        let none = request(addr, method, path, &[], None).await?;
        ensure!(
            none.status == 401,
            "{method} {path} without a token: {none:?}"
        );
        ensure!(
            none.header("www-authenticate") == Some("Bearer"),
            "{none:?}"
        );
        ensure!(none.json()?["error"].is_string(), "{none:?}");
        let wrong = with_token(addr, "corvid_0000", method, path, None).await?;
        ensure!(
            wrong.status == 401,
            "{method} {path} with a wrong token: {wrong:?}"
        );
        let basic = request(addr, method, path, &[("Authorization", "Basic YTpi")], None).await?;
        ensure!(basic.status == 401, "{basic:?}");
    }
    let unknown = with_token(addr, &token, "GET", "/api/v1/nothing-here", None).await?;
    ensure!(unknown.status == 404, "{unknown:?}");
    ensure!(unknown.json()?["error"].is_string());
    let stats = with_token(addr, &token, "GET", "/api/v1/stats", None).await?;
    ensure!(stats.status == 200, "{stats:?}");
    ensure!(stats.json()?["sessions"] == 0, "{stats:?}");

    corvid_server::api_tokens::revoke(&ts.server.config, "test")?;
    let revoked = with_token(addr, &token, "GET", "/api/v1/stats", None).await?;
    ensure!(revoked.status == 401, "a revoked token: {revoked:?}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn the_api_is_off_by_default() -> Result<()> {
    let ts = start_server_with(|_| {}).await?;
    let (_, token) = corvid_server::api_tokens::create(&ts.server.config, None)?;
    let answer = with_token(http(&ts), &token, "GET", "/api/v1/stats", None).await?;
    ensure!(answer.status == 404, "{answer:?}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn accounts_are_added_changed_and_removed() -> Result<()> {
    let (ts, token) = api_server(&[]).await?;
    let addr = http(&ts);
    let add = r#"{"jid":"carol@localhost","password":"first"}"#;
    let created = with_token(addr, &token, "POST", "/api/v1/users", Some(add)).await?;
    ensure!(created.status == 201, "{created:?}");
    ensure!(created.json()?["jid"] == "carol@localhost");
    let again = with_token(addr, &token, "POST", "/api/v1/users", Some(add)).await?;
    ensure!(again.status == 409, "{again:?}");
    for bad in [
        r#"{"jid":"nobody","password":"x"}"#,
        r#"{"jid":"a@elsewhere.example","password":"x"}"#,
        r#"{"jid":"a@localhost","password":""}"#,
        r#"{"jid":"a@localhost"}"#,
        "not json",
    ] {
        let answer = with_token(addr, &token, "POST", "/api/v1/users", Some(bad)).await?;
        ensure!(answer.status == 400, "{bad}: {answer:?}");
        ensure!(answer.json()?["error"].is_string(), "{answer:?}");
    }
    let list = with_token(addr, &token, "GET", "/api/v1/users", None).await?;
    ensure!(
        list.json()?["users"] == serde_json::json!(["carol@localhost"]),
        "{list:?}"
    );
    let other = with_token(
        addr,
        &token,
        "GET",
        "/api/v1/users?domain=nowhere.example",
        None,
    )
    .await?;
    ensure!(other.status == 400, "{other:?}");

    // The new account logs in.
    let mut carol = ts.login("carol", "first", Some("desk")).await?;

    let passwd = r#"{"password":"second"}"#;
    let path = "/api/v1/users/carol@localhost/password";
    let changed = with_token(addr, &token, "PUT", path, Some(passwd)).await?;
    ensure!(changed.status == 204, "{changed:?}");
    ensure!(
        ts.login("carol", "first", None).await.is_err(),
        "the old password still works"
    );
    ts.login("carol", "second", Some("phone")).await?;
    let missing = with_token(
        addr,
        &token,
        "PUT",
        "/api/v1/users/dave@localhost/password",
        Some(passwd),
    )
    .await?;
    ensure!(missing.status == 404, "{missing:?}");

    // Removing it closes its sessions.
    let removed = with_token(
        addr,
        &token,
        "DELETE",
        "/api/v1/users/carol@localhost",
        None,
    )
    .await?;
    ensure!(removed.status == 204, "{removed:?}");
    carol.expect_stream_error("not-authorized").await?;
    ensure!(ts.login("carol", "second", None).await.is_err());
    let gone = with_token(
        addr,
        &token,
        "DELETE",
        "/api/v1/users/carol@localhost",
        None,
    )
    .await?;
    ensure!(gone.status == 404, "{gone:?}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn sessions_are_listed_and_kicked() -> Result<()> {
    let (ts, token) = api_server(&["alice", "bob"]).await?;
    let addr = http(&ts);
    let mut alice = ts.login("alice", PASSWORD, Some("laptop")).await?;
    let _bob = ts.login("bob", PASSWORD, Some("phone")).await?;
    let list = with_token(addr, &token, "GET", "/api/v1/sessions", None).await?;
    ensure!(list.status == 200, "{list:?}");
    let sessions = list.json()?["sessions"].clone();
    let sessions = sessions.as_array().context("a list of sessions")?;
    ensure!(sessions.len() == 2, "{sessions:?}");
    ensure!(
        sessions[0]["jid"] == "alice@localhost/laptop",
        "{sessions:?}"
    );
    ensure!(sessions[0]["ip"] == "127.0.0.1", "{sessions:?}");
    ensure!(sessions[0]["transport"] == "tcp", "{sessions:?}");
    ensure!(
        sessions[0]["since"].as_u64().is_some_and(|s| s > 0),
        "{sessions:?}"
    );

    let kicked = with_token(
        addr,
        &token,
        "DELETE",
        "/api/v1/sessions/alice@localhost/laptop",
        None,
    )
    .await?;
    ensure!(kicked.status == 204, "{kicked:?}");
    alice.expect_stream_error("policy-violation").await?;
    let again = with_token(
        addr,
        &token,
        "DELETE",
        "/api/v1/sessions/alice@localhost/laptop",
        None,
    )
    .await?;
    ensure!(again.status == 404, "{again:?}");
    let bare = with_token(
        addr,
        &token,
        "DELETE",
        "/api/v1/sessions/alice@localhost",
        None,
    )
    .await?;
    ensure!(bare.status == 400, "a bare JID is not a session: {bare:?}");
    let stats = with_token(addr, &token, "GET", "/api/v1/stats", None).await?;
    let stats = stats.json()?;
    ensure!(stats["sessions"] == 1, "{stats}");
    ensure!(stats["sessions_by_transport"]["tcp"] == 1, "{stats}");
    ensure!(stats["uptime_seconds"].is_u64(), "{stats}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_destroyed_room_sends_its_occupants_away() -> Result<()> {
    let (ts, token) = api_server(&["alice"]).await?;
    let addr = http(&ts);
    let mut alice = ts.login("alice", PASSWORD, Some("laptop")).await?;
    let room = "tea@conference.localhost";
    alice
        .send(
            &Element::new("presence", ns::CLIENT)
                .with_attr("to", format!("{room}/alice"))
                .with_child(Element::new("x", ns::MUC)),
        )
        .await?;
    // A new room answers with the creator's own presence (status 201).
    alice
        .recv_until(|el| {
            el.is("presence", ns::CLIENT) && el.attr("from") == Some(&format!("{room}/alice"))
        })
        .await?;
    let list = with_token(addr, &token, "GET", "/api/v1/rooms", None).await?;
    let rooms = list.json()?["rooms"].clone();
    ensure!(rooms.as_array().is_some_and(|r| r.len() == 1), "{rooms}");
    ensure!(
        rooms[0]["jid"] == room && rooms[0]["occupants"] == 1,
        "{rooms}"
    );

    let path = format!("/api/v1/rooms/{room}?reason=closing");
    let destroyed = with_token(addr, &token, "DELETE", &path, None).await?;
    ensure!(destroyed.status == 204, "{destroyed:?}");
    let (gone, _) = alice
        .recv_until(|el| el.is("presence", ns::CLIENT) && el.attr("type") == Some("unavailable"))
        .await?;
    let destroy = gone
        .get_child("x", ns::MUC_USER)
        .and_then(|x| x.get_child("destroy", ns::MUC_USER))
        .with_context(|| format!("no <destroy/> in {gone}"))?;
    ensure!(
        destroy
            .get_child("reason", ns::MUC_USER)
            .map(|r| r.text())
            .as_deref()
            == Some("closing"),
        "{gone}"
    );
    let list = with_token(addr, &token, "GET", "/api/v1/rooms", None).await?;
    ensure!(list.json()?["rooms"] == serde_json::json!([]), "{list:?}");
    let again = with_token(addr, &token, "DELETE", &path, None).await?;
    ensure!(again.status == 404, "{again:?}");
    let bad = with_token(
        addr,
        &token,
        "DELETE",
        "/api/v1/rooms/conference.localhost",
        None,
    )
    .await?;
    ensure!(bad.status == 400, "{bad:?}");
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn messages_and_announcements_reach_online_users() -> Result<()> {
    let (ts, token) = api_server(&["alice", "bob"]).await?;
    let addr = http(&ts);
    let mut alice = ts.login("alice", PASSWORD, Some("laptop")).await?;
    alice.send_presence(0).await?;
    let mut bob = ts.login("bob", PASSWORD, Some("phone")).await?;
    bob.send_presence(0).await?;

    let send = r#"{"to":"alice@localhost","body":"maintenance at noon"}"#;
    let sent = with_token(addr, &token, "POST", "/api/v1/messages", Some(send)).await?;
    ensure!(sent.status == 202, "{sent:?}");
    let got = alice.expect_message("maintenance at noon").await?;
    ensure!(got.attr("from") == Some(DOMAIN), "{got}");

    let announce = r#"{"body":"restarting now"}"#;
    let sent = with_token(
        addr,
        &token,
        "POST",
        "/api/v1/announcements",
        Some(announce),
    )
    .await?;
    ensure!(sent.status == 202, "{sent:?}");
    ensure!(sent.json()?["sessions"] == 2, "{sent:?}");
    for client in [&mut alice, &mut bob] {
        let got = next_message(client).await?;
        ensure!(
            message_body(&got).as_deref() == Some("restarting now"),
            "{got}"
        );
        ensure!(got.attr("from") == Some(DOMAIN), "{got}");
    }

    for bad in [
        r#"{"to":"not a jid@@","body":"x"}"#,
        r#"{"to":"alice@localhost","body":""}"#,
        r#"{"to":"alice@localhost"}"#,
    ] {
        let answer = with_token(addr, &token, "POST", "/api/v1/messages", Some(bad)).await?;
        ensure!(answer.status == 400, "{bad}: {answer:?}");
    }
    ts.shutdown().await;
    Ok(())
}

async fn next_message(client: &mut Client) -> Result<Element> {
    client.recv_skipping_presence().await
}
