//! `consenso`: every process of a Consenso cluster, and the tools around it.
//!
//! # Layout
//!
//! - `server/`: a Raft server — the `Replica` from `shared` driven by a thread with a real
//!   clock and a durable log, talking to peers and proxies over WebSockets; or, with
//!   `--server-cmd`, the host of a student's node speaking Maelstrom's JSON lines.
//! - `proxy/`: the stateless front door — serves the page, routes writes to the leader and
//!   reads to followers, retries with the same session, fans out observation events.
//! - `cluster`: the supervisor that starts servers and proxies as child processes and crashes,
//!   pauses and restarts them for real.
//! - `init`: creates a cluster out of servers that hold nothing yet (its first configuration).
//! - `hosts`: `cluster --hosts netns`, every server on a network namespace of its own.
//! - `client`, `bench`: headless use, one operation or a load.
//! - `scenario`: the built-in lessons, listed or run headless against a live cluster.
//! - `sim`, `check`: the deterministic simulator and the linearizability checker.
//! - `diagram`: a recording drawn as a space-time diagram (SVG).
//! - `trial`: `consenso test`, a verdict on a student's node: a cluster of it under faults,
//!   then linearizability, the monitor's safety properties and liveness.
//! - `listener`: every listening socket — connection cap, header deadline, a byte budget until
//!   `hello`, browsers held to their origin.
//! - `metrics`: `GET /metrics` in the Prometheus text format, on servers and proxies.
//! - `output`: stdout for reports, quiet when the reader has gone (`… | head`).
//! - `ws`, `addr`, `secret`: WebSocket plumbing, address parsing, tokens and random ids.
//! - `fuzz` (tests only): every decoder of frames, logs and snapshots under mutated inputs.

mod addr;
mod bench;
mod check;
mod client;
mod cluster;
mod diagram;
#[cfg(test)]
mod fuzz;
mod hosts;
mod init;
mod listener;
mod metrics;
mod output;
mod proxy;
mod scenario;
mod secret;
mod server;
mod sim;
mod trial;
mod ws;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "consenso",
    version,
    about = "A real Raft cluster you can watch and break",
    long_about = "A real Raft cluster you can watch and break.\n\n\
                  Start one with `consenso cluster` and open the URL it prints. \
                  Logs go to stderr; set RUST_LOG (e.g. RUST_LOG=debug) to see more."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one Raft server (leader or follower, decided by election)
    Server(server::Args),
    /// Run a proxy: the web page, client requests and the observation stream on one port
    Proxy(proxy::Args),
    /// Start a local cluster of servers and proxies as child processes and supervise them
    Cluster(cluster::Args),
    /// Create a cluster from servers that hold nothing yet (once; harmless to run again)
    Init(init::Args),
    /// Talk to a cluster through a proxy: reads, writes, status and admin commands
    Client(client::Args),
    /// Measure throughput and latency through a proxy, optionally killing leaders
    Bench(bench::Args),
    /// Run the deterministic simulator over many seeds and check every safety property.
    ///
    /// Exit status: 0 all safe, 1 a violation, 2 no violation but some run's linearizability
    /// could not be decided.
    Sim(sim::Args),
    /// Check a recorded history (JSON lines) for linearizability.
    ///
    /// Exit status: 0 linearizable, 1 not (the operations around the violation are shown),
    /// 2 unknown (the search ran out of budget: nothing proven either way), 3 unreadable file.
    Check(check::Args),
    /// The built-in lessons: list them, or run one headless against a live cluster
    Scenario(scenario::Args),
    /// Draw a recording (`cluster --record FILE`) as a space-time diagram in SVG
    Diagram(diagram::Args),
    /// Test a node of your own (any language, Maelstrom's JSON lines): a cluster of it under
    /// faults, then linearizability, safety and liveness. Exit 0 pass, 1 broken, 2 undecided
    Test(trial::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    if matches!(cli.command, Command::Server(_) | Command::Proxy(_)) {
        if let Err(e) = die_with_supervisor() {
            eprintln!("error: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let result = match cli.command {
        Command::Server(args) => server::main(args),
        Command::Proxy(args) => proxy::main(args),
        Command::Cluster(args) => cluster::main(args),
        Command::Init(args) => init::main(args),
        Command::Client(args) => return client::main(args),
        Command::Bench(args) => bench::main(args),
        Command::Sim(args) => return sim::main(args),
        Command::Check(args) => return check::main(args),
        Command::Scenario(args) => return scenario::main(args),
        Command::Diagram(args) => return diagram::main(args),
        Command::Test(args) => return trial::main(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The supervisor (`consenso cluster`) names itself in this variable for its children.
pub const SUPERVISOR_PID_ENV: &str = "CONSENSO_SUPERVISOR_PID";

/// A server or proxy started by a supervisor is killed when the supervisor dies, even while
/// paused (SIGSTOP), so that killing `consenso cluster` never leaves orphans holding ports and
/// data directories. The kernel sends the signal when the thread that spawned this process
/// exits; the supervisor spawns from its runtime's long-lived threads.
fn die_with_supervisor() -> anyhow::Result<()> {
    let Ok(expected) = std::env::var(SUPERVISOR_PID_ENV) else { return Ok(()) };
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    // The supervisor may have died before the line above: then nobody would send the signal.
    if std::os::unix::process::parent_id().to_string() != expected {
        anyhow::bail!("the supervisor (pid {expected}) is gone");
    }
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_target(false).init();
}

/// A tokio runtime sized for these machines: network work is light, so two workers suffice and
/// keep idle memory small.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?)
}

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM).
async fn shutdown_signal() {
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
