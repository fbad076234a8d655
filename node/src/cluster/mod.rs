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
//! `--port`+10+N (with `--hosts netns`, server N at its own address, port 7001).
//!
//! # Layout
//!
//! - this file: the options, starting everything, the banner, stopping.
//! - `supervisor`: the process table, starting/signalling/adding/removing servers, and the
//!   endpoint proxies talk to.

mod supervisor;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use axum::routing::get;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shared::protocol::FaultSettings;
use shared::raft::NodeId;
use tokio::process::Command;
use tokio::sync::watch;

use crate::output::outln;
use supervisor::{ServerPlace, Supervisor, upgrade};

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
    /// Admin token (default: a fresh random one)
    #[arg(long, env = "CONSENSO_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    /// Record everything the page draws to FILE (the first proxy writes it; `consenso diagram
    /// FILE` draws it)
    #[arg(long)]
    record: Option<PathBuf>,
    /// Minutes each proxy keeps in memory for the page's download button and `GET /recording`
    /// (0: none)
    #[arg(long, default_value_t = 10)]
    recent_minutes: u64,
    /// Run a node of your own as every server: a command (run by `sh -c`) that speaks
    /// Maelstrom's JSON lines on stdin/stdout (docs/node-protocol.md)
    #[arg(long)]
    pub server_cmd: Option<String>,
    /// How every server runs Raft (passed on to each)
    #[command(flatten)]
    raft: crate::server::RaftOptions,
}

/// Where a server lives, and how it starts.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Hosts {
    Local,
    Netns,
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

    let mut common_args = args.raft.to_args();
    common_args.extend(args.server_cmd.iter().map(|c| format!("--server-cmd={c}")));
    let places: BTreeMap<NodeId, ServerPlace> = servers
        .iter()
        .map(|(id, address)| {
            let place =
                ServerPlace { address: address.clone(), data_dir: data_dir.join(format!("node-{id}")) };
            (*id, place)
        })
        .collect();
    let initial_faults = FaultSettings {
        time_scale: args.raft.time_scale,
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
        let created = supervisor.initialize().await.context("cannot create the cluster")?;
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
            if let (Some(file), true) = (&args.record, address == &proxies[0]) {
                let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
                command.arg(format!("--record={}", file.display()));
            }
            if args.open_writes {
                command.arg("--open-writes");
            }
            command.arg(format!("--recent-minutes={}", args.recent_minutes));
            command.args(args.raft.bugs.iter().map(|b| format!("--bug={b}")));
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
        if let crate::init::Outcome::Exists { cluster, outside } = &created {
            outln!("  Cluster {cluster} continues from {}.", data_dir.display());
            for id in outside {
                outln!(
                    "  WARNING: node {id}'s data directory is empty: it lost its disk and will not count as a voter. \
                     Replace it: `consenso client remove-server {id}`, then `consenso client add-server`."
                );
            }
            outln!();
        }
        if !args.raft.bugs.is_empty() {
            let names: Vec<String> = args.raft.bugs.iter().map(|b| format!("{b} ({})", b.explanation())).collect();
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
