//! Throughput, latency, failover and memory of a real 3-node cluster on this machine.
//!
//! `cargo bench -p consenso --bench cluster` starts `consenso cluster` (release build), measures
//! the disk's own fsync rate for reference, then runs `consenso bench` with 1 and 64 clients and
//! with the leader killed every 2 seconds, reads the servers' memory at idle, and follows the
//! leader's memory while one follower is stopped (SIGSTOP) for 60 s under load.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

use shared::protocol::{AdminCommand, ProxyFrame};
use support::{BIN, Cluster, TOKEN};

fn bench(cluster: &Cluster, args: &[&str]) -> serde_json::Value {
    let out = Command::new(BIN)
        .args(["bench", "--proxy", &cluster.proxy(0), "--token", TOKEN, "--json", "--value-size", "256"])
        .args(args)
        .output()
        .expect("consenso bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("bench prints JSON")
}

/// Sequential 256-byte writes each followed by fdatasync: the most one writer can get from
/// this disk, whatever the software.
fn fsyncs_per_second(dir: &std::path::Path) -> f64 {
    let path = dir.join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let start = Instant::now();
    let n = 2_000;
    for _ in 0..n {
        f.write_all(&[7u8; 256]).unwrap();
        f.sync_data().unwrap();
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path).unwrap();
    rate
}

fn main() {
    let cluster = Cluster::start(3, 1);
    let fsync = fsyncs_per_second(cluster.dir.path());
    std::thread::sleep(Duration::from_secs(5));
    let idle: Vec<u64> = cluster
        .status()
        .unwrap()
        .nodes
        .iter()
        .filter_map(|n| n.status.as_ref().and_then(|s| s.rss_bytes))
        .collect();
    let one = bench(&cluster, &["--clients", "1", "--duration", "10"]);
    let many = bench(&cluster, &["--clients", "64", "--duration", "10"]);
    let kills = bench(&cluster, &["--clients", "16", "--duration", "30", "--kill-leader-every", "2"]);
    let (stopped, rss_while_stopped, stopped_run) = leader_memory_with_a_stopped_follower(&cluster);
    let f = |v: &serde_json::Value, path: &[&str]| {
        path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(f64::NAN)
    };
    println!("cluster benchmark: 3 servers, fsync on, 256-byte values, election timeout 150–225 ms");
    println!("  disk: {fsync:.0} fdatasync/s for sequential 256-byte writes (one writer's ceiling)");
    println!(
        "  idle memory (RSS) per server: {} MB",
        idle.iter().map(|b| format!("{:.1}", *b as f64 / 1e6)).collect::<Vec<_>>().join(", ")
    );
    for (name, r) in [("1 client", &one), ("64 clients", &many)] {
        println!(
            "  {name:>10}: {:>8.0} writes/s   p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            f(r, &["writes_per_s"]),
            f(r, &["write_latency_ms", "p50"]),
            f(r, &["write_latency_ms", "p90"]),
            f(r, &["write_latency_ms", "p99"]),
            f(r, &["write_latency_ms", "max"])
        );
    }
    let gaps: Vec<String> = kills["kills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| format!("{:.0}", k["gap_ms"].as_f64().unwrap_or(f64::NAN)))
        .collect();
    println!(
        "  leader killed every 2 s under 16 clients: write gaps (ms) {} — median {:.0} ms; {:.0} writes/s, {} errors",
        gaps.join(", "),
        f(&kills, &["median_gap_ms"]),
        f(&kills, &["writes_per_s"]),
        kills["errors"]
    );
    let mb = |b: &u64| format!("{:.1}", *b as f64 / 1e6);
    println!(
        "  follower {stopped} stopped 60 s under 16 clients (4 KiB values): leader RSS every 5 s (MB) {} — max {} MB; {:.0} writes/s",
        rss_while_stopped.iter().map(mb).collect::<Vec<_>>().join(", "),
        rss_while_stopped.iter().max().map(mb).unwrap_or_default(),
        f(&stopped_run, &["writes_per_s"]),
    );
}

/// Stops a follower, loads the cluster for 60 s, and samples the leader's resident memory:
/// what the leader keeps for a peer that takes nothing must stay bounded.
fn leader_memory_with_a_stopped_follower(cluster: &Cluster) -> (u64, Vec<u64>, serde_json::Value) {
    let leader = cluster.wait_for_leader(Duration::from_secs(30));
    let follower = (1..=cluster.nodes).find(|n| *n != leader).expect("3 nodes");
    assert!(matches!(cluster.admin(AdminCommand::Pause { node: follower }), ProxyFrame::AdminDone { .. }));
    let proxy = cluster.proxy(0);
    let load = std::thread::spawn(move || {
        let out = Command::new(BIN)
            .args(["bench", "--proxy", &proxy, "--token", TOKEN, "--json", "--value-size", "4096"])
            .args(["--clients", "16", "--duration", "60"])
            .output()
            .expect("consenso bench runs");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    });
    let mut samples = Vec::new();
    for _ in 0..12 {
        std::thread::sleep(Duration::from_secs(5));
        let rss = cluster.status().and_then(|s| {
            s.nodes.iter().find(|n| n.id == leader).and_then(|n| n.status.as_ref()).and_then(|s| s.rss_bytes)
        });
        samples.extend(rss);
    }
    let result = load.join().expect("load thread");
    assert!(matches!(cluster.admin(AdminCommand::Resume { node: follower }), ProxyFrame::AdminDone { .. }));
    (follower, samples, result)
}
