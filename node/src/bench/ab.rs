//! `consenso bench --ab OLD_BINARY`: the same benchmark against a fresh local cluster of the old
//! binary and of this one, alternating (old, new) `--reps` times in one run, so that both see
//! the same machine, load and disk. Prints each run, the medians and new ÷ old — the way every
//! figure in bench/RESULTS.md that compares two builds is made.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use super::Args;
use crate::output::outln;

/// A cluster's ports: the proxy at the base, the supervisor and servers above it.
const PORTS_PER_CLUSTER: u16 = 20;

#[derive(Serialize, Clone, Copy, Default)]
struct Sample {
    writes_per_s: f64,
    reads_per_s: f64,
    write_p50_ms: f64,
    write_p99_ms: f64,
}

pub fn main(args: &Args, old: &Path) -> anyhow::Result<()> {
    if args.kill_leader_every.is_some() || args.history.is_some() {
        bail!("--ab compares plain runs: leave out --kill-leader-every and --history");
    }
    let new = std::env::current_exe().context("cannot find this binary")?;
    let old = std::path::absolute(old)?;
    if !old.is_file() {
        bail!("{} is not a file", old.display());
    }
    let mut samples: Vec<(&str, Sample)> = Vec::new();
    for rep in 1..=args.reps.max(1) {
        for (name, binary) in [("old", &old), ("new", &new)] {
            let sample = run_once(binary, args).with_context(|| format!("round {rep}, {name} binary"))?;
            if !args.json {
                outln!(
                    "round {rep} {name}: {:>8.0} writes/s  p50 {:.2} ms  p99 {:.2} ms{}",
                    sample.writes_per_s,
                    sample.write_p50_ms,
                    sample.write_p99_ms,
                    if args.reads > 0.0 {
                        format!("  {:.0} reads/s", sample.reads_per_s)
                    } else {
                        String::new()
                    }
                );
            }
            samples.push((name, sample));
        }
    }
    let median = |name: &str| median_of(samples.iter().filter(|(n, _)| *n == name).map(|(_, s)| *s));
    let (old_m, new_m) = (median("old"), median("new"));
    let ratio = new_m.writes_per_s / old_m.writes_per_s.max(1e-9);
    if args.json {
        let out =
            serde_json::json!({ "clients": args.clients, "old": old_m, "new": new_m, "writes_ratio": ratio });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "median of {} rounds, {} clients: old {:.0} writes/s (p50 {:.2}, p99 {:.2} ms), new {:.0} writes/s \
             (p50 {:.2}, p99 {:.2} ms): new/old = {ratio:.2}×",
            args.reps.max(1),
            args.clients,
            old_m.writes_per_s,
            old_m.write_p50_ms,
            old_m.write_p99_ms,
            new_m.writes_per_s,
            new_m.write_p50_ms,
            new_m.write_p99_ms
        );
    }
    Ok(())
}

/// The median of each figure on its own.
fn median_of(samples: impl Iterator<Item = Sample>) -> Sample {
    let all: Vec<Sample> = samples.collect();
    let pick = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = all.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    Sample {
        writes_per_s: pick(|s| s.writes_per_s),
        reads_per_s: pick(|s| s.reads_per_s),
        write_p50_ms: pick(|s| s.write_p50_ms),
        write_p99_ms: pick(|s| s.write_p99_ms),
    }
}

/// A 3-server cluster of `binary` on fresh ports and a fresh data directory, one benchmark
/// against it, then the cluster stopped.
fn run_once(binary: &Path, args: &Args) -> anyhow::Result<Sample> {
    let port = free_ports()?;
    let data = DataDir::new()?;
    let token = format!("ab-{:016x}", crate::secret::random_u64());
    let proxy = format!("127.0.0.1:{port}");
    let mut cluster = Cluster(
        Command::new(binary)
            .args(["cluster", "--nodes", "3", "--port", &port.to_string(), "--token", &token])
            .arg("--data-dir")
            .arg(data.path())
            .env("CONSENSO_TOKEN", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?,
    );
    wait_until_writable(binary, &proxy, &token, &mut cluster.0)?;
    let output = Command::new(binary)
        .args(["bench", "--proxy", &proxy, "--json"])
        .args(["--clients", &args.clients.to_string(), "--duration", &args.duration.to_string()])
        .args(["--value-size", &args.value_size.to_string(), "--reads", &args.reads.to_string()])
        .args(["--keys", &args.keys.to_string()])
        .args(
            (args.consistency != shared::event::Consistency::Linearizable)
                .then(|| format!("--consistency={}", args.consistency)),
        )
        .env("CONSENSO_TOKEN", &token)
        .current_dir(data.path())
        .stderr(Stdio::null())
        .output()
        .context("cannot run the benchmark")?;
    if !output.status.success() {
        bail!("the benchmark failed: {}", String::from_utf8_lossy(&output.stdout));
    }
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).context("the benchmark's JSON")?;
    let number = |path: &[&str]| {
        path.iter().try_fold(&report, |v, k| v.get(k)).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN)
    };
    Ok(Sample {
        writes_per_s: number(&["writes_per_s"]),
        reads_per_s: number(&["reads_per_s"]),
        write_p50_ms: number(&["write_latency_ms", "p50"]),
        write_p99_ms: number(&["write_latency_ms", "p99"]),
    })
}

/// A fresh directory for one cluster, removed afterwards.
struct DataDir(std::path::PathBuf);

impl DataDir {
    fn new() -> anyhow::Result<DataDir> {
        let path = std::env::temp_dir().join(format!("consenso-ab-{:016x}", crate::secret::random_u64()));
        std::fs::create_dir(&path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(DataDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Stops the cluster (SIGTERM: it stops its servers) however the run ends.
struct Cluster(Child);

impl Drop for Cluster {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_until_writable(binary: &Path, proxy: &str, token: &str, cluster: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(status) = cluster.try_wait()? {
            bail!("the cluster exited ({status}) before taking a write");
        }
        let put = Command::new(binary)
            .args(["client", "--proxy", proxy, "put", "ab-warm-up", "1"])
            .env("CONSENSO_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if put.success() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the cluster took no write within 60 s")
}

/// A base port with the `PORTS_PER_CLUSTER` above it free right now.
fn free_ports() -> anyhow::Result<u16> {
    for _ in 0..200 {
        // Below Linux's ephemeral range (32768–60999), where outgoing connections take ports.
        let base = 20_000 + (crate::secret::random_u64() % 600) as u16 * PORTS_PER_CLUSTER;
        let free =
            (base..base + PORTS_PER_CLUSTER).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return Ok(base);
        }
    }
    bail!("found no {PORTS_PER_CLUSTER} free ports in a row")
}
