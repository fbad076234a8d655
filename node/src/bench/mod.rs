//! `consenso bench`: closed-loop load through the proxies, with latency percentiles from an
//! HDR histogram, optional leader kills with the client-observed write gap per kill, and an
//! optional history file for linearizability checking.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use serde::Serialize;
use shared::check::Operation;
use shared::protocol::{AdminCommand, ClientFrame, ProxyFrame};
use shared::raft::NodeId;

mod ab;
pub(crate) mod client;
mod floor;

use crate::output::outln;
use crate::ws;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: crate::addr::ProxyArgs,
    /// Concurrent clients, each waiting for its answer before the next request
    #[arg(long, default_value_t = 1)]
    clients: u32,
    /// How long to run, in seconds
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Bytes per written value
    #[arg(long, default_value_t = 256)]
    value_size: usize,
    /// Fraction of operations that are reads, 0–1
    #[arg(long, default_value_t = 0.0)]
    reads: f64,
    /// How reads are asked for: linearizable (ReadIndex), leader (the leader's store, no round)
    /// or stale (any server's store)
    #[arg(long, default_value = "linearizable")]
    consistency: shared::event::Consistency,
    /// Keys to spread the load over
    #[arg(long, default_value_t = 1000)]
    keys: u64,
    /// Kill (SIGKILL) the leader every S seconds, restarting it halfway to the next kill
    #[arg(long)]
    kill_leader_every: Option<f64>,
    /// Record every operation to this file as it completes (JSON lines for `consenso check`
    /// or any linearizability checker; see docs/protocol.md). Keys are fresh for each run, so
    /// every key starts absent
    #[arg(long)]
    history: Option<PathBuf>,
    /// Print the results as JSON
    #[arg(long)]
    json: bool,
    /// Where to measure the disk's fsync for the floor (the cluster's data directory's disk)
    #[arg(long, default_value = ".")]
    floor_dir: PathBuf,
    /// Skip measuring the floor (the disk's fsync and a loopback round trip) before the run
    #[arg(long)]
    no_floor: bool,
    /// Run the same benchmark against a cluster of OLD_BINARY and of this binary, alternating,
    /// and compare (see `bench/RESULTS.md`)
    #[arg(long, value_name = "OLD_BINARY")]
    ab: Option<PathBuf>,
    /// With --ab: rounds of (old, new)
    #[arg(long, default_value_t = 3)]
    reps: u32,
}

/// Patience for one operation before it counts as unknown.
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Default)]
pub(crate) struct Totals {
    pub writes: Option<Histogram<u64>>,
    pub reads: Option<Histogram<u64>>,
    pub errors: u64,
    pub error_kinds: std::collections::BTreeMap<String, u64>,
    pub unknown: u64,
    /// Microseconds since the start at which each write was acknowledged.
    pub acks: Vec<u64>,
}

#[derive(Serialize)]
struct Report {
    clients: u32,
    /// This run's keys are `{key_prefix}0` … (fresh, so every key starts absent).
    key_prefix: String,
    duration_s: f64,
    value_size: usize,
    read_fraction: f64,
    writes: u64,
    reads: u64,
    errors: u64,
    error_kinds: std::collections::BTreeMap<String, u64>,
    unknown: u64,
    writes_per_s: f64,
    reads_per_s: f64,
    write_latency_ms: Percentiles,
    read_latency_ms: Percentiles,
    kills: Vec<Kill>,
    median_gap_ms: Option<f64>,
    /// The least one write can take here, measured before the run; and this run's write p50
    /// against it.
    floor: Option<floor::Floor>,
    p50_over_floor: Option<f64>,
}

#[derive(Serialize, Default)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
}

#[derive(Serialize, Clone)]
struct Kill {
    at_s: f64,
    node: NodeId,
    /// Longest time without an acknowledged write around this kill.
    gap_ms: Option<f64>,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    if args.clients == 0
        || args.duration.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        || !(0.0..=1.0).contains(&args.reads)
        || args.keys == 0
    {
        bail!("--clients, --duration and --keys must be positive and --reads between 0 and 1");
    }
    if args.kill_leader_every.is_some() && args.cluster.token().is_none() {
        bail!("--kill-leader-every needs the admin token (--token or CONSENSO_TOKEN)");
    }
    if let Some(old) = &args.ab {
        return ab::main(&args, old);
    }
    let proxies: Vec<String> = args
        .cluster
        .proxy
        .split(',')
        .map(|p| crate::addr::ws_url(p.trim()))
        .collect::<anyhow::Result<_>>()?;
    let runtime = crate::runtime()?;
    let floor = match args.no_floor {
        true => None,
        false => Some(runtime.block_on(floor::measure(&args.floor_dir))?),
    };
    let mut report = runtime.block_on(run(&args, proxies))?;
    if let Some(floor) = floor {
        report.p50_over_floor = (report.writes > 0).then(|| report.write_latency_ms.p50 / floor.write_ms);
        report.floor = Some(floor);
    }
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

async fn run(args: &Args, proxies: Vec<String>) -> anyhow::Result<Report> {
    let start = Instant::now();
    let duration = Duration::from_secs_f64(args.duration);
    let totals = Arc::new(Mutex::new(Totals::default()));
    let key_prefix: Arc<str> = format!("bench-{:08x}-", crate::secret::random_u64() as u32).into();
    let (history, writer) = match &args.history {
        Some(path) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let file =
                std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            (Some(tx), Some(tokio::task::spawn_blocking(move || write_history(file, rx))))
        }
        None => (None, None),
    };
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let proxies = proxies.clone();
        let totals = totals.clone();
        let config = client::ClientConfig {
            index: c,
            value_size: args.value_size,
            reads: args.reads,
            consistency: args.consistency,
            keys: args.keys,
            key_prefix: key_prefix.clone(),
            history: history.clone(),
            start,
            end: start + duration,
            token: args.cluster.token(),
        };
        tasks.push(tokio::spawn(async move { client::run(config, proxies, totals).await }));
    }
    let kills = Arc::new(Mutex::new(Vec::new()));
    let killer = args.kill_leader_every.map(|every| {
        let (proxies, token, kills) =
            (proxies.clone(), args.cluster.token().unwrap_or_default(), kills.clone());
        tokio::spawn(async move {
            kill_leaders(proxies, token, Duration::from_secs_f64(every), start, duration, kills).await
        })
    });
    show_progress(start, duration, &totals).await;
    for task in tasks {
        task.await??;
    }
    if let Some(killer) = killer {
        killer.await??;
    }
    let mut totals = std::mem::take(&mut *totals.lock().expect("totals lock"));
    drop(history);
    if let Some(writer) = writer {
        writer.await?.context("cannot write the history")?;
    }
    totals.acks.sort_unstable();
    let kills = std::mem::take(&mut *kills.lock().expect("kills lock"));
    Ok(report(args, key_prefix.to_string(), totals, kills))
}

/// A progress bar until the run ends, with the write rate so far.
async fn show_progress(start: Instant, duration: Duration, totals: &Mutex<Totals>) {
    let progress = indicatif::ProgressBar::new(duration.as_millis() as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {elapsed_precise}/{duration_precise} {msg}")
            .expect("valid template"),
    );
    while start.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let done = totals.lock().expect("totals lock").acks.len();
        progress.set_position(start.elapsed().as_millis() as u64);
        progress.set_message(format!("{:.0} writes/s", done as f64 / start.elapsed().as_secs_f64()));
    }
    progress.finish_and_clear();
}

/// What the run measured, with each leader kill's write gap.
fn report(args: &Args, key_prefix: String, totals: Totals, kills: Vec<Kill>) -> Report {
    let elapsed = args.duration;
    let kills: Vec<Kill> = kills
        .into_iter()
        .map(|k| {
            let window = args.kill_leader_every.map_or(1_000_000, |e| (e * 1e6) as u64);
            Kill { gap_ms: gap_around(&totals.acks, (k.at_s * 1e6) as u64, window), ..k }
        })
        .collect();
    let mut gaps: Vec<f64> = kills.iter().filter_map(|k| k.gap_ms).collect();
    gaps.sort_by(f64::total_cmp);
    let count = |h: &Option<Histogram<u64>>| h.as_ref().map_or(0, |h| h.len());
    Report {
        clients: args.clients,
        key_prefix,
        duration_s: elapsed,
        value_size: args.value_size,
        read_fraction: args.reads,
        writes: count(&totals.writes),
        reads: count(&totals.reads),
        errors: totals.errors,
        error_kinds: totals.error_kinds.clone(),
        unknown: totals.unknown,
        writes_per_s: count(&totals.writes) as f64 / elapsed,
        reads_per_s: count(&totals.reads) as f64 / elapsed,
        write_latency_ms: percentiles(&totals.writes),
        read_latency_ms: percentiles(&totals.reads),
        median_gap_ms: (!gaps.is_empty()).then(|| gaps[gaps.len() / 2]),
        kills,
        floor: None,
        p50_over_floor: None,
    }
}

/// The longest stretch without an acknowledged write in the `window` after a kill at `at`
/// (starting from the last acknowledgement before the kill). Writes already committed when the
/// leader died may still be acknowledged just after; the outage is the longest silence.
fn gap_around(acks: &[u64], at: u64, window: u64) -> Option<f64> {
    let i = acks.partition_point(|t| *t < at);
    let mut previous = if i > 0 { acks[i - 1] } else { at };
    let mut longest = 0;
    for t in acks[i..].iter().take_while(|t| **t <= at + window) {
        longest = longest.max(t - previous);
        previous = *t;
    }
    (i < acks.len()).then_some(longest as f64 / 1000.0)
}

fn percentiles(h: &Option<Histogram<u64>>) -> Percentiles {
    let Some(h) = h.as_ref().filter(|h| !h.is_empty()) else { return Percentiles::default() };
    let ms = |us: u64| us as f64 / 1000.0;
    Percentiles {
        p50: ms(h.value_at_quantile(0.5)),
        p90: ms(h.value_at_quantile(0.9)),
        p99: ms(h.value_at_quantile(0.99)),
        max: ms(h.max()),
    }
}

fn print_report(r: &Report) {
    outln!(
        "bench: {} clients for {:.1} s, values of {} B, {:.0}% reads",
        r.clients,
        r.duration_s,
        r.value_size,
        r.read_fraction * 100.0
    );
    let line = |name: &str, n: u64, rate: f64, p: &Percentiles| {
        outln!(
            "  {name:<6} {n:>8} ok  {rate:>9.1}/s   latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            p.p50,
            p.p90,
            p.p99,
            p.max
        );
    };
    line("writes", r.writes, r.writes_per_s, &r.write_latency_ms);
    if let Some(f) = &r.floor {
        outln!(
            "  floor here: fsync p50 {:.3} ms, loopback round trip p50 {:.3} ms → one write ≥ {:.3} ms; \
             write p50 = {:.2}× the floor, p99 = {:.1}× p50",
            f.fsync_p50_ms,
            f.loopback_rtt_p50_ms,
            f.write_ms,
            r.p50_over_floor.unwrap_or(f64::NAN),
            r.write_latency_ms.p99 / r.write_latency_ms.p50.max(1e-9)
        );
    }
    if r.reads > 0 {
        line("reads", r.reads, r.reads_per_s, &r.read_latency_ms);
    }
    let kinds: Vec<String> = r.error_kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let kinds = if kinds.is_empty() { String::new() } else { format!(" ({})", kinds.join(", ")) };
    outln!("  refused {}   unknown outcome {}{kinds}", r.errors, r.unknown);
    if !r.kills.is_empty() {
        let gaps: Vec<String> = r
            .kills
            .iter()
            .map(|k| {
                format!(
                    "node {} at {:.1}s: {}",
                    k.node,
                    k.at_s,
                    k.gap_ms.map_or("-".into(), |g| format!("{g:.0} ms"))
                )
            })
            .collect();
        outln!("  leader kills: {}", gaps.join("; "));
        if let Some(m) = r.median_gap_ms {
            outln!("  median write gap after a leader kill: {m:.0} ms");
        }
    }
}

/// Writes operations as they complete, a line each, flushed often: a run that is killed
/// still leaves a usable history up to that point.
fn write_history(
    file: std::fs::File,
    mut ops: tokio::sync::mpsc::UnboundedReceiver<Operation>,
) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(file);
    let mut last_flush = Instant::now();
    while let Some(op) = ops.blocking_recv() {
        writeln!(out, "{}", serde_json::to_string(&op)?)?;
        if last_flush.elapsed() > Duration::from_millis(200) {
            out.flush()?;
            last_flush = Instant::now();
        }
    }
    out.flush()?;
    Ok(())
}

/// Every `every`: find the leader, kill it; halfway to the next kill, restart it.
async fn kill_leaders(
    proxies: Vec<String>,
    token: String,
    every: Duration,
    start: Instant,
    duration: Duration,
    kills: Arc<Mutex<Vec<Kill>>>,
) -> anyhow::Result<()> {
    let mut next = start + every;
    while next + every / 2 < start + duration {
        tokio::time::sleep_until(next.into()).await;
        let Some(leader) = admin_leader(&proxies, &token).await else {
            next += every;
            continue;
        };
        let at = start.elapsed().as_secs_f64();
        if admin(&proxies, &token, AdminCommand::Crash { node: leader }).await.is_ok() {
            kills.lock().expect("kills lock").push(Kill { at_s: at, node: leader, gap_ms: None });
        }
        tokio::time::sleep(every / 2).await;
        let _ = admin(&proxies, &token, AdminCommand::Restart { node: leader }).await;
        next += every;
    }
    Ok(())
}

async fn admin_session(proxies: &[String], token: &str) -> Option<ws::Stream> {
    for proxy in proxies {
        if let Ok((s, welcome)) = ws::open_client(proxy, Some(token.to_string())).await {
            if welcome.admin {
                return Some(s);
            }
        }
    }
    None
}

pub(crate) async fn admin_request(proxies: &[String], token: &str, frame: ClientFrame) -> Option<ProxyFrame> {
    let mut s = admin_session(proxies, token).await?;
    ws::send(&mut s, &frame).await.ok()?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ws::recv::<ProxyFrame>(&mut s))
            .await
            .ok()?
            .ok()??
        {
            Ok(ProxyFrame::Welcome { .. }) => continue,
            Ok(frame) => return Some(frame),
            Err(_) => return None,
        }
    }
}

pub(crate) async fn admin_leader(proxies: &[String], token: &str) -> Option<NodeId> {
    match admin_request(proxies, token, ClientFrame::Status { id: 1 }).await? {
        ProxyFrame::Status { cluster, .. } => cluster.leader,
        _ => None,
    }
}

pub(crate) async fn admin(proxies: &[String], token: &str, command: AdminCommand) -> Result<(), ()> {
    match admin_request(proxies, token, ClientFrame::Admin { id: 1, command }).await {
        Some(ProxyFrame::AdminDone { .. }) => Ok(()),
        _ => Err(()),
    }
}
