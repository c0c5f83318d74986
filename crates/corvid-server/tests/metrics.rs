//! Prometheus metrics at `/metrics`, over real HTTP: the text format parses, the counters
//! move with traffic, and only loopback and `metrics_allow` may read them.

mod common;

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};
use common::http::request;
use common::{TestServer, message, start_server_with, start_server_with_users};

/// The samples of a scrape, by series (`name{labels}` exactly as written), after checking
/// that every line is a comment or a sample of a declared metric.
fn parse(text: &str) -> Result<HashMap<String, f64>> {
    let mut declared: Vec<(String, String)> = Vec::new();
    let mut samples = HashMap::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix('#') {
            let words: Vec<&str> = comment.split_whitespace().collect();
            if words.first() == Some(&"TYPE") {
                ensure!(words.len() == 3, "bad TYPE line {line:?}");
                ensure!(
                    ["counter", "gauge", "histogram"].contains(&words[2]),
                    "bad type in {line:?}"
                );
                declared.push((words[1].to_owned(), words[2].to_owned()));
            }
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .with_context(|| format!("bad sample {line:?}"))?;
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .with_context(|| format!("bad value in {line:?}"))?,
        };
        let name = series.split('{').next().unwrap_or_default();
        ensure!(
            name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "bad metric name in {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name) {
            ensure!(
                labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')),
                "bad labels in {line:?}"
            );
        }
        let family = declared.iter().find(|(n, kind)| {
            n == name
                || (kind == "histogram"
                    && ["_bucket", "_sum", "_count"]
                        .iter()
                        .any(|suffix| name.strip_suffix(suffix) == Some(n)))
        });
        if family.is_none() {
            bail!("{name} has no TYPE before its samples");
        }
        samples.insert(series.to_owned(), value);
    }
    Ok(samples)
}

async fn scrape(ts: &TestServer) -> Result<HashMap<String, f64>> {
    let answer = request(ts.http_addr.context("HTTP")?, "GET", "/metrics", &[], None).await?;
    ensure!(answer.status == 200, "{answer:?}");
    ensure!(
        answer
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{answer:?}"
    );
    parse(&answer.body)
}

fn value(samples: &HashMap<String, f64>, series: &str) -> Result<f64> {
    samples
        .get(series)
        .copied()
        .with_context(|| format!("no {series} in {samples:?}"))
}

#[tokio::test]
async fn counters_move_with_traffic() -> Result<()> {
    let ts = start_server_with_users(&["alice", "bob"], "pw").await?;
    let before = scrape(&ts).await?;
    ensure!(value(&before, "corvid_sessions{transport=\"tcp\"}")? == 0.0);

    let mut alice = ts.login("alice", "pw", Some("a")).await?;
    alice.send_presence(0).await?;
    let mut bob = ts.login("bob", "pw", Some("b")).await?;
    bob.send_presence(0).await?;
    alice
        .send(&message("bob@localhost", "chat", "hello"))
        .await?;
    bob.expect_message("hello").await?;
    // Charlie is offline: his messages go to storage.
    ts.create_user("charlie", "pw").await?;
    alice
        .send(&message("charlie@localhost", "chat", "later"))
        .await?;
    alice.sync().await?;

    let after = scrape(&ts).await?;
    ensure!(
        value(&after, "corvid_sessions{transport=\"tcp\"}")? == 2.0,
        "{after:?}"
    );
    ensure!(value(&after, "corvid_sessions{transport=\"websocket\"}")? == 0.0);
    for series in [
        "corvid_stanzas_in_total{kind=\"message\"}",
        "corvid_stanzas_in_total{kind=\"presence\"}",
        "corvid_stanzas_in_total{kind=\"iq\"}",
        "corvid_stanzas_out_total{kind=\"message\"}",
        "corvid_stanzas_out_total{kind=\"presence\"}",
        "corvid_routing_duration_seconds_count",
        "corvid_store_duration_seconds_count{op=\"credentials\"}",
        "corvid_store_duration_seconds_count{op=\"offline_store\"}",
    ] {
        let (was, is) = (value(&before, series)?, value(&after, series)?);
        ensure!(is > was, "{series} did not move: {was} → {is}");
    }
    let count = value(&after, "corvid_routing_duration_seconds_count")?;
    let inf = value(
        &after,
        "corvid_routing_duration_seconds_bucket{le=\"+Inf\"}",
    )?;
    ensure!(count == inf, "the +Inf bucket holds every observation");
    ensure!(value(&after, "corvid_s2s_connections{direction=\"in\"}")? == 0.0);
    ensure!(value(&after, "corvid_slow_consumers_total{action=\"closed\"}")? == 0.0);
    ensure!(value(&after, "corvid_uptime_seconds")? >= 0.0);
    ts.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn only_loopback_and_allowed_addresses_may_scrape() -> Result<()> {
    // Behind a trusted proxy, the client is whoever the proxy names.
    let ts = start_server_with(|c| {
        c.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
        c.http.metrics_allow = vec!["198.51.100.7".parse().unwrap()];
    })
    .await?;
    let addr = ts.http_addr.context("HTTP")?;
    let stranger = request(
        addr,
        "GET",
        "/metrics",
        &[("X-Forwarded-For", "203.0.113.5")],
        None,
    )
    .await?;
    ensure!(stranger.status == 403, "{stranger:?}");
    let allowed = request(
        addr,
        "GET",
        "/metrics",
        &[("X-Forwarded-For", "198.51.100.7")],
        None,
    )
    .await?;
    ensure!(allowed.status == 200, "{allowed:?}");
    ts.shutdown().await;

    let ts = start_server_with(|c| c.http.metrics = false).await?;
    let off = request(ts.http_addr.context("HTTP")?, "GET", "/metrics", &[], None).await?;
    ensure!(off.status == 404, "{off:?}");
    ts.shutdown().await;
    Ok(())
}
