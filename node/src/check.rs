//! `consenso check FILE`: linearizability of a recorded history (JSON lines, one operation per
//! line, as written by `consenso bench --history` and documented in docs/protocol.md).

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::output::outln;
use shared::check::{Operation, Verdict, check_history};

#[derive(clap::Args)]
pub struct Args {
    /// History file: one JSON operation per line
    file: PathBuf,
}

pub fn main(args: Args) -> ExitCode {
    let ops = match load(&args.file) {
        Ok(ops) => ops,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(3);
        }
    };
    let report = check_history(&ops);
    match (report.verdict(), &report.violation) {
        (Verdict::NotLinearizable, Some(v)) => {
            outln!("NOT linearizable: key {} ({} operations): {}", v.key, v.operations, v.reason);
            outln!("operations around it (client [invoke, return] call → output):");
            for op in &v.near {
                outln!("  {op}");
            }
            ExitCode::FAILURE
        }
        (Verdict::Unknown, _) => {
            outln!(
                "unknown: the search ran out of budget on {} of {} keys ({}); no violation was found, \
                 but none was ruled out",
                report.inconclusive.len(),
                report.keys,
                report.inconclusive.join(", ")
            );
            ExitCode::from(2)
        }
        _ => {
            outln!("linearizable: {} operations on {} keys", report.operations, report.keys);
            ExitCode::SUCCESS
        }
    }
}

fn load(path: &PathBuf) -> Result<Vec<Operation>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let mut ops = Vec::new();
    for (n, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        ops.push(op);
    }
    Ok(ops)
}
