//! Throughput, latency, failover and memory of a real 3-node cluster on this machine.
//!
//! `cargo bench -p consenso --bench cluster` starts `consenso cluster` (release build), measures
//! the disk's own fsync rate for reference, then runs `consenso bench` with 1 and 64 clients and
//! with the leader killed every 2 seconds, and reads the servers' memory at idle.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::process::Command;
use std::time::{Duration, Instant};

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
    let f = |v: &serde_json::Value, path: &[&str]| {
        path.iter().fold(v, |v, k| &v[*k]).as_f64().unwrap_or(f64::NAN)
    };
    println!("cluster benchmark: 3 servers, fsync on, 256-byte values, election timeout 150–300 ms");
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
}
