//! The page under load: 7 servers with 100,000-entry logs, drawn by headless Chromium.
//!
//! `cargo bench -p consenso --bench page` (after `./dev page`) starts a 7-node cluster that never
//! compacts, writes until every log holds 100,000 entries, opens the page and — while writes
//! keep flowing — reads the page's own meter: frames per second, the longest frame, and how
//! long a frame from the proxy waits before it is drawn. It also reports the size of the
//! release `.wasm`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::browser::Browser;
use support::{BIN, Cluster, TOKEN, repo_root};

const ENTRIES: u64 = 100_000;

fn main() {
    let cluster = Cluster::start_with(7, 1, &["--snapshot-every", "1000000"]);
    // Fill the logs.
    loop {
        let s = cluster.status().unwrap();
        let lowest = s.nodes.iter().filter_map(|n| n.last_log_index).min().unwrap_or(0);
        if lowest >= ENTRIES {
            break;
        }
        let out = Command::new(BIN)
            .args([
                "bench",
                "--proxy",
                &cluster.proxy(0),
                "--clients",
                "64",
                "--duration",
                "5",
                "--value-size",
                "32",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(out.success());
    }
    // Keep writing while the page is watched (CONSENSO_PAGE_BENCH_CLIENTS=0 watches an idle cluster).
    let clients: u32 =
        std::env::var("CONSENSO_PAGE_BENCH_CLIENTS").ok().and_then(|c| c.parse().ok()).unwrap_or(8);
    let mut load = (clients > 0).then(|| {
        Command::new(BIN)
            .args([
                "bench",
                "--proxy",
                &cluster.proxy(0),
                "--clients",
                &clients.to_string(),
                "--duration",
                "25",
            ])
            .args(["--value-size", "32"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    });
    let (mut fps, mut worst, mut lag50, mut lag_max) = (Vec::new(), 0f64, Vec::new(), 0f64);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let b = Browser::open(&format!("{}?token={TOKEN}&debug", cluster.url())).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        let top = Command::new("top").args(["-b", "-n", "1", "-w", "160"]).output().unwrap();
        for line in String::from_utf8_lossy(&top.stdout).lines().skip(6).take(6) {
            println!("    {line}");
        }
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let read = |attr: &'static str| {
                let b = &b;
                async move {
                    b.attr_all(".perf", attr)
                        .await
                        .first()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(f64::NAN)
                }
            };
            fps.push(read("data-fps").await);
            worst = worst.max(read("data-frame-max-ms").await);
            lag50.push(read("data-lag-p50-ms").await);
            lag_max = lag_max.max(read("data-lag-max-ms").await);
        }
        let cells = b.count("[data-index]").await;
        let nodes = b.count("[data-node-id]").await;
        b.screenshot("bench-7-nodes-100k").await;
        b.close().await;
        let load = if clients > 0 {
            format!("{clients} clients writing")
        } else {
            "no writes (heartbeats only)".into()
        };
        println!(
            "page benchmark: {nodes} nodes, logs of ≥{ENTRIES} entries, {cells} log cells drawn, {load}"
        );
    });
    if let Some(load) = load.as_mut() {
        let _ = load.kill();
        let _ = load.wait();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("  frames per second (median of 15 one-second samples): {:.1}", median(&mut fps));
    println!("  longest frame seen: {worst:.1} ms");
    println!("  frame from the proxy to drawn: median {:.1} ms, max {lag_max:.1} ms", median(&mut lag50));
    let wasm = std::fs::read_dir(repo_root().join("dist"))
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.path().extension().is_some_and(|x| x == "wasm"))
        .expect("dist/ holds the built page")
        .path();
    let raw = std::fs::metadata(&wasm).unwrap().len();
    let gz = Command::new("gzip").args(["-9", "-c"]).arg(&wasm).output().unwrap().stdout.len();
    println!("  release wasm: {:.0} KB, {:.0} KB gzipped", raw as f64 / 1024.0, gz as f64 / 1024.0);
}
