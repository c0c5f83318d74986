//! In-band registration (XEP-0077): creating an account before authentication (open and
//! closed), changing the password, and cancelling the account.

mod common;

use anyhow::{Context, Result, ensure};
use common::*;
use corvid_proto::ns;
use corvid_proto::sasl::Mechanism;
use corvid_xml::Element;

const PASSWORD: &str = "secret";

async fn server_with_users(names: &[&str]) -> Result<TestServer> {
    start_server_with_users(names, PASSWORD).await
}

fn register_query(fields: &[(&str, &str)]) -> Element {
    let mut query = Element::new("query", ns::REGISTER);
    for (name, value) in fields {
        query.append_child(Element::new(*name, ns::REGISTER).with_text(*value));
    }
    query
}

#[tokio::test]
async fn in_band_registration_creates_an_account_that_can_log_in() -> Result<()> {
    let ts = start_server_with(|c| c.registration.open = Some(true)).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    ensure!(
        client.has_feature("register", ns::REGISTER_FEATURE),
        "features: {:?}",
        client.features
    );
    let form = client
        .iq_result("get", None, Element::new("query", ns::REGISTER))
        .await?;
    let query = form.get_child("query", ns::REGISTER).context("no form")?;
    ensure!(
        query.has_child("username", ns::REGISTER) && query.has_child("password", ns::REGISTER),
        "{form}"
    );
    client
        .iq_result(
            "set",
            None,
            register_query(&[("username", "carol"), ("password", "s3cret")]),
        )
        .await?;
    // Taken names are a conflict (XEP-0077 §3.1).
    let (_, condition) = client
        .iq_error(
            "set",
            None,
            register_query(&[("username", "carol"), ("password", "x")]),
        )
        .await?;
    ensure!(condition == "conflict", "{condition}");
    // Missing fields are not acceptable.
    let (_, condition) = client
        .iq_error("set", None, register_query(&[("username", "dave")]))
        .await?;
    ensure!(condition == "not-acceptable", "{condition}");
    client.login("carol", "s3cret", Some("new")).await?;
    client.sync().await
}

#[tokio::test]
async fn in_band_registration_when_closed_is_not_allowed() -> Result<()> {
    let ts = start_server_with(|c| c.registration.open = Some(false)).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    ensure!(
        !client.has_feature("register", ns::REGISTER_FEATURE),
        "features: {:?}",
        client.features
    );
    let (_, condition) = client
        .iq_error(
            "set",
            None,
            register_query(&[("username", "carol"), ("password", "pw")]),
        )
        .await?;
    ensure!(condition == "not-allowed", "{condition}");
    let outcome = client.sasl_plain("carol", "pw").await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "the account exists after all: {outcome:?}"
    );
    Ok(())
}

#[tokio::test]
async fn in_band_registration_before_tls_is_refused() -> Result<()> {
    let ts = start_server_with(|c| c.registration.open = Some(true)).await?;
    let mut client = Client::connect(ts.c2s_addr).await?;
    client.open_stream().await?;
    client.send_raw(format!("<iq type='set' id='r1'><query xmlns='{}'><username>eve</username><password>pw</password></query></iq>", ns::REGISTER)).await?;
    client.expect_stream_error("policy-violation").await
}

#[tokio::test]
async fn password_change_takes_effect_for_the_next_login() -> Result<()> {
    let ts = server_with_users(&["alice"]).await?;
    let mut alice = ts.login("alice", PASSWORD, Some("a")).await?;
    let registered = alice
        .iq_result("get", Some(DOMAIN), Element::new("query", ns::REGISTER))
        .await?;
    ensure!(
        registered
            .get_child("query", ns::REGISTER)
            .is_some_and(|q| q.has_child("registered", ns::REGISTER)),
        "{registered}"
    );
    // Changing someone else's password is not allowed.
    let (_, condition) = alice
        .iq_error(
            "set",
            Some(DOMAIN),
            register_query(&[("username", "bob"), ("password", "pwned")]),
        )
        .await?;
    ensure!(condition == "not-allowed", "{condition}");
    // XEP-0077 §3.3 shows the request both with `to` the server and without `to`.
    alice
        .iq_result(
            "set",
            Some(DOMAIN),
            register_query(&[("username", "alice"), ("password", "interim")]),
        )
        .await?;
    alice
        .iq_result(
            "set",
            None,
            register_query(&[("username", "alice"), ("password", "new password")]),
        )
        .await?;
    alice.sync().await?;

    let mut old = Client::starttls_session(ts.c2s_addr).await?;
    let outcome = old
        .sasl_scram(Mechanism::ScramSha256, "alice", PASSWORD, None)
        .await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "old password: {outcome:?}"
    );
    let mut new = Client::starttls_session(ts.c2s_addr).await?;
    new.login("alice", "new password", Some("b")).await?;
    Ok(())
}

#[tokio::test]
async fn cancelling_the_account_closes_all_its_sessions() -> Result<()> {
    let ts = server_with_users(&["alice", "bob"]).await?;
    let mut first = ts.login("alice", PASSWORD, Some("one")).await?;
    let mut second = ts.login("alice", PASSWORD, Some("two")).await?;
    let remove =
        Element::new("query", ns::REGISTER).with_child(Element::new("remove", ns::REGISTER));
    // Nobody removes someone else's account by addressing it.
    let (_, condition) = first
        .iq_error("set", Some("bob@localhost"), remove.clone())
        .await?;
    ensure!(condition == "service-unavailable", "{condition}");
    let mut bob = ts.login("bob", PASSWORD, Some("b")).await?;
    bob.sync().await?;
    // XEP-0077 §3.2: sent without `to`; the result first, then <not-authorized/> to every session.
    first.iq_result("set", None, remove).await?;
    first.expect_stream_error("not-authorized").await?;
    second.expect_stream_error("not-authorized").await?;
    let mut again = Client::starttls_session(ts.c2s_addr).await?;
    let outcome = again.sasl_plain("alice", PASSWORD).await?;
    ensure!(
        outcome == Sasl::Failure("not-authorized".into()),
        "login after removal: {outcome:?}"
    );
    // Bob's account and session are untouched.
    bob.sync().await?;
    ts.login("bob", PASSWORD, Some("again")).await?;
    Ok(())
}

/// The `jabber:iq:register` data form (XEP-0077 §6) of a query, as (var, type) pairs.
fn data_form_fields(query: &Element) -> Vec<(String, String)> {
    query
        .get_child("x", ns::DATA_FORMS)
        .map(|x| {
            x.children()
                .filter(|f| f.is("field", ns::DATA_FORMS))
                .map(|f| {
                    (
                        f.attr("var").unwrap_or_default().to_string(),
                        f.attr("type").unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn submitted_form(fields: &[(&str, &str)]) -> Element {
    let mut x = Element::new("x", ns::DATA_FORMS).with_attr("type", "submit");
    for (var, value) in [("FORM_TYPE", ns::REGISTER)].iter().chain(fields) {
        x.append_child(
            Element::new("field", ns::DATA_FORMS)
                .with_attr("var", *var)
                .with_child(Element::new("value", ns::DATA_FORMS).with_text(*value)),
        );
    }
    Element::new("query", ns::REGISTER).with_child(x)
}

#[tokio::test]
async fn registration_by_data_form_creates_an_account_and_changes_its_password() -> Result<()> {
    let ts = start_server_with(|c| c.registration.open = Some(true)).await?;
    let mut client = Client::starttls_session(ts.c2s_addr).await?;
    let form = client
        .iq_result("get", None, Element::new("query", ns::REGISTER))
        .await?;
    let query = form.get_child("query", ns::REGISTER).context("no form")?;
    // Both the legacy fields and the data form (what Dino renders).
    ensure!(query.has_child("username", ns::REGISTER), "{form}");
    let fields = data_form_fields(query);
    ensure!(
        fields
            == [
                ("FORM_TYPE".to_string(), "hidden".to_string()),
                ("username".to_string(), "text-single".to_string()),
                ("password".to_string(), "text-private".to_string()),
            ],
        "{fields:?}"
    );
    client
        .iq_result(
            "set",
            None,
            submitted_form(&[("username", "dino"), ("password", "first")]),
        )
        .await?;
    let (_, condition) = client
        .iq_error("set", None, submitted_form(&[("username", "dino2")]))
        .await?;
    ensure!(condition == "not-acceptable", "{condition}");
    client.login("dino", "first", Some("d")).await?;

    // In session: the form again, and a password change submitted through it.
    let registered = client
        .iq_result("get", None, Element::new("query", ns::REGISTER))
        .await?;
    let query = registered
        .get_child("query", ns::REGISTER)
        .context("no query")?;
    ensure!(query.has_child("registered", ns::REGISTER), "{registered}");
    ensure!(data_form_fields(query).len() == 3, "{registered}");
    client
        .iq_result(
            "set",
            None,
            submitted_form(&[("username", "dino"), ("password", "second")]),
        )
        .await?;
    ts.login("dino", "second", Some("again")).await?;
    Ok(())
}
