//! Two Corvid servers, `a.test` and `b.test`, federating for more than chat: a user of one
//! in a room of the other's MUC service (`conference.a.test`, `conference.b.test`: domains
//! of their own over the federation, each its own connections and authentication), and
//! avatars crossing between contacts through PEP and vCard. The same scenarios run against
//! a real Prosody in `s2s_prosody.rs`.

mod common;

use anyhow::Result;
use common::TestServer;
use common::federation::{Pki, corvid, create, introduce, self_signed};
use common::services::{Home, a_remote_user_joins_a_room, avatars_cross_the_federation};

const A: &str = "a.test";
const B: &str = "b.test";

fn home(ts: &TestServer, domain: &str) -> Home {
    Home::new(domain, ts.c2s_addr.port())
}

/// alice@a.test and bob@b.test on two federated Corvids; `trusted`: certificates from a CA
/// both trust (SASL EXTERNAL), else self-signed (dialback).
async fn federated(
    trusted: bool,
) -> Result<(tempfile::TempDir, Option<Pki>, TestServer, TestServer)> {
    let dir = tempfile::tempdir()?;
    let (a, b, pki) = if trusted {
        let pki = Pki::new()?;
        let (a_id, b_id) = (pki.issue(A)?, pki.issue(B)?);
        let ca = Some(pki.ca_file.as_path());
        (
            corvid(A, &a_id, ca, |_| {}).await?,
            corvid(B, &b_id, ca, |_| {}).await?,
            Some(pki),
        )
    } else {
        let (a_id, b_id) = (self_signed(dir.path(), A)?, self_signed(dir.path(), B)?);
        (
            corvid(A, &a_id, None, |_| {}).await?,
            corvid(B, &b_id, None, |_| {}).await?,
            None,
        )
    };
    introduce(&a, A, &b, B)?;
    create(&a, "alice@a.test").await?;
    create(&b, "bob@b.test").await?;
    Ok((dir, pki, a, b))
}

#[tokio::test]
async fn a_remote_user_joins_a_room_over_dialback() -> Result<()> {
    let (_dir, _pki, a, b) = federated(false).await?;
    a_remote_user_joins_a_room(&home(&a, A), "alice", &home(&b, B), "bob").await
}

#[tokio::test]
async fn a_remote_user_joins_a_room_over_sasl_external() -> Result<()> {
    let (_dir, _pki, a, b) = federated(true).await?;
    a_remote_user_joins_a_room(&home(&b, B), "bob", &home(&a, A), "alice").await
}

#[tokio::test]
async fn avatars_cross_between_contacts() -> Result<()> {
    let (_dir, _pki, a, b) = federated(true).await?;
    avatars_cross_the_federation(&home(&a, A), "alice", &home(&b, B), "bob").await
}
