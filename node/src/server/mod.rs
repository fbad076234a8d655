//! `consenso server`: one Raft server.
//!
//! A task owns the `Replica` and the disk (`raft_loop`): it takes inputs from a channel,
//! persists each round with one fsync, then sends. Beside it, on the same thread, tokio tasks
//! do the networking: accepting peers and proxies on one WebSocket endpoint (`net`), and
//! keeping one outgoing connection per peer (`peers`). One thread, because a hand-off between
//! threads costs more than the loopback network (bench/RESULTS.md); only a leader's fsync
//! runs on a helper thread, so that the leader keeps reading its followers' answers and new
//! requests meanwhile. Every outgoing message waits in the Raft loop's network
//! queue (`outbox`) until its delivery time on the server's clock (`clock`), which a lecturer
//! can slow down, stop and step; faults injected by admins (partitions, loss, delay, latency)
//! are applied there and where messages arrive (`faults`). What the core observes goes to the
//! proxy and its pages in frames of a few milliseconds (`events`).
//!
//! The data directory (`storage`) holds the write-ahead log (format 2, CRC32C-checked
//! batches: a torn tail is cut off, any other damage refuses to start), the snapshot and the
//! `identity` file, written before anything else. A directory of another node is refused; a
//! server on an empty one starts outside any cluster and never makes itself a voter (but under
//! `--bug vote-on-empty-disk`): `consenso init` (`bootstrap`) makes it one of a new cluster, or
//! `add-server` adds it to a running one. A voter whose disk was emptied is not *admitted*: it
//! never votes and its acknowledgements do not count until it is removed and added again.
//!
//! How Raft runs (timers, snapshots, limits, deliberate defects) is `RaftOptions`, one clap
//! declaration flattened into `consenso server` and `consenso cluster` (which passes its own to
//! every server it starts).

mod child;
mod clock;
mod events;
mod faults;
mod hosted;
mod net;
mod outbox;
mod peers;
mod raft_loop;
/// Visible to the crate so that the fuzzer (`crate::fuzz`) can decode log and snapshot bytes.
pub(crate) mod storage;

use events::EventBatch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use shared::protocol::FaultSettings;
use shared::raft::{Bug, Config, NodeId};
use tokio::sync::{broadcast, mpsc as tmpsc};

pub use faults::FaultState;
pub use raft_loop::Input;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// This server's id (a positive integer, unique in the cluster)
    #[arg(long, required_unless_present = "id_from_hostname", default_value_t = 0)]
    id: NodeId,
    /// Take the id from the host name's trailing number plus one (`consenso-0` is node 1), as
    /// a Kubernetes StatefulSet names its pods
    #[arg(long, conflicts_with = "id")]
    id_from_hostname: bool,
    /// Servers of the cluster to connect to: 1=127.0.0.1:8091,2=... (this one included, unless
    /// --address says where it is). Servers added later are found through the configuration
    #[arg(long)]
    peers: String,
    /// Where the other servers reach this one (default: this server's address in --peers)
    #[arg(long)]
    address: Option<String>,
    /// Address to listen on (default: this server's address in --peers)
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Where the log, hard state and snapshots live
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Shared secret that peers and proxies must present
    #[arg(long, env = "CONSENSO_TOKEN", hide_env_values = true)]
    token: String,
    #[command(flatten)]
    pub raft: RaftOptions,
    /// Faults to start with, as the JSON of the protocol's fault settings (the supervisor
    /// passes them on restart, so that a server never runs a moment without them)
    #[arg(long)]
    faults: Option<String>,
    /// Run a node of your own instead of Consenso's Raft: a command (run by `sh -c`) that
    /// speaks Maelstrom's JSON lines on stdin/stdout (docs/node-protocol.md)
    #[arg(long)]
    server_cmd: Option<String>,
}

/// How a server runs Raft: timers, snapshots, limits and deliberate defects. One declaration
/// for `consenso server` and `consenso cluster`, which passes its own to every server it
/// starts (`to_args`).
#[derive(clap::Args, Clone, Debug)]
pub struct RaftOptions {
    /// Shortest election timeout in ms; each timer is random in [T, T + jitter)
    #[arg(long, default_value_t = 150)]
    pub election_timeout: u64,
    /// Randomness added to each election timer, in ms (default: half the timeout, so 150–225 ms)
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub election_jitter: Option<u64>,
    /// Heartbeat interval in ms
    #[arg(long, default_value_t = 50)]
    pub heartbeat: u64,
    /// Stretch all timeouts by this factor (10 = ten times slower, for teaching)
    #[arg(long, default_value_t = 1.0)]
    pub time_scale: f64,
    /// Take a snapshot and compact the log every N applied entries
    #[arg(long, default_value_t = 10_000)]
    pub snapshot_every: u64,
    /// Pre-vote (dissertation §9.6): a candidate first asks whether it could win, so a server
    /// cut off and back does not disrupt a working leader. `off` shows bare elections (no
    /// pre-votes on screen); every server of a cluster must use the same
    #[arg(long, default_value = "on", value_parser = on_off, action = clap::ArgAction::Set, value_name = "on|off")]
    pub pre_vote: bool,
    /// Most bytes of keys and values the store may hold; a write past it answers store_full.
    /// Every server of a cluster must use the same (the supervisor sees to it)
    #[arg(long, default_value_t = shared::kv::DEFAULT_STORE_LIMIT)]
    pub max_store_bytes: u64,
    /// Most entries in one AppendEntries
    #[arg(long, default_value_t = 512)]
    pub max_batch: usize,
    /// Run with one of the simulator's deliberate defects, to show that the live invariant
    /// monitor catches it (repeatable): commit-old-term, vote-without-log-check, forget-vote,
    /// stale-read, no-dedup, change-before-commit, vote-on-empty-disk, no-backtrack,
    /// snapshot-without-sessions, retry-without-session (the proxy's: `cluster` passes it on)
    #[arg(long = "bug")]
    pub bugs: Vec<Bug>,
}

fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("'{other}' is neither on nor off")),
    }
}

impl RaftOptions {
    /// The core's configuration for server `id` (a voter of `voters`, or joining if empty).
    fn config(&self, id: NodeId, voters: Vec<NodeId>) -> Config {
        let mut cfg = if voters.is_empty() { Config::joining(id) } else { Config::new(id, voters) };
        cfg.election_timeout = self.election_timeout;
        cfg.election_jitter = self.election_jitter();
        cfg.heartbeat_interval = self.heartbeat;
        cfg.max_entries_per_message = self.max_batch;
        cfg.pre_vote = self.pre_vote;
        cfg.bugs = self.bugs.iter().copied().collect();
        cfg.validate();
        cfg
    }

    pub fn election_jitter(&self) -> u64 {
        self.election_jitter.unwrap_or(shared::raft::default_election_jitter(self.election_timeout))
    }

    /// The same options as `consenso server` flags, for a server this process starts.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("--election-timeout={}", self.election_timeout),
            format!("--election-jitter={}", self.election_jitter()),
            format!("--heartbeat={}", self.heartbeat),
            format!("--time-scale={}", self.time_scale),
            format!("--snapshot-every={}", self.snapshot_every),
            format!("--max-store-bytes={}", self.max_store_bytes),
            format!("--max-batch={}", self.max_batch),
            format!("--pre-vote={}", if self.pre_vote { "on" } else { "off" }),
        ];
        args.extend(self.bugs.iter().map(|b| format!("--bug={b}")));
        args
    }
}

/// What the networking tasks and the Raft loop share.
pub struct Shared {
    pub id: NodeId,
    /// The cluster this server's disk belongs to, once known (`storage::Identity`): peers
    /// of another cluster are refused.
    pub cluster: Mutex<Option<String>>,
    pub address: String,
    pub token: String,
    pub inputs: raft_loop::InputSender,
    pub faults: FaultState,
    /// Wakes a peer's reconnect loop: when a peer connects to us it is back, so our link to it
    /// should not wait out its backoff (messages to it are lost meanwhile).
    pub peer_wakeups: BTreeMap<NodeId, Arc<tokio::sync::Notify>>,
    /// Replies to proxy connections, by connection id.
    pub connections: Mutex<BTreeMap<u64, tmpsc::UnboundedSender<Arc<str>>>>,
    /// Encoded events and status frames for subscribed proxies.
    pub observers: broadcast::Sender<Arc<str>>,
    pub next_connection: AtomicU64,
    /// For the Raft loop to start connections to servers that join the configuration.
    pub runtime: tokio::runtime::Handle,
    pub metrics: crate::metrics::ServerMetrics,
}

impl Shared {
    /// A frame for one proxy connection (gone is fine: its requests die with it).
    pub fn send_to(&self, connection: u64, frame: Arc<str>) {
        if let Some(tx) = self.connections.lock().expect("connections lock").get(&connection) {
            let _ = tx.send(frame);
        }
    }

    /// Sends observers one frame of events, numbered `seq` (they detect gaps by the numbers).
    /// No subscriber is fine: events are for observers only.
    fn publish(&self, events: Vec<shared::event::Observed>, seq: u64) {
        let frame = shared::protocol::ServerOutbound::Events { events, seq };
        let _ = self.observers.send(shared::protocol::encode(&frame).into());
    }
}

/// Makes sure the data directory is this server's: a directory of another node is refused,
/// and a new one is claimed (its identity written before anything else). Returns the identity.
fn claim(
    storage: &mut storage::Storage,
    persisted: &shared::raft::Persisted,
    id: NodeId,
    dir: &std::path::Path,
) -> anyhow::Result<storage::Identity> {
    if let Some(identity) = storage.identity() {
        if identity.node != id {
            anyhow::bail!(
                "{} belongs to node {}, not node {id}: give each server its own data directory",
                dir.display(),
                identity.node
            );
        }
        return Ok(identity.clone());
    }
    let has_state = persisted.hard_state != Default::default()
        || persisted.snapshot.is_some()
        || !persisted.entries.is_empty();
    if has_state {
        anyhow::bail!("{} holds a log but no identity file: {}.", dir.display(), storage::DAMAGED);
    }
    let identity = storage::Identity::unclaimed(id);
    storage.write_identity(identity.clone())?;
    Ok(identity)
}

/// The number at the end of a host name, plus one: pods of a StatefulSet count from 0, node
/// ids from 1.
fn id_from_hostname(hostname: &str) -> anyhow::Result<NodeId> {
    let ordinal = hostname.rsplit_once('-').map_or(hostname, |(_, n)| n);
    let ordinal: NodeId = ordinal.parse().with_context(|| {
        format!("host name '{hostname}' does not end in -N (as a StatefulSet pod's does)")
    })?;
    Ok(ordinal + 1)
}

pub fn main(mut args: Args) -> anyhow::Result<()> {
    if args.id_from_hostname {
        let hostname = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .context("--id-from-hostname: no HOSTNAME, no /etc/hostname")?;
        args.id = id_from_hostname(hostname.trim())?;
    }
    if args.id == 0 {
        anyhow::bail!("--id must be a positive integer");
    }
    let nodes = crate::addr::node_list(&args.peers)?;
    let address = match &args.address {
        Some(address) => address.clone(),
        None => nodes.iter().find(|(id, _)| *id == args.id).map(|(_, a)| a.clone()).with_context(|| {
            format!("node {} is not in --peers {}: say where it listens with --address", args.id, args.peers)
        })?,
    };
    let listen: SocketAddr = match args.listen {
        Some(l) => l,
        None => crate::addr::host_port(&address)?
            .parse()
            .with_context(|| format!("cannot listen on {address}"))?,
    };
    if args.token.is_empty() {
        anyhow::bail!("--token (or CONSENSO_TOKEN) must not be empty");
    }
    let data_dir = args.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("data/node-{}", args.id)));
    if let Some(command) = args.server_cmd.clone() {
        return host(args, nodes, address, listen, data_dir, command);
    }
    let (mut storage, persisted, recovery) = storage::Storage::open(&data_dir)?;
    tracing::info!(
        "node {} recovered {} log records from {} (term {}, vote {:?})",
        args.id,
        recovery.records,
        data_dir.display(),
        persisted.hard_state.term,
        persisted.hard_state.voted_for
    );
    let identity = claim(&mut storage, &persisted, args.id, &data_dir)?;
    let mut voters = identity.first_voters.clone();
    if voters.is_empty()
        && args.raft.bugs.contains(&Bug::VoteOnEmptyDisk)
        && persisted.hard_state == Default::default()
    {
        // The deliberate defect: an empty disk taken for a new cluster of every known server.
        voters = nodes.iter().map(|(id, _)| *id).collect();
        tracing::warn!(
            "node {}: vote-on-empty-disk: starting as a voter of {voters:?} on an empty disk",
            args.id
        );
    }
    let cfg = args.raft.config(args.id, voters);
    if !cfg.bugs.is_empty() {
        let names: Vec<&str> = cfg.bugs.iter().map(|b| b.name()).collect();
        tracing::warn!("node {} runs with deliberate defects: {}", args.id, names.join(", "));
    }
    if identity.first_voters.is_empty() && !persisted.hard_state.admitted {
        tracing::info!(
            "node {} is not part of a cluster yet: `consenso init` creates one with it, or `consenso client \
             add-server {} --address {address}` adds it to a running one. (A server that was a member and \
             lost its disk stays out until it is removed and added again.)",
            args.id,
            args.id
        );
    }
    let seed = crate::secret::random_u64();
    let options = move |links, inputs| raft_loop::Options {
        cfg,
        storage,
        persisted,
        seed,
        snapshot_every: args.raft.snapshot_every,
        max_store_bytes: args.raft.max_store_bytes,
        max_batch: args.raft.max_batch,
        links,
        inputs,
    };
    let cluster = identity.cluster.clone();
    serve(&args, &nodes, address, listen, cluster, "raft", move |shared, links, inputs| {
        raft_loop::run(shared, options(links, inputs))
    })
}

/// `consenso server --server-cmd`: the node is a process of the student's (`hosted`).
fn host(
    args: Args,
    nodes: Vec<(NodeId, String)>,
    address: String,
    listen: SocketAddr,
    data_dir: PathBuf,
    command: String,
) -> anyhow::Result<()> {
    let voters = nodes.iter().map(|(id, _)| *id).collect();
    let options = move |links, inputs| hosted::Options {
        command,
        data_dir,
        voters,
        election_timeout: args.raft.election_timeout,
        heartbeat: args.raft.heartbeat,
        seed: crate::secret::random_u64(),
        links,
        inputs,
    };
    serve(&args, &nodes, address, listen, None, "host", move |shared, links, inputs| {
        hosted::run(shared, options(links, inputs))
    })
}

/// Opens the server's endpoint and its links to peers, then runs `server` (the Raft loop,
/// or a hosted node's host) beside them on the same thread until it ends or a signal stops it.
fn serve<Loop: std::future::Future<Output = anyhow::Result<()>>>(
    args: &Args,
    nodes: &[(NodeId, String)],
    address: String,
    listen: SocketAddr,
    cluster: Option<String>,
    name: &str,
    server: impl FnOnce(Arc<Shared>, BTreeMap<NodeId, outbox::Link>, raft_loop::InputReceiver) -> Loop,
) -> anyhow::Result<()> {
    let initial_faults = match &args.faults {
        Some(json) => faults::sanitize(
            serde_json::from_str::<FaultSettings>(json)
                .context("--faults is not valid fault settings JSON")?,
        ),
        None => FaultSettings { time_scale: args.raft.time_scale, ..FaultSettings::normal() },
    };

    // One thread runs everything: the Raft loop and the network tasks take turns on it, so a
    // message needs no hand-off between threads on its way through (each one costs tens of µs
    // of wake-up on a busy machine, more than the network itself; see bench/RESULTS.md).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (inputs, input_rx) = tokio::sync::mpsc::unbounded_channel();
    let (observers, _) = broadcast::channel(1024);
    let mut links = BTreeMap::new();
    let mut peer_receivers = Vec::new();
    for (id, addr) in nodes.iter().filter(|(id, _)| *id != args.id) {
        let (sender, receiver) = peers::link();
        links.insert(*id, sender);
        peer_receivers.push((*id, addr.clone(), receiver));
    }
    let shared = Arc::new(Shared {
        id: args.id,
        cluster: Mutex::new(cluster),
        address: address.clone(),
        token: args.token.clone(),
        inputs,
        faults: FaultState::new(initial_faults),
        peer_wakeups: nodes.iter().map(|(id, _)| (*id, Arc::new(tokio::sync::Notify::new()))).collect(),
        connections: Mutex::new(BTreeMap::new()),
        observers,
        next_connection: AtomicU64::new(1),
        runtime: runtime.handle().clone(),
        metrics: crate::metrics::ServerMetrics::default(),
    });

    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(listen))
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!("node {} listening on {listen} (peers: {})", args.id, args.peers);
    for (id, addr, receiver) in peer_receivers {
        runtime.spawn(peers::run(shared.clone(), id, addr, receiver));
    }
    runtime.spawn(net::serve(shared.clone(), listener));

    let mut server = Box::pin(server(shared.clone(), links, input_rx));
    let ended = runtime.block_on(async {
        tokio::select! {
            () = crate::shutdown_signal() => None,
            outcome = &mut server => Some(outcome),
        }
    });
    let what = if name == "raft" { "the Raft loop" } else { "the node's host" };
    let outcome = match ended {
        None => {
            // The loop finishes its turn and stops on `Shutdown`, so that what it was doing
            // ends cleanly.
            tracing::info!("node {} shutting down", args.id);
            let _ = shared.inputs.send(Input::Shutdown);
            let outcome = runtime.block_on(server);
            // The last answers and events are queued: let the connections' tasks write them
            // (bounded: a peer that does not read is not waited for).
            runtime.block_on(tokio::time::sleep(std::time::Duration::from_millis(20)));
            outcome
        }
        Some(Ok(())) => Err(anyhow::anyhow!("{what} stopped unexpectedly")),
        Some(Err(e)) => Err(e.context(format!("{what} failed"))),
    };
    if let Err(e) = &outcome {
        tracing::error!("node {} stops: {e:#}", args.id);
    }
    outcome
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_statefulset_pod_name_gives_its_ordinal_plus_one() {
        assert_eq!(super::id_from_hostname("consenso-0").unwrap(), 1);
        assert_eq!(super::id_from_hostname("my-db-consenso-12").unwrap(), 13);
        assert!(super::id_from_hostname("consenso").is_err());
    }

    #[test]
    fn an_election_jitter_of_zero_is_refused() {
        use clap::Parser;
        assert!(Options::try_parse_from(["consenso", "--election-jitter", "0"]).is_err());
    }

    #[derive(clap::Parser)]
    struct Options {
        #[command(flatten)]
        raft: super::RaftOptions,
    }

    fn parse(args: &[&str]) -> super::RaftOptions {
        use clap::Parser;
        Options::try_parse_from(std::iter::once("consenso").chain(args.iter().copied())).unwrap().raft
    }

    #[test]
    fn the_options_a_cluster_passes_on_read_back_the_same_pre_vote_included() {
        let off = parse(&["--pre-vote", "off", "--election-timeout", "300", "--bug", "no-dedup"]);
        assert!(!off.pre_vote);
        let again = parse(&off.to_args().iter().map(String::as_str).collect::<Vec<_>>());
        assert!(!again.pre_vote && again.election_timeout == 300 && again.bugs.len() == 1);
        assert_eq!(again.election_jitter(), 150, "half the timeout unless asked");
        let narrow = parse(&["--election-jitter", "20"]);
        assert_eq!(
            parse(&narrow.to_args().iter().map(String::as_str).collect::<Vec<_>>()).election_jitter(),
            20
        );
        assert!(parse(&[]).pre_vote, "on unless asked");
        use clap::Parser;
        assert!(Options::try_parse_from(["consenso", "--pre-vote", "maybe"]).is_err());
    }
}
