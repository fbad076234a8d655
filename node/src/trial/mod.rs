//! `consenso test --server-cmd CMD`: a verdict on a node of the student's own, in the style of
//! Maelstrom — on real processes.
//!
//! It starts a local cluster whose every server is the student's program (`consenso cluster
//! --server-cmd`, recorded to a file), waits for it to elect a leader, then runs clients that
//! read and write a few keys while the nemesis (`nemesis`) breaks things; then heals everything
//! and checks: the history is linearizable (`shared::check`), the live monitor saw no safety
//! property broken (from the nodes' status lines), writes resume once the faults heal
//! (liveness), and the nodes wrote nothing Consenso could not read. The summary says which
//! property broke, when, and where the recording is. Exit status: 0 pass, 1 a property broke,
//! 2 undecided (the check ran out of budget, or the cluster could not be started).

mod nemesis;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use shared::check::{Operation, Output, Verdict, check_history};
use shared::event::Consistency;
use shared::protocol::{AdminCommand, ClientFrame, ClusterStatus, ProcessState, ProxyFrame};
use shared::rng::Rng;

use crate::bench::client::ClientConfig;
use crate::bench::{Totals, admin, admin_request};
use crate::output::outln;

#[derive(clap::Args)]
pub struct Args {
    /// The node to test: a command (run by `sh -c`) that speaks Maelstrom's JSON lines on
    /// stdin/stdout (docs/node-protocol.md)
    #[arg(long)]
    server_cmd: String,
    /// Number of nodes
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(3..=9))]
    nodes: u64,
    /// Seconds of workload under faults
    #[arg(long, default_value_t = 20.0)]
    time: f64,
    /// Concurrent clients
    #[arg(long, default_value_t = 4)]
    clients: u32,
    /// Seconds the cluster has to elect its first leader, and to take writes again after the
    /// faults heal
    #[arg(long, default_value_t = 15.0)]
    patience: f64,
    /// No faults: only the workload (to see whether the node works at all)
    #[arg(long)]
    no_nemesis: bool,
    /// Where the cluster's data, logs, history and recording go: a new or empty directory
    /// (default: one under /tmp, removed after a pass)
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// First port of the cluster (default: a free one)
    #[arg(long)]
    port: Option<u16>,
    /// Base election timeout in ms passed to the nodes (in `init`)
    #[arg(long, default_value_t = 150)]
    election_timeout: u64,
    /// Seed of the nemesis' choices (default: random)
    #[arg(long)]
    seed: Option<u64>,
}

/// What the run found, property by property.
struct Findings {
    lines: Vec<String>,
    broken: Vec<String>,
    undecided: Vec<String>,
}

impl Findings {
    fn ok(&mut self, property: &str, detail: String) {
        self.lines.push(format!("  ok        {property}: {detail}"));
    }
    fn broken(&mut self, property: &str, detail: String) {
        self.lines.push(format!("  BROKEN    {property}: {detail}"));
        if !self.broken.iter().any(|p| p == property) {
            self.broken.push(property.to_string());
        }
    }
    fn undecided(&mut self, property: &str, detail: String) {
        self.lines.push(format!("  UNDECIDED {property}: {detail}"));
        self.undecided.push(property.to_string());
    }
}

pub fn main(args: Args) -> ExitCode {
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            outln!("verdict: UNDECIDED — {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(crate::secret::random_u64);
    let (dir, temporary) = match &args.data_dir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("consenso-test-{:08x}", seed as u32)), true),
    };
    if temporary {
        let _ = std::fs::remove_dir_all(&dir);
    } else if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
        // Never clear a directory of the user's: it may hold anything.
        anyhow::bail!("--data-dir {} is not empty: give a new or empty directory", dir.display());
    }
    crate::secret::private_dir(&dir)?;
    let port = match args.port {
        Some(p) => p,
        None => free_ports(args.nodes).context("no free ports for the cluster")?,
    };
    let token = crate::secret::new_token();
    let recording = dir.join("recording.jsonl");
    outln!(
        "consenso test: `{}` on {} nodes, {} clients, {:.0} s of faults (seed {seed}); data in {}",
        args.server_cmd,
        args.nodes,
        args.clients,
        args.time,
        dir.display()
    );
    let mut cluster = start_cluster(&args, &dir, port, &token, &recording)?;
    let runtime = crate::runtime()?;
    let proxies = vec![format!("127.0.0.1:{port}")];
    let outcome = runtime.block_on(trial(&args, &proxies, &token, seed, &dir));
    stop_cluster(&mut cluster);
    let findings = outcome?;
    for line in &findings.lines {
        outln!("{line}");
    }
    let code = if !findings.broken.is_empty() {
        outln!("verdict: FAIL — {} broke", findings.broken.join(", "));
        ExitCode::FAILURE
    } else if !findings.undecided.is_empty() {
        outln!("verdict: UNDECIDED — {} could not be decided", findings.undecided.join(", "));
        ExitCode::from(2)
    } else {
        outln!("verdict: PASS");
        ExitCode::SUCCESS
    };
    if temporary && code == ExitCode::SUCCESS {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        outln!("recording: {} (`consenso diagram` draws it; the page replays it)", recording.display());
        outln!("logs:      {}", dir.join("logs").display());
    }
    Ok(code)
}

/// Ports P..P+10+nodes all free now (the cluster binds them a moment later).
fn free_ports(nodes: u64) -> Option<u16> {
    let mut rng = Rng::new(crate::secret::random_u64());
    (0..50).map(|_| 20_000 + rng.below(30_000) as u16).find(|base| {
        (0..=10 + nodes as u16).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok())
    })
}

fn start_cluster(
    args: &Args,
    dir: &std::path::Path,
    port: u16,
    token: &str,
    recording: &std::path::Path,
) -> anyhow::Result<std::process::Child> {
    let exe = std::env::current_exe()?;
    let log = std::fs::File::create(dir.join("cluster.log"))?;
    std::process::Command::new(exe)
        .args(["cluster", "--nodes", &args.nodes.to_string(), "--port", &port.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .arg("--record")
        .arg(recording)
        .args(["--server-cmd", &args.server_cmd])
        .arg(format!("--election-timeout={}", args.election_timeout))
        .env("CONSENSO_TOKEN", token)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the cluster")
}

fn stop_cluster(cluster: &mut std::process::Child) {
    use nix::sys::signal::{Signal, kill};
    let _ = kill(nix::unistd::Pid::from_raw(cluster.id() as i32), Signal::SIGTERM);
    for _ in 0..100 {
        if cluster.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = cluster.kill();
    let _ = cluster.wait();
}

async fn status(proxies: &[String], token: &str) -> Option<ClusterStatus> {
    match admin_request(proxies, token, ClientFrame::Status { id: 1 }).await? {
        ProxyFrame::Status { cluster, .. } => Some(*cluster),
        _ => None,
    }
}

async fn trial(
    args: &Args,
    proxies: &[String],
    token: &str,
    seed: u64,
    dir: &std::path::Path,
) -> anyhow::Result<Findings> {
    let mut findings = Findings { lines: Vec::new(), broken: Vec::new(), undecided: Vec::new() };
    let patience = Duration::from_secs_f64(args.patience);
    let started = Instant::now();
    // Ready when a leader is drawn — or, for a node that sends no status lines (a plain
    // Maelstrom node), when every node answered init and a write goes through.
    let mut served = false;
    let first = loop {
        let now = status(proxies, token).await;
        if let Some(s) = &now {
            if s.leader.is_some() {
                break now;
            }
            let all_ready = s.nodes.iter().all(|n| hosted(n).is_some_and(|h| h.ready));
            let silent = s.nodes.iter().all(|n| hosted(n).is_some_and(|h| h.status_lines == 0));
            if all_ready && silent && write_succeeds(proxies, token).await {
                served = true;
                break now;
            }
        }
        if started.elapsed() > patience {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(first) = first else {
        // No proxy: the cluster could not be created, most likely because the nodes exited.
        let stopped: Vec<(u64, String)> = (1..=args.nodes)
            .map(|id| (id, why_stopped(dir, id)))
            .filter(|(_, why)| !why.is_empty())
            .collect();
        if stopped.is_empty() {
            anyhow::bail!("the cluster's proxy never answered (see {})", dir.join("cluster.log").display());
        }
        findings.broken("election", "no leader: the cluster could not start its nodes".into());
        for (id, why) in stopped {
            findings.broken("protocol", format!("node {id} is down: {why}"));
        }
        return Ok(findings);
    };
    let took = started.elapsed().as_secs_f64();
    match first.leader {
        Some(leader) => findings.ok("election", format!("node {leader} leads after {took:.1} s")),
        None if served => findings.lines.push(format!(
            "  note      election: the nodes send no consenso_status lines, so their roles are not drawn and the \
             live monitor checks nothing; they took a write after {took:.1} s"
        )),
        None => {
            findings.broken("election", format!("no leader was elected in {:.0} s", args.patience));
            node_problems(&mut findings, &first, dir);
            return Ok(findings);
        }
    }
    let durable = first
        .nodes
        .iter()
        .all(|n| n.status.as_ref().and_then(|s| s.hosted.as_ref()).is_some_and(|h| h.durable));

    // The workload, with the nemesis beside it.
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.time);
    let (history_tx, mut history_rx) = tokio::sync::mpsc::unbounded_channel::<Operation>();
    let totals = Arc::new(Mutex::new(Totals::default()));
    let mut clients = Vec::new();
    for index in 0..args.clients {
        let cfg = ClientConfig {
            index,
            value_size: 1,
            reads: 0.5,
            consistency: Consistency::Linearizable,
            keys: 3,
            key_prefix: Arc::from("k"),
            history: Some(history_tx.clone()),
            start,
            end,
            token: Some(token.to_string()),
        };
        clients.push(tokio::spawn(crate::bench::client::run(cfg, proxies.to_vec(), totals.clone())));
    }
    drop(history_tx);
    let nemesis = (!args.no_nemesis).then(|| {
        let nemesis = nemesis::Nemesis {
            proxies: proxies.to_vec(),
            token: token.to_string(),
            nodes: first.nodes.iter().map(|n| n.id).collect(),
            durable,
            rng: Rng::new(seed),
            start,
            turn: 0,
        };
        tokio::spawn(nemesis.run(end))
    });
    let watcher = tokio::spawn(watch_alarms(proxies.to_vec(), token.to_string(), start, end));
    let faults = match nemesis {
        Some(n) => n.await?,
        None => Vec::new(),
    };
    let alarm_times = watcher.await?;
    for client in clients {
        client.await??;
    }
    let mut ops = Vec::new();
    while let Some(mut op) = history_rx.recv().await {
        // lin-kv's write_ok does not say what the write replaced: only that it happened.
        if let Output::Put { .. } = op.output {
            op.output = Output::Ok;
        }
        ops.push(op);
    }
    let summary = faults.iter().map(|f| format!("{:.1} s {}", f.at_s, f.what)).collect::<Vec<_>>();
    let crashes = if durable { "" } else { " (no crashes: the node's init_ok did not say durable)" };
    findings.ok("faults", format!("{} injected{crashes}: {}", faults.len(), summary.join("; ")));
    heal(proxies, token).await;
    liveness(&mut findings, proxies, token, patience).await;
    linearizability(&mut findings, &ops, dir)?;
    let last = status(proxies, token).await.unwrap_or(first);
    monitor(&mut findings, &last, &alarm_times, &faults);
    node_problems(&mut findings, &last, dir);
    Ok(findings)
}

/// Every fault undone: the network healed, every node running.
async fn heal(proxies: &[String], token: &str) {
    let _ = admin(proxies, token, AdminCommand::Heal).await;
    if let Some(s) = status(proxies, token).await {
        for node in s.nodes {
            match node.state {
                ProcessState::Paused => {
                    let _ = admin(proxies, token, AdminCommand::Resume { node: node.id }).await;
                }
                ProcessState::Crashed => {
                    let _ = admin(proxies, token, AdminCommand::Restart { node: node.id }).await;
                }
                _ => {}
            }
        }
    }
}

fn hosted(node: &shared::protocol::NodeView) -> Option<&shared::protocol::HostedStatus> {
    node.status.as_ref()?.hosted.as_ref()
}

async fn write_succeeds(proxies: &[String], token: &str) -> bool {
    let put = ClientFrame::Put { id: 1, key: "ready".into(), value: "yes".into(), session: None };
    matches!(admin_request(proxies, token, put).await, Some(ProxyFrame::Done { .. }))
}

/// Once healed, a write must succeed within the patience.
async fn liveness(findings: &mut Findings, proxies: &[String], token: &str, patience: Duration) {
    let healed = Instant::now();
    while healed.elapsed() < patience {
        if write_succeeds(proxies, token).await {
            findings.ok(
                "liveness",
                format!("writes resumed {:.1} s after the faults healed", healed.elapsed().as_secs_f64()),
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    findings.broken(
        "liveness",
        format!("no write succeeded in the {:.0} s after the faults healed", patience.as_secs_f64()),
    );
}

fn linearizability(findings: &mut Findings, ops: &[Operation], dir: &std::path::Path) -> anyhow::Result<()> {
    let history = dir.join("history.jsonl");
    let lines: Vec<String> =
        ops.iter().map(|op| serde_json::to_string(op).expect("an operation encodes")).collect();
    std::fs::write(&history, lines.join("\n") + "\n")?;
    let done = ops.iter().filter(|op| op.complete.is_some()).count();
    let report = check_history(ops);
    match (report.verdict(), &report.violation) {
        (Verdict::NotLinearizable, Some(v)) => {
            let near: Vec<String> = v.near.iter().take(8).map(|op| format!("      {op}")).collect();
            findings.broken(
                "linearizability",
                format!("key {}: {}\n    operations around it (client [invoke, return] call → output):\n{}\n    history: {}",
                    v.key, v.reason, near.join("\n"), history.display()),
            );
        }
        (Verdict::Unknown, _) => findings.undecided(
            "linearizability",
            format!("the search ran out of budget on {} of {} keys", report.inconclusive.len(), report.keys),
        ),
        _ if done == 0 => {
            findings.broken("linearizability", "no operation completed: nothing to check".to_string())
        }
        _ => findings.ok(
            "linearizability",
            format!("{} operations ({done} answered) on {} keys", ops.len(), report.keys),
        ),
    }
    Ok(())
}

/// What the live invariant monitor saw, from the nodes' status lines.
/// When each alarm was first seen (seconds since the workload began), looking every half
/// second until `end`: the summary says when a property broke, and what fault was on.
async fn watch_alarms(
    proxies: Vec<String>,
    token: String,
    start: Instant,
    end: Instant,
) -> Vec<(f64, String)> {
    let mut seen: Vec<(f64, String)> = Vec::new();
    while Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let Some(s) = status(&proxies, &token).await else { continue };
        for alarm in s.alarms {
            if !seen.iter().any(|(_, detail)| *detail == alarm.detail) {
                seen.push((start.elapsed().as_secs_f64(), alarm.detail));
            }
        }
    }
    seen
}

/// "at 4.2 s, during: partition …" for an alarm, if it was seen during the workload.
fn when(detail: &str, times: &[(f64, String)], faults: &[nemesis::Fault]) -> String {
    let Some((at, _)) = times.iter().find(|(_, d)| d == detail) else { return "after the workload".into() };
    match faults.iter().rev().find(|f| f.at_s <= *at) {
        Some(fault) => format!("at {at:.1} s, after \"{}\" at {:.1} s", fault.what, fault.at_s),
        None => format!("at {at:.1} s, before any fault"),
    }
}

fn monitor(
    findings: &mut Findings,
    status: &ClusterStatus,
    times: &[(f64, String)],
    faults: &[nemesis::Fault],
) {
    let silent = status.nodes.iter().all(|n| hosted(n).is_none_or(|h| h.status_lines == 0));
    if silent {
        findings
            .lines
            .push("  note      safety (live monitor): nothing to watch without consenso_status lines".into());
    } else if status.alarms.is_empty() {
        findings.ok(
            "safety (live monitor)",
            "no two leaders in a term, no committed entry lost or changed".into(),
        );
    }
    let mut properties = Vec::new();
    for alarm in &status.alarms {
        if !properties.contains(&alarm.property) {
            properties.push(alarm.property);
        }
    }
    for property in properties {
        let alarms: Vec<_> = status.alarms.iter().filter(|a| a.property == property).collect();
        let first = alarms[0];
        let more =
            if alarms.len() > 1 { format!(" ({} alarms in all)", alarms.len()) } else { String::new() };
        let name = property.name();
        findings.broken(
            &format!("{name} (live monitor)"),
            format!(
                "{}: term {}, nodes {:?}: {}{more}\n    the rule: {}",
                when(&first.detail, times, faults),
                first.term,
                first.nodes,
                first.detail,
                shared::event_text::property_rule(property, shared::event_text::Lang::En)
            ),
        );
    }
}

/// Lines a node wrote that Consenso could not use, nodes that never got ready or exited —
/// each problem said once, with the nodes that had it.
fn node_problems(findings: &mut Findings, status: &ClusterStatus, dir: &std::path::Path) {
    let mut problems: Vec<(String, Vec<u64>)> = Vec::new();
    let mut note = |problem: String, node: u64| match problems.iter_mut().find(|(p, _)| *p == problem) {
        Some((_, nodes)) => nodes.push(node),
        None => problems.push((problem, vec![node])),
    };
    for node in &status.nodes {
        match node.status.as_ref().and_then(|s| s.hosted.as_ref()) {
            Some(hosted) if node.state == ProcessState::Up => {
                if !hosted.ready {
                    note("never answered init with init_ok".to_string(), node.id);
                }
                if hosted.bad_lines > 0 {
                    let last = hosted.last_problem.clone().unwrap_or_default();
                    note(format!("wrote lines Consenso could not use; the last: {last}"), node.id);
                }
            }
            _ if node.state == ProcessState::Crashed => {
                let why = why_stopped(dir, node.id);
                let why = if why.is_empty() { "its log does not say why".to_string() } else { why };
                note(format!("is down: {why}"), node.id);
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        findings.ok("protocol", "every node answered init and wrote only lines Consenso understood".into());
    }
    for (problem, nodes) in problems {
        let who = if nodes.len() == status.nodes.len() {
            "every node".to_string()
        } else {
            format!("nodes {nodes:?}")
        };
        findings.broken("protocol", format!("{who}: {problem}"));
    }
}

/// Why a node's server stopped, from the last line its log says it with (empty if none does).
fn why_stopped(dir: &std::path::Path, node: u64) -> String {
    let log = std::fs::read_to_string(dir.join("logs").join(format!("node-{node}.log"))).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    let Some(at) = lines.iter().rposition(|l| l.contains(" stops: ")) else {
        return String::new();
    };
    let (_, why) = lines[at].split_once(" stops: ").expect("found above");
    // The node's last words follow, indented.
    let said = lines[at + 1..].iter().take_while(|l| l.starts_with("  ")).map(|l| l.trim());
    std::iter::once(why).chain(said).collect::<Vec<_>>().join(" ")
}
