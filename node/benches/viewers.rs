//! What a class costs: 80 read-only pages watching a cluster that holds data.
//!
//! `cargo bench -p consenso --bench viewers` starts a 3-node cluster, fills it with 1,000 keys
//! of 256 bytes (a `consenso bench` run), then opens 80 viewer connections at once (subscribed,
//! no token, as the page does) and counts, per viewer, the bytes of its first frames and what
//! it receives over 30 idle seconds. Targets: first frame ≤ 500 KB, idle ≤ 50 KB/s per viewer.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shared::protocol::{ClientFrame, PROTOCOL_VERSION, encode};
use support::{BIN, Cluster, TOKEN};
use tokio_tungstenite::tungstenite::Message;

const VIEWERS: usize = 80;
const IDLE: Duration = Duration::from_secs(30);

/// One viewer: (largest of its first 5 frames, bytes received during the idle window).
async fn viewer(proxy: String) -> anyhow::Result<(usize, usize)> {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{proxy}/ws")).await?;
    let hello = ClientFrame::Hello { version: PROTOCOL_VERSION, token: None, subscribe: true };
    ws.send(Message::text(encode(&hello))).await?;
    let mut first = 0;
    for _ in 0..5 {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => first = first.max(t.len()),
            _ => anyhow::bail!("closed early"),
        }
    }
    // Let the start-up burst pass before counting.
    let settle = Instant::now() + Duration::from_secs(2);
    while let Ok(Some(_)) = tokio::time::timeout_at(settle.into(), ws.next()).await {}
    let end = Instant::now() + IDLE;
    let mut bytes = 0;
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(end.into(), ws.next()).await {
        bytes += m.len();
    }
    Ok((first, bytes))
}

fn main() {
    let cluster = Cluster::start(3, 1);
    let out = Command::new(BIN)
        .args([
            "bench",
            "--proxy",
            &cluster.proxy(0),
            "--token",
            TOKEN,
            "--clients",
            "16",
            "--duration",
            "10",
        ])
        .args(["--value-size", "256", "--keys", "1000"])
        .output()
        .expect("consenso bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let results: Vec<(usize, usize)> = runtime.block_on(async {
        let tasks: Vec<_> = (0..VIEWERS).map(|_| tokio::spawn(viewer(cluster.proxy(0)))).collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("viewer task").expect("viewer connects"));
        }
        results
    });
    let mut firsts: Vec<usize> = results.iter().map(|r| r.0).collect();
    let mut rates: Vec<f64> = results.iter().map(|r| r.1 as f64 / IDLE.as_secs_f64()).collect();
    firsts.sort_unstable();
    rates.sort_by(f64::total_cmp);
    let median = |v: &[f64]| v[v.len() / 2];
    println!(
        "viewers benchmark: {VIEWERS} subscribed pages without the token, 3 servers holding 1,000 keys of 256 bytes"
    );
    println!(
        "  largest of the first frames: median {:.0} KB, max {:.0} KB (target ≤ 500 KB)",
        firsts[firsts.len() / 2] as f64 / 1e3,
        firsts[firsts.len() - 1] as f64 / 1e3
    );
    println!(
        "  idle traffic per viewer over {} s: median {:.1} KB/s, max {:.1} KB/s (target ≤ 50 KB/s); all {VIEWERS}: {:.0} KB/s",
        IDLE.as_secs(),
        median(&rates) / 1e3,
        rates[rates.len() - 1] / 1e3,
        rates.iter().sum::<f64>() / 1e3
    );
}
