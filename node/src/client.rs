//! `consenso client`: one operation against the cluster, through whichever proxy answers.
//!
//! A write first opens a session of its own (registered through the log: its id is the
//! registration's index), then goes out as write 1 of it — so that if a proxy dies with the
//! write in flight, the same write sent through the next proxy is recognised by the servers
//! and applied once.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use shared::event::Consistency;
use shared::protocol::{
    AdminCommand, ClientFrame, ClusterStatus, ErrorKind, OpResult, ProxyFrame, Session, parse_partition,
};
use shared::raft::{MessageId, NodeId};

use crate::output::{errln, outln};
use crate::ws;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cluster: crate::addr::ProxyArgs,
    /// Give up after this many seconds
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// Say which node answered and at which log index (on stderr)
    #[arg(short, long)]
    verbose: bool,
    #[command(subcommand)]
    op: Op,
}

#[derive(clap::Subcommand)]
enum Op {
    /// Set KEY to VALUE
    Put { key: String, value: String },
    /// Read KEY
    Get {
        key: String,
        /// linearizable (ReadIndex, any server), stale (a follower's local state), or leader
        #[arg(long, default_value = "linearizable")]
        consistency: Consistency,
    },
    /// Remove KEY
    Delete { key: String },
    /// Set KEY to NEW only if it holds OLD (use --absent instead of OLD for "only if unset")
    Cas {
        key: String,
        #[arg(required_unless_present = "absent")]
        old: Option<String>,
        new: String,
        #[arg(long)]
        absent: bool,
    },
    /// Show every node: role, term, log, commit, process state
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Kill a server (SIGKILL)
    Crash { node: NodeId },
    /// Start a crashed server again on its data
    Restart { node: NodeId },
    /// Freeze a server (SIGSTOP)
    Pause { node: NodeId },
    /// Thaw a paused server (SIGCONT)
    Resume { node: NodeId },
    /// Split the servers into groups, e.g. 1,2/3 (one group, e.g. 3, is cut off from the rest)
    Partition { groups: String },
    /// Lose every message from one server to another (one-way partition)
    Block { from: NodeId, to: NodeId },
    /// Remove partitions, loss and delay
    Heal,
    /// Lose a fraction (0–1) of messages, from one node or all
    Drop {
        rate: f64,
        #[arg(long)]
        node: Option<NodeId>,
    },
    /// Delay messages by MS milliseconds, from one node or all
    Delay {
        ms: u64,
        #[arg(long)]
        node: Option<NodeId>,
    },
    /// Stretch every timeout by X (slow motion)
    TimeScale { scale: f64 },
    /// Ask the leader to hand leadership to NODE
    Transfer { node: NodeId },
    /// Stop every server's clock: no timer fires, every message is held until a step
    StopTime,
    /// Let the clocks run again (held messages go on their way)
    StartTime,
    /// Deliver the oldest held message; with nothing held, advance to the next timer
    Step {
        #[arg(long, default_value_t = 1)]
        count: u32,
    },
    /// Deliver one held message now
    DeliverMessage { id: MessageId },
    /// Drop one held message
    DropMessage { id: MessageId },
    /// Run NODE's clock to its next timer (its election timer, on a follower)
    FireTimer { node: NodeId },
    /// Move the clocks forward by MS milliseconds (every server's, or one's)
    Advance {
        ms: u64,
        #[arg(long)]
        node: Option<NodeId>,
    },
    /// One-way network latency in ms of cluster time, or `auto`
    Latency {
        ms: String,
        /// Up to this many more ms per message (default: half the latency)
        #[arg(long)]
        jitter: Option<u64>,
    },
    /// Most entries per AppendEntries (a number, or `default`)
    Batch { entries: String },
    /// Take a snapshot and compact the log now (every server, or one)
    Snapshot {
        #[arg(long)]
        node: Option<NodeId>,
    },
    /// Restart the whole cluster on empty disks (needs `consenso cluster`)
    Reset,
    /// Let clients without the token write (`on`), or not (`off`), through this proxy
    OpenWrites { state: OnOff },
    /// Record what the pages see to a file on the proxy's machine (`on [--file F]`), or stop
    Record {
        state: OnOff,
        #[arg(long)]
        file: Option<String>,
    },
    /// Add a server: the supervisor starts it on an empty disk (id ID, or the next free one)
    /// and it joins as a learner, becoming a voter once it has caught up
    AddServer {
        id: Option<NodeId>,
        /// Where a server you started yourself listens (no supervisor): it waits, in no
        /// cluster, until it is added
        #[arg(long)]
        address: Option<String>,
    },
    /// Remove server ID from the cluster (a leader hands over first); its process is stopped.
    /// To replace a server whose disk is lost: remove it, then add a new one
    RemoveServer { id: NodeId },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OnOff {
    On,
    Off,
}

pub fn main(args: Args) -> ExitCode {
    let runtime = match crate::runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

impl Op {
    fn is_write(&self) -> bool {
        matches!(self, Op::Put { .. } | Op::Delete { .. } | Op::Cas { .. })
    }
}

fn request(op: &Op, id: u64, session: Option<Session>) -> ClientFrame {
    let admin = |command| ClientFrame::Admin { id, command };
    match op {
        Op::Put { key, value } => ClientFrame::Put { id, key: key.clone(), value: value.clone(), session },
        Op::Get { key, consistency } => ClientFrame::Get { id, key: key.clone(), consistency: *consistency },
        Op::Delete { key } => ClientFrame::Delete { id, key: key.clone(), session },
        Op::Cas { key, old, new, absent } => ClientFrame::Cas {
            id,
            key: key.clone(),
            expected: if *absent { None } else { old.clone() },
            new: new.clone(),
            session,
        },
        Op::Status { .. } => ClientFrame::Status { id },
        Op::Crash { node } => admin(AdminCommand::Crash { node: *node }),
        Op::Restart { node } => admin(AdminCommand::Restart { node: *node }),
        Op::Pause { node } => admin(AdminCommand::Pause { node: *node }),
        Op::Resume { node } => admin(AdminCommand::Resume { node: *node }),
        Op::Partition { groups } => {
            admin(AdminCommand::Partition { groups: parse_partition(groups).unwrap_or_default() })
        }
        Op::Block { from, to } => admin(AdminCommand::Block { from: *from, to: *to }),
        Op::Heal => admin(AdminCommand::Heal),
        Op::Drop { rate, node } => admin(AdminCommand::Drop { node: *node, rate: *rate }),
        Op::Delay { ms, node } => admin(AdminCommand::Delay { node: *node, ms: *ms }),
        Op::TimeScale { scale } => admin(AdminCommand::TimeScale { scale: *scale }),
        Op::Transfer { node } => admin(AdminCommand::TransferLeadership { to: *node }),
        Op::StopTime => admin(AdminCommand::StopTime),
        Op::StartTime => admin(AdminCommand::StartTime),
        Op::Step { count } => admin(AdminCommand::Step { count: *count }),
        Op::DeliverMessage { id } => admin(AdminCommand::DeliverMessage { id: *id }),
        Op::DropMessage { id } => admin(AdminCommand::DropMessage { id: *id }),
        Op::FireTimer { node } => admin(AdminCommand::FireTimer { node: *node }),
        Op::Advance { ms, node } => admin(AdminCommand::Advance { node: *node, ms: *ms }),
        Op::Latency { ms, jitter } => {
            admin(AdminCommand::Latency { ms: number_or(ms, "auto").unwrap_or_default(), jitter_ms: *jitter })
        }
        Op::Batch { entries } => admin(AdminCommand::BatchSize {
            entries: number_or(entries, "default").unwrap_or_default().map(|n| n as u32),
        }),
        Op::Snapshot { node } => admin(AdminCommand::Snapshot { node: *node }),
        Op::Reset => admin(AdminCommand::Reset),
        Op::OpenWrites { state } => admin(AdminCommand::OpenWrites { open: matches!(state, OnOff::On) }),
        Op::Record { state, file } => {
            admin(AdminCommand::Record { on: matches!(state, OnOff::On), file: file.clone() })
        }
        Op::AddServer { id, address } => {
            admin(AdminCommand::AddServer { node: *id, address: address.clone() })
        }
        Op::RemoveServer { id } => admin(AdminCommand::RemoveServer { node: *id }),
    }
}

/// A number, or the word that means "the default" (`None`).
fn number_or(text: &str, word: &str) -> Result<Option<u64>, String> {
    if text == word {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| format!("'{text}' is neither a number nor '{word}'"))
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    match &args.op {
        Op::Partition { groups } => {
            parse_partition(groups).map_err(anyhow::Error::msg)?;
        }
        Op::Latency { ms, .. } => {
            number_or(ms, "auto").map_err(anyhow::Error::msg)?;
        }
        Op::Batch { entries } => {
            number_or(entries, "default").map_err(anyhow::Error::msg)?;
        }
        _ => {}
    }
    let proxies: Vec<String> =
        args.cluster.proxy.split(',').map(str::trim).filter(|p| !p.is_empty()).map(String::from).collect();
    for p in &proxies {
        crate::addr::ws_url(p)?;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
    // A new session per write: its only write is number 1, and nothing comes before it.
    let session = match args.op.is_write() {
        true => match exchange(&args, &proxies, deadline, &ClientFrame::Register { id: 1 }).await? {
            ProxyFrame::Registered { client, .. } => {
                Some(Session { client, seq: 1, answered_below: Some(1) })
            }
            other => return report(&args, other),
        },
        false => None,
    };
    let frame = exchange(&args, &proxies, deadline, &request(&args.op, 1, session)).await?;
    report(&args, frame)
}

/// Sends `frame` through every proxy in turn until one answers; the same frame (and session)
/// each time.
async fn exchange(
    args: &Args,
    proxies: &[String],
    deadline: tokio::time::Instant,
    frame: &ClientFrame,
) -> anyhow::Result<ProxyFrame> {
    let mut last_error = anyhow::anyhow!("no proxy given");
    let mut round = 0;
    while tokio::time::Instant::now() < deadline {
        for proxy in proxies {
            match tokio::time::timeout_at(deadline, attempt(args, proxy, frame)).await {
                Ok(Ok(frame)) => return Ok(frame),
                Ok(Err(e)) => {
                    if args.verbose {
                        eprintln!("{proxy}: {e:#}");
                    }
                    last_error = e;
                }
                Err(_) => bail!("no answer within {} s", args.timeout),
            }
        }
        round += 1;
        tokio::time::sleep(Duration::from_millis((100 * round).min(1_000))).await;
    }
    Err(last_error.context(format!("no proxy could complete the request (tried {})", proxies.join(", "))))
}

/// One try through one proxy. Errors mean "try another proxy"; answers (even errors from the
/// cluster) are returned.
async fn attempt(args: &Args, proxy: &str, frame: &ClientFrame) -> anyhow::Result<ProxyFrame> {
    let (mut stream, _) = ws::open_client(proxy, args.cluster.token()).await?;
    ws::send(&mut stream, frame).await?;
    loop {
        let frame = match ws::recv::<ProxyFrame>(&mut stream).await? {
            None => bail!("{proxy} closed the connection"),
            Some(Ok(frame)) => frame,
            Some(Err(e)) => bail!("{proxy} sent something unreadable: {e}"),
        };
        match frame {
            ProxyFrame::Error { id: None, error } if error.kind == ErrorKind::Unauthorized => {
                errln!("warning: {}", error.message);
            }
            ProxyFrame::Error { id: None, error } => bail!("{proxy}: {error}"),
            frame @ (ProxyFrame::Done { .. }
            | ProxyFrame::Registered { .. }
            | ProxyFrame::Error { .. }
            | ProxyFrame::Status { .. }
            | ProxyFrame::AdminDone { .. }) => {
                return Ok(frame);
            }
            _ => {}
        }
    }
}

fn report(args: &Args, frame: ProxyFrame) -> anyhow::Result<ExitCode> {
    match frame {
        ProxyFrame::Done { result, served_by, index, retries, .. } => {
            if args.verbose {
                let retried = if retries > 0 { format!(" after {retries} retries") } else { String::new() };
                eprintln!("answered by node {served_by} at log index {index}{retried}");
            }
            match result {
                OpResult::Put { .. } => outln!("OK"),
                OpResult::Get { value: Some(v) } => outln!("{v}"),
                OpResult::Get { value: None } => outln!("(nil)"),
                OpResult::Delete { existed: true } => outln!("deleted"),
                OpResult::Delete { existed: false } => outln!("not found"),
                OpResult::Cas { swapped: true, .. } => outln!("swapped"),
                OpResult::Cas { swapped: false, current } => {
                    outln!("not swapped: the value is {}", current.as_deref().unwrap_or("(nil)"));
                    return Ok(ExitCode::from(3));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ProxyFrame::AdminDone { message, .. } => {
            outln!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        ProxyFrame::Status { cluster, .. } => {
            let json = matches!(args.op, Op::Status { json: true });
            if json {
                outln!("{}", serde_json::to_string_pretty(&cluster).context("status serializes")?);
            } else {
                print_status(&cluster);
            }
            Ok(ExitCode::SUCCESS)
        }
        ProxyFrame::Error { error, .. } => {
            errln!("error: {}: {}", error.kind.as_str(), error.message);
            Ok(ExitCode::FAILURE)
        }
        other => bail!("unexpected answer: {other:?}"),
    }
}

fn print_status(cluster: &ClusterStatus) {
    let dash = || "-".to_string();
    outln!(
        "leader: {}   term: {}   time scale: ×{}   supervised: {}",
        cluster.leader.map_or("none".to_string(), |l| format!("node {l}")),
        cluster.term,
        cluster.time_scale,
        if cluster.supervised { "yes" } else { "no" }
    );
    let t = &cluster.time;
    outln!(
        "time: {}   latency: {} ms (+{} jitter){}   held messages: {}",
        if t.stopped { "STOPPED" } else { "running" },
        t.latency_ms,
        t.jitter_ms,
        if t.latency_auto { " auto" } else { "" },
        t.held
    );
    for m in &t.messages {
        outln!("  held #{:<16} {} → {}  {}", m.id, m.from, m.to, m.kind.name());
    }
    if !cluster.bugs.is_empty() {
        let names: Vec<&str> = cluster.bugs.iter().map(|b| b.name()).collect();
        outln!("deliberate defects: {}", names.join(", "));
    }
    for alarm in &cluster.alarms {
        outln!("ALARM {}: {}", alarm.property.name(), alarm.detail);
    }
    let list = |ids: &[NodeId]| ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let m = &cluster.members;
    if m.learners.is_empty() {
        outln!("members: voters {}", list(&m.voters));
    } else {
        outln!(
            "members: voters {}; learners (catching up, no vote yet) {}",
            list(&m.voters),
            list(&m.learners)
        );
    }
    outln!(
        "{:<5} {:<21} {:<8} {:<11} {:<14} {:>5} {:>6} {:>8} {:>8} {:>8}",
        "node",
        "address",
        "pid",
        "process",
        "role",
        "term",
        "vote",
        "last",
        "commit",
        "applied"
    );
    for n in &cluster.nodes {
        let role = n.role.map_or(dash(), |r| r.to_string()) + if n.partitioned { " ✂" } else { "" };
        outln!(
            "{:<5} {:<21} {:<8} {:<11} {:<14} {:>5} {:>6} {:>8} {:>8} {:>8}",
            n.id,
            n.address,
            n.pid.map_or(dash(), |p| p.to_string()),
            n.state.as_str(),
            role,
            n.term.map_or(dash(), |t| t.to_string()),
            n.voted_for.map_or(dash(), |v| v.to_string()),
            n.last_log_index.map_or(dash(), |i| i.to_string()),
            n.commit.map_or(dash(), |i| i.to_string()),
            n.applied.map_or(dash(), |i| i.to_string()),
        );
    }
    print_hosted(cluster);
}

/// A student's own nodes (`--server-cmd`): what runs, and each one's problems.
fn print_hosted(cluster: &ClusterStatus) {
    let hosted = cluster.nodes.iter().filter_map(|n| Some((n.id, n.status.as_ref()?.hosted.as_ref()?)));
    for (i, (id, h)) in hosted.enumerate() {
        if i == 0 {
            outln!("your node: {}", h.command);
        }
        let mut problems = Vec::new();
        if !h.ready {
            problems.push("has not answered init with init_ok".to_string());
        }
        if h.bad_lines > 0 {
            let last = h.last_problem.clone().unwrap_or_default();
            let lines = if h.bad_lines == 1 { "line" } else { "lines" };
            problems.push(format!("wrote {} {lines} Consenso could not use; the last: {last}", h.bad_lines));
        }
        if h.unanswered > 0 {
            problems.push(format!("left {} client operations unanswered", h.unanswered));
        }
        if !problems.is_empty() {
            outln!("  node {id} {}", problems.join("; "));
        }
    }
}
