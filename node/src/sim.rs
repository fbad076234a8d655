//! `consenso sim`: the deterministic simulator from the command line.
//!
//! Output contract (other tools rely on it): one line per failing seed, then one summary line
//! `sim: <runs> runs, <steps> steps, <violations> violations`; exit 0 without violations, 1
//! with. `--seed S --trace` replays one seed and prints what happened, event by event.

use std::process::ExitCode;
use std::time::Instant;

use crate::output::outln;
use shared::raft::{Bug, Bugs};
use shared::sim::{SimConfig, run, run_batch};

#[derive(clap::Args)]
pub struct Args {
    /// How many seeds to run
    #[arg(long, default_value_t = 100, conflicts_with = "seed")]
    seeds: u64,
    /// First seed of the batch
    #[arg(long, default_value_t = 0)]
    seed_start: u64,
    /// Run this one seed (with --trace: print its events)
    #[arg(long)]
    seed: Option<u64>,
    /// Cluster size: 3, 5 or 7 (default: chosen by each seed)
    #[arg(long, value_parser = parse_nodes)]
    nodes: Option<usize>,
    /// Simulation steps (events) per seed
    #[arg(long, default_value_t = SimConfig::new(0).steps)]
    steps: u64,
    /// Switch on a deliberate defect, to see the checkers catch it
    #[arg(long, value_parser = parse_bug)]
    bug: Vec<Bug>,
    /// Print every event of the run (with --seed)
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Turn off crashes, pauses, partitions and message loss
    #[arg(long)]
    no_faults: bool,
    /// Print the client history of the run as JSON lines (with --seed)
    #[arg(long, requires = "seed")]
    history: bool,
}

fn parse_nodes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ (3 | 5 | 7)) => Ok(n),
        _ => Err(format!("'{s}': the simulator runs clusters of 3, 5 or 7 nodes")),
    }
}

fn parse_bug(s: &str) -> Result<Bug, String> {
    s.parse()
}

pub fn main(args: Args) -> ExitCode {
    let bugs: Bugs = args.bug.iter().copied().collect();
    let base = SimConfig {
        seed: 0,
        nodes: args.nodes,
        steps: args.steps,
        bugs,
        faults: !args.no_faults,
        trace: args.trace,
    };
    if let Some(seed) = args.seed {
        let report = run(&SimConfig { seed, ..base });
        for line in &report.trace {
            outln!("{line}");
        }
        if args.history {
            for op in &report.history {
                outln!("{}", serde_json::to_string(op).expect("operations serialize"));
            }
        }
        // With --history, stdout is the history alone (ready for `consenso check`); the
        // summary goes to stderr.
        let summary = |line: String| if args.history { eprintln!("{line}") } else { outln!("{line}") };
        let violations = u64::from(report.violation.is_some());
        if let Some(v) = &report.violation {
            summary(format!("seed {seed}: {} at step {}: {}", v.property, v.step, v.detail));
        }
        summary(format!(
            "seed {seed}: {} nodes, {} ms simulated, {} elections, {} crashes, {} partitions, {} snapshots installed, \
             {} membership changes, {} disks wiped, {} torn writes, {} operations ({} unknown)",
            report.nodes,
            report.virtual_ms,
            report.elections_won,
            report.crashes,
            report.partitions,
            report.snapshots_installed,
            report.membership_changes,
            report.disks_wiped,
            report.torn_writes,
            report.operations_completed,
            report.operations_unknown
        ));
        let undecided = &report.linearizability_unknown;
        if !undecided.is_empty() {
            summary(format!(
                "seed {seed}: linearizability unknown (search budget ran out) for keys {}",
                undecided.join(", ")
            ));
        }
        summary(format!(
            "sim: 1 runs, {} steps, {violations} violations, {} undecided",
            report.steps,
            u64::from(!undecided.is_empty())
        ));
        return exit(violations, u64::from(!undecided.is_empty()));
    }
    let started = Instant::now();
    let (mut ops, mut elections, mut crashes, mut changes, mut wiped) = (0, 0, 0, 0, 0);
    let (mut registered, mut evicted) = (0, 0);
    let summary = run_batch(&base, args.seed_start, args.seeds, |report| {
        ops += report.operations_completed;
        elections += report.elections_won;
        crashes += report.crashes;
        changes += report.membership_changes;
        wiped += report.disks_wiped;
        registered += report.sessions_registered;
        evicted += report.sessions_evicted;
        if let Some(v) = &report.violation {
            outln!("seed {}: {} at step {}: {}", report.seed, v.property, v.step, v.detail);
        } else if !report.linearizability_unknown.is_empty() {
            outln!("seed {}: linearizability unknown (search budget ran out)", report.seed);
        }
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{:.1} s, {:.0} steps/s; {elections} elections, {crashes} crashes, {wiped} disks wiped, \
         {changes} membership changes, {registered} sessions registered ({evicted} evicted), {ops} client \
         operations checked{}",
        secs,
        summary.steps as f64 / secs.max(1e-9),
        if bugs.is_empty() {
            String::new()
        } else {
            format!("; bugs on: {}", args.bug.iter().map(|b| b.name()).collect::<Vec<_>>().join(", "))
        }
    );
    outln!(
        "sim: {} runs, {} steps, {} violations, {} undecided",
        summary.runs,
        summary.steps,
        summary.violations,
        summary.undecided.len()
    );
    exit(summary.violations, summary.undecided.len() as u64)
}

/// 1 for a violation; 2 when nothing was violated but some run could not be decided (a pass
/// would claim more than was checked); 0 otherwise.
fn exit(violations: u64, undecided: u64) -> ExitCode {
    match (violations, undecided) {
        (0, 0) => ExitCode::SUCCESS,
        (0, _) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}
