//! `consenso cluster`: a whole cluster on this machine, as real child processes.
//!
//! Starts the servers and proxies, prints where everything is, and supervises: it restarts
//! nothing by itself (a crash in a demo should stay visible), but executes admin commands for
//! real — crash is SIGKILL, pause is SIGSTOP, resume SIGCONT, restart starts the server again
//! on the same data directory, reset starts every server again on an empty one. Proxies reach
//! the supervisor over its own WebSocket endpoint. Ctrl-C (or SIGTERM) stops every child and
//! exits.
//!
//! Ports: proxies at `--port`, `--port`+1, …; the supervisor at `--port`+9; server N at
//! `--port`+10+N.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shared::protocol::{
    ApiError, ErrorKind, FaultSettings, PROTOCOL_VERSION, ProcessAction, ProcessInfo, ProcessState,
    SupervisorInbound, SupervisorOutbound, encode,
};
use shared::raft::{Bug, NodeId};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::listener::{Gate, origin_allowed};
use crate::output::outln;
use crate::ws::{accept_frame, answer};

#[derive(clap::Args)]
pub struct Args {
    /// Number of Raft servers
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=9))]
    nodes: u64,
    /// Number of proxies (each serves the page; clients fail over between them)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=5))]
    proxies: u16,
    /// First port: proxies at PORT, PORT+1…; supervisor at PORT+9; server N at PORT+10+N
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Address to bind everything to (127.0.0.1 keeps the cluster private to this machine)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Directory for the servers' data and every process's log
    #[arg(long, default_value = "consenso-data")]
    data_dir: PathBuf,
    /// Stretch all timeouts by this factor (10 = ten times slower, for teaching)
    #[arg(long, default_value_t = 1.0)]
    time_scale: f64,
    /// Admin token (default: a fresh random one)
    #[arg(long, env = "CONSENSO_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Base election timeout in ms
    #[arg(long, default_value_t = 150)]
    election_timeout: u64,
    /// Heartbeat interval in ms
    #[arg(long, default_value_t = 50)]
    heartbeat: u64,
    /// Snapshot every N applied entries
    #[arg(long, default_value_t = 10_000)]
    snapshot_every: u64,
    /// Most bytes of keys and values the store may hold (writes past it answer store_full)
    #[arg(long, default_value_t = shared::kv::DEFAULT_STORE_LIMIT)]
    max_store_bytes: u64,
    /// Directory with the built page (passed to the proxies)
    #[arg(long)]
    web_dir: Option<PathBuf>,
    /// One-way network latency in ms of cluster time (scaled by slow motion like every
    /// timeout); default: none at real speed, a tenth of the election timeout in slow motion
    #[arg(long)]
    latency: Option<u64>,
    /// Up to this many more ms per message (default: half the latency)
    #[arg(long)]
    jitter: Option<u64>,
    /// Let clients without the token write (students); by default only reads are open
    #[arg(long)]
    open_writes: bool,
    /// Another origin whose pages may connect to the proxies (repeatable)
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Where servers run: `local` (this machine's loopback), or `netns` — each on a host of its
    /// own (a network namespace with its own address on a bridge, 10–40 ms away where the
    /// kernel has netem), so their messages cross a real network. netns needs root
    #[arg(long, value_enum, default_value = "local")]
    hosts: Hosts,
    /// Start the servers with one of the simulator's deliberate defects (repeatable), to watch
    /// the live invariant monitor catch it: commit-old-term, vote-without-log-check,
    /// forget-vote, stale-read, no-dedup
    #[arg(long = "bug")]
    bugs: Vec<Bug>,
}

/// Where a server lives, and how it starts.
#[derive(Clone)]
struct ServerPlace {
    address: String,
    data_dir: PathBuf,
    /// Started with --join: it waits to be added instead of bootstrapping.
    joins: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Hosts {
    Local,
    Netns,
}

struct Process {
    pid: Option<u32>,
    state: ProcessState,
    /// Bumped at every start, so that the exit of an old incarnation does not mark a new one.
    generation: u64,
}

struct Supervisor {
    exe: PathBuf,
    token: String,
    logs: PathBuf,
    data_dir: PathBuf,
    /// Where servers listen: `host:port+10+id`.
    host: String,
    port: u16,
    /// The options every server gets (time, batches, bugs…), besides its own id and place.
    common_args: Vec<String>,
    /// The servers of the first configuration; those added later join it.
    first: BTreeMap<NodeId, ServerPlace>,
    servers: Mutex<BTreeMap<NodeId, ServerPlace>>,
    /// With `--hosts netns`: the namespaces the servers run in (removed when the cluster stops).
    lan: Mutex<Option<crate::hosts::Lan>>,
    /// Ids of servers that left: never given again, even if their disk is gone.
    retired: Mutex<std::collections::BTreeSet<NodeId>>,
    /// Faults a server starts with when nobody says otherwise (the cluster's own options).
    initial_faults: FaultSettings,
    processes: Mutex<BTreeMap<NodeId, Process>>,
    updates: watch::Sender<(Vec<ProcessInfo>, u64)>,
    /// Resets so far: observers learn that what they knew is void.
    epoch: std::sync::atomic::AtomicU64,
    stopping: std::sync::atomic::AtomicBool,
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let token = args.token.clone().unwrap_or_else(crate::secret::new_token);
    if token.is_empty() {
        bail!("the token must not be empty");
    }
    if u32::from(args.port) + 10 + args.nodes as u32 > u32::from(u16::MAX) || args.port < 1024 {
        bail!(
            "--port {} leaves no room for the servers' ports (PORT+10+N must be a valid port ≥ 1024)",
            args.port
        );
    }
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    crate::secret::private_dir(&args.data_dir)?;
    let data_dir = args.data_dir.canonicalize()?;
    let logs = data_dir.join("logs");
    crate::secret::private_dir(&logs)?;
    crate::secret::write_token_file(&data_dir.join("token"), &token)?;

    let host = &args.host;
    let lan = match args.hosts {
        Hosts::Local => None,
        Hosts::Netns => {
            let mut lan = crate::hosts::Lan::create(args.port)?;
            for id in 1..=args.nodes {
                lan.add_host(id)?;
            }
            Some(lan)
        }
    };
    let servers: Vec<(NodeId, String)> = (1..=args.nodes)
        .map(|id| {
            let address = match &lan {
                Some(lan) => lan.address(id),
                None => format!("{host}:{}", u64::from(args.port) + 10 + id),
            };
            (id, address)
        })
        .collect();
    let proxies: Vec<String> = (0..args.proxies).map(|i| format!("{host}:{}", args.port + i)).collect();
    let supervisor_address = format!("127.0.0.1:{}", args.port + 9);
    let peers = servers.iter().map(|(id, a)| format!("{id}={a}")).collect::<Vec<_>>().join(",");

    let mut common_args = vec![
        format!("--election-timeout={}", args.election_timeout),
        format!("--heartbeat={}", args.heartbeat),
        format!("--time-scale={}", args.time_scale),
        format!("--snapshot-every={}", args.snapshot_every),
        format!("--max-store-bytes={}", args.max_store_bytes),
    ];
    common_args.extend(args.bugs.iter().map(|b| format!("--bug={b}")));
    let places: BTreeMap<NodeId, ServerPlace> = servers
        .iter()
        .map(|(id, address)| {
            let place = ServerPlace {
                address: address.clone(),
                data_dir: data_dir.join(format!("node-{id}")),
                joins: false,
            };
            (*id, place)
        })
        .collect();
    let initial_faults = FaultSettings {
        time_scale: args.time_scale,
        latency_ms: args.latency,
        jitter_ms: args.jitter,
        ..FaultSettings::normal()
    };
    let (updates, _) = watch::channel((Vec::new(), 0));
    let supervisor = Arc::new(Supervisor {
        exe: exe.clone(),
        token: token.clone(),
        logs: logs.clone(),
        data_dir: data_dir.clone(),
        host: args.host.clone(),
        port: args.port,
        common_args,
        first: places.clone(),
        servers: Mutex::new(places),
        retired: Mutex::new(std::collections::BTreeSet::new()),
        lan: Mutex::new(lan),
        initial_faults,
        processes: Mutex::new(BTreeMap::new()),
        updates,
        epoch: std::sync::atomic::AtomicU64::new(0),
        stopping: std::sync::atomic::AtomicBool::new(false),
    });

    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&supervisor_address).await.with_context(|| {
            format!(
                "cannot listen on {supervisor_address} (is another cluster running on --port {}?)",
                args.port
            )
        })?;
        let app = axum::Router::new().route("/ws", get(upgrade)).with_state(supervisor.clone());
        tokio::spawn(crate::listener::serve(listener, app, std::future::pending()));

        for (id, _) in &servers {
            supervisor.start(*id, None)?;
        }
        let mut proxy_children = Vec::new();
        for address in &proxies {
            let mut command = Command::new(&exe);
            command
                .arg("proxy")
                .arg(format!("--listen={address}"))
                .arg(format!("--nodes={peers}"))
                .arg(format!("--supervisor={supervisor_address}"))
                .arg(format!("--proxies={}", proxies.join(",")));
            if let Some(dir) = &args.web_dir {
                command.arg(format!("--web-dir={}", dir.display()));
            }
            if args.open_writes {
                command.arg("--open-writes");
            }
            command.args(args.allow_origins.iter().map(|o| format!("--allow-origin={o}")));
            let log = log_file(&logs, &format!("proxy-{}", address.rsplit(':').next().unwrap_or("0")))?;
            let child = command
                .env("CONSENSO_TOKEN", &token)
                .env(crate::SUPERVISOR_PID_ENV, std::process::id().to_string())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .context("cannot start a proxy")?;
            proxy_children.push(child);
        }
        print_banner(&proxies, &servers, &supervisor, &token, &data_dir, &logs);
        if !args.bugs.is_empty() {
            let names: Vec<String> = args.bugs.iter().map(|b| format!("{b} ({})", b.explanation())).collect();
            outln!("  DELIBERATE DEFECTS: {}", names.join("; "));
            outln!("  The page's invariant monitor should raise an alarm when they bite (try the lesson figure-8).");
            outln!();
        }

        crate::shutdown_signal().await;
        outln!("stopping the cluster…");
        supervisor.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
        for child in &proxy_children {
            if let Some(pid) = child.id() {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            }
        }
        supervisor.stop_all().await;
        // The servers' hosts go with them.
        drop(supervisor.lan.lock().expect("lan lock").take());
        for mut child in proxy_children {
            if tokio::time::timeout(Duration::from_secs(3), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
        outln!("stopped.");
        Ok(())
    })
}

fn log_file(dir: &Path, name: &str) -> anyhow::Result<std::fs::File> {
    crate::secret::private_file(&dir.join(format!("{name}.log")), true)
}

fn print_banner(
    proxies: &[String],
    servers: &[(NodeId, String)],
    supervisor: &Supervisor,
    token: &str,
    data_dir: &Path,
    logs: &Path,
) {
    let first = &proxies[0];
    outln!();
    outln!("Consenso: a Raft cluster of {} servers and {} proxies is running.", servers.len(), proxies.len());
    outln!();
    outln!("  page (admin):      http://{first}/?token={token}");
    outln!("  page (view only):  http://{first}/");
    outln!("  admin token:       {token}");
    outln!("  proxies:           {}", proxies.join(", "));
    let processes = supervisor.processes.lock().expect("processes lock");
    for (i, (id, address)) in servers.iter().enumerate() {
        let label = if i == 0 { "  servers:" } else { "" };
        let pid = processes.get(id).and_then(|p| p.pid).map_or(String::new(), |p| format!(" (pid {p})"));
        outln!("{label:<21}node {id} at {address}{pid}");
    }
    drop(processes);
    if let Some(lan) = supervisor.lan.lock().expect("lan lock").as_ref() {
        if lan.netem {
            outln!("  hosts:             a network namespace per server; 10, 20 or 40 ms one way (netem)");
        } else {
            outln!(
                "  hosts:             a network namespace per server; no netem in this kernel, so no added latency"
            );
        }
    }
    outln!("  data:              {}", data_dir.display());
    outln!("  logs:              {}", logs.display());
    outln!();
    // As the user started us (e.g. target/release/consenso), so the lines can be pasted.
    let me = std::env::args().next().unwrap_or_else(|| "consenso".into());
    // The CLI finds the token in ./consenso-data/token; elsewhere it must be told where.
    let default_file = std::path::Path::new("consenso-data/token").canonicalize().ok();
    let token_file = data_dir.join("token");
    let find = if default_file.as_deref() == Some(token_file.as_path()) {
        String::new()
    } else {
        format!(" --token-file {}", token_file.display())
    };
    outln!("  token file:        {} (the CLI reads it: writes and admin commands)", token_file.display());
    outln!();
    outln!("  try:  {me} client --proxy {first}{find} put greeting hello");
    outln!("        {me} client --proxy {first} get greeting");
    outln!("        {me} client --proxy {first}{find} crash 1");
    outln!();
    outln!("Ctrl-C stops everything.");
}

impl Supervisor {
    fn publish(&self) {
        let list = self
            .processes
            .lock()
            .expect("processes lock")
            .iter()
            .map(|(node, p)| ProcessInfo {
                node: *node,
                pid: p.pid,
                state: p.state,
                address: self.place(*node).map(|s| s.address),
            })
            .collect();
        let _ = self.updates.send((list, self.epoch.load(std::sync::atomic::Ordering::SeqCst)));
    }

    fn place(&self, id: NodeId) -> Option<ServerPlace> {
        self.servers.lock().expect("servers lock").get(&id).cloned()
    }

    /// Server `id`'s command line: every known server as a peer (a joining one reaches the
    /// others through them), its place, and the cluster's options.
    fn server_args(&self, id: NodeId) -> anyhow::Result<Vec<String>> {
        let servers = self.servers.lock().expect("servers lock");
        let place = servers.get(&id).with_context(|| format!("there is no node {id}"))?;
        let peers = servers.iter().map(|(id, s)| format!("{id}={}", s.address)).collect::<Vec<_>>().join(",");
        let mut args = vec![
            "server".to_string(),
            format!("--id={id}"),
            format!("--peers={peers}"),
            format!("--listen={}", place.address),
            format!("--data-dir={}", place.data_dir.display()),
        ];
        if place.joins {
            args.push("--join".to_string());
        }
        args.extend(self.common_args.iter().cloned());
        Ok(args)
    }

    /// Starts server `id` (again) on its data directory, with `faults` in force from its first
    /// moment (else the cluster's own).
    fn start(self: &Arc<Self>, id: NodeId, faults: Option<FaultSettings>) -> anyhow::Result<u32> {
        let log = log_file(&self.logs, &format!("node-{id}"))?;
        let faults = faults.unwrap_or_else(|| self.initial_faults.clone());
        let mut command = match self.lan.lock().expect("lan lock").as_ref() {
            Some(lan) => lan.command(id, &self.exe),
            None => Command::new(&self.exe),
        };
        let mut child: Child = command
            .args(self.server_args(id)?)
            .arg(format!("--faults={}", encode(&faults)))
            .env("CONSENSO_TOKEN", &self.token)
            .env(crate::SUPERVISOR_PID_ENV, std::process::id().to_string())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        let pid = child.id().context("a just-started child has a pid")?;
        let generation = {
            let mut processes = self.processes.lock().expect("processes lock");
            let process = processes.entry(id).or_insert(Process {
                pid: None,
                state: ProcessState::Crashed,
                generation: 0,
            });
            process.generation += 1;
            process.pid = Some(pid);
            process.state = ProcessState::Up;
            process.generation
        };
        self.publish();
        let me = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            if me.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let mut processes = me.processes.lock().expect("processes lock");
            if let Some(p) = processes.get_mut(&id) {
                if p.generation == generation {
                    p.state = ProcessState::Crashed;
                    p.pid = None;
                    tracing::info!("node {id} (pid {pid}) exited: {status:?}");
                }
            }
            drop(processes);
            me.publish();
        });
        Ok(pid)
    }

    fn pid_of(&self, id: NodeId) -> Result<(Option<u32>, ProcessState), ApiError> {
        let processes = self.processes.lock().expect("processes lock");
        let p = processes
            .get(&id)
            .ok_or_else(|| ApiError::new(ErrorKind::BadRequest, format!("there is no node {id}")))?;
        Ok((p.pid, p.state))
    }

    async fn act(
        self: &Arc<Self>,
        node: NodeId,
        action: ProcessAction,
        faults: Option<FaultSettings>,
    ) -> Result<String, ApiError> {
        let (pid, state) = self.pid_of(node)?;
        let signal = |sig: Signal| -> Result<(), ApiError> {
            let pid = pid
                .ok_or_else(|| ApiError::new(ErrorKind::BadRequest, format!("node {node} is not running")))?;
            kill(Pid::from_raw(pid as i32), sig)
                .map_err(|e| ApiError::new(ErrorKind::Unavailable, format!("cannot signal node {node}: {e}")))
        };
        match action {
            ProcessAction::Crash => {
                signal(Signal::SIGKILL)?;
                self.wait_for_exit(node).await;
                Ok(format!("node {node} killed (SIGKILL to pid {})", pid.unwrap_or(0)))
            }
            ProcessAction::Pause => {
                if state == ProcessState::Paused {
                    return Ok(format!("node {node} is already paused"));
                }
                signal(Signal::SIGSTOP)?;
                self.set_state(node, ProcessState::Paused);
                Ok(format!("node {node} paused (SIGSTOP to pid {})", pid.unwrap_or(0)))
            }
            ProcessAction::Resume => {
                signal(Signal::SIGCONT)?;
                self.set_state(node, ProcessState::Up);
                Ok(format!("node {node} resumed (SIGCONT to pid {})", pid.unwrap_or(0)))
            }
            ProcessAction::Restart => {
                if state != ProcessState::Crashed {
                    signal(Signal::SIGKILL)?;
                    self.wait_for_exit(node).await;
                }
                let pid = self.start(node, faults).map_err(|e| {
                    ApiError::new(ErrorKind::Unavailable, format!("cannot restart node {node}: {e:#}"))
                })?;
                Ok(format!("node {node} restarted (pid {pid}); it recovers from its data directory"))
            }
        }
    }

    /// Kills every server, empties its data directory and starts it again: a known start for
    /// a lesson.
    async fn reset(self: &Arc<Self>, faults: Option<FaultSettings>) -> Result<String, ApiError> {
        // Servers added since go: the cluster starts over in its first configuration.
        let added: Vec<NodeId> = self
            .servers
            .lock()
            .expect("servers lock")
            .keys()
            .copied()
            .filter(|id| !self.first.contains_key(id))
            .collect();
        // A new cluster: the ids of servers added to the old one are free again.
        for id in added {
            self.stop_server(id).await?;
            let dir = self.data_dir.join(format!("node-{id}"));
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        self.retired.lock().expect("retired lock").clear();
        // Servers of the first configuration that were removed come back too.
        self.servers.lock().expect("servers lock").extend(self.first.clone());
        let ids: Vec<NodeId> = self.first.keys().copied().collect();
        let unavailable = |e: String| ApiError::new(ErrorKind::Unavailable, e);
        for id in &ids {
            // A removed server has no process to stop.
            let Ok((pid, state)) = self.pid_of(*id) else { continue };
            if let Some(pid) = pid.filter(|_| state != ProcessState::Crashed) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                self.wait_for_exit(*id).await;
            }
        }
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for id in &ids {
            let dir = &self.place(*id).expect("first servers stay").data_dir;
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| unavailable(format!("cannot empty {}: {e}", dir.display())))?;
            }
        }
        for id in &ids {
            self.start(*id, faults.clone())
                .map_err(|e| unavailable(format!("cannot start node {id}: {e:#}")))?;
        }
        Ok(format!("{} servers restarted on empty disks", ids.len()))
    }

    /// Starts a new server `id` on an empty disk, waiting to be added; returns its address.
    fn start_server(self: &Arc<Self>, id: NodeId) -> Result<String, ApiError> {
        let bad = |e: String| ApiError::new(ErrorKind::BadRequest, e);
        let port = u64::from(self.port) + 10 + id;
        if id == 0 || port > u64::from(u16::MAX) {
            return Err(bad(format!("node {id} would listen on port {port}: pick a smaller id")));
        }
        let address = match self.lan.lock().expect("lan lock").as_mut() {
            Some(lan) => {
                lan.add_host(id).map_err(|e| ApiError::new(ErrorKind::Unavailable, format!("{e:#}")))?;
                lan.address(id)
            }
            None => format!("{}:{port}", self.host),
        };
        let data_dir = self.data_dir.join(format!("node-{id}"));
        {
            let mut servers = self.servers.lock().expect("servers lock");
            if servers.contains_key(&id) {
                return Err(bad(format!("node {id} already exists")));
            }
            if data_dir.exists() || self.retired.lock().expect("retired lock").contains(&id) {
                // A server that left must not come back with its old state under the same id:
                // it could vote twice in a term. The operator picks a new id.
                return Err(bad(format!("node {id} was a member before: a new server needs a new id")));
            }
            servers.insert(id, ServerPlace { address: address.clone(), data_dir, joins: true });
        }
        match self.start(id, None) {
            Ok(pid) => {
                tracing::info!("supervisor: node {id} started (pid {pid}) at {address}, waiting to join");
                Ok(address)
            }
            Err(e) => {
                self.servers.lock().expect("servers lock").remove(&id);
                Err(ApiError::new(ErrorKind::Unavailable, format!("cannot start node {id}: {e:#}")))
            }
        }
    }

    /// Stops server `id` for good (it left the configuration) and forgets it. Its data
    /// directory stays, for inspection, and keeps its id from being reused.
    async fn stop_server(&self, id: NodeId) -> Result<String, ApiError> {
        let (pid, _) = self.pid_of(id)?;
        if let Some(pid) = pid {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            for _ in 0..50 {
                if self.pid_of(id).map(|(_, s)| s == ProcessState::Crashed).unwrap_or(true) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            self.wait_for_exit(id).await;
        }
        self.processes.lock().expect("processes lock").remove(&id);
        self.servers.lock().expect("servers lock").remove(&id);
        self.retired.lock().expect("retired lock").insert(id);
        self.publish();
        Ok(format!("node {id} stopped and forgotten"))
    }

    fn set_state(&self, node: NodeId, state: ProcessState) {
        if let Some(p) = self.processes.lock().expect("processes lock").get_mut(&node) {
            p.state = state;
        }
        self.publish();
    }

    async fn wait_for_exit(&self, node: NodeId) {
        for _ in 0..100 {
            if self.pid_of(node).map(|(_, s)| s == ProcessState::Crashed).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to every server (SIGCONT first, a stopped process cannot exit), SIGKILL after 3 s.
    async fn stop_all(&self) {
        let pids: Vec<u32> =
            self.processes.lock().expect("processes lock").values().filter_map(|p| p.pid).collect();
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGCONT);
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
        }
        for _ in 0..30 {
            if pids.iter().all(|p| kill(Pid::from_raw(*p as i32), None).is_err()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Extension(gate): Extension<Arc<Gate>>,
    State(supervisor): State<Arc<Supervisor>>,
) -> Response {
    // Only proxies talk to the supervisor, never browsers.
    if !origin_allowed(&headers, &[]) {
        return (StatusCode::FORBIDDEN, "no browser may talk to the supervisor\n").into_response();
    }
    ws.on_upgrade(move |s| proxy_link(s, supervisor, gate))
}

/// A proxy's link: process commands in, results and process states out.
async fn proxy_link(mut socket: WebSocket, supervisor: Arc<Supervisor>, gate: Arc<Gate>) {
    let check = |hello: SupervisorInbound| match hello {
        SupervisorInbound::Hello { version, token } => {
            crate::ws::check_version(version, "supervisor")?;
            crate::ws::check_token(&token, &supervisor.token)
        }
        _ => Err(ApiError::new(ErrorKind::BadRequest, "the first frame must be a hello")),
    };
    if crate::ws::handshake(&mut socket, check, |error| SupervisorOutbound::Error { error }).await.is_none() {
        return;
    }
    gate.open();
    if !answer(&mut socket, &SupervisorOutbound::Welcome { version: PROTOCOL_VERSION }).await {
        return;
    }
    let mut updates = supervisor.updates.subscribe();
    let (processes, epoch) = updates.borrow_and_update().clone();
    if !answer(&mut socket, &SupervisorOutbound::Processes { processes, epoch }).await {
        return;
    }
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { return; }
                let (processes, epoch) = updates.borrow_and_update().clone();
                if !answer(&mut socket, &SupervisorOutbound::Processes { processes, epoch }).await { return; }
            }
            frame = accept_frame::<SupervisorInbound>(&mut socket) => {
                let Some(frame) = frame else { return };
                let reply = match frame {
                    Ok(SupervisorInbound::Process { id, node, action, faults }) => {
                        tracing::info!("supervisor: {action:?} node {node}");
                        SupervisorOutbound::Done { id, result: supervisor.act(node, action, faults).await }
                    }
                    Ok(SupervisorInbound::Reset { id, faults }) => {
                        tracing::info!("supervisor: reset every server onto an empty disk");
                        SupervisorOutbound::Done { id, result: supervisor.reset(faults).await }
                    }
                    Ok(SupervisorInbound::StartServer { id, node }) => {
                        SupervisorOutbound::Done { id, result: supervisor.start_server(node) }
                    }
                    Ok(SupervisorInbound::StopServer { id, node }) => {
                        tracing::info!("supervisor: node {node} left the cluster; stopping it");
                        SupervisorOutbound::Done { id, result: supervisor.stop_server(node).await }
                    }
                    Ok(SupervisorInbound::Hello { .. }) => SupervisorOutbound::Error {
                        error: ApiError::new(ErrorKind::BadRequest, "hello was already received"),
                    },
                    Err(error) => SupervisorOutbound::Error { error },
                };
                if !answer(&mut socket, &reply).await { return; }
            }
        }
    }
}
