//! Checkers that judge a run: Raft's safety properties step by step, and linearizability of
//! the clients' history at the end.
//!
//! # Layout
//!
//! - `history`: a client operation as recorded by the simulator and by `consenso bench`
//!   (the JSON-lines format of `docs/protocol.md`).
//! - `linearizability`: Wing–Gong–Lowe search, one key at a time (as Porcupine does).
//! - `safety`: Election Safety, Leader Append-Only, Log Matching, Leader Completeness, State
//!   Machine Safety (Raft Figure 3) and exactly-once application of client writes.
//! - `monitor`: the same properties judged live on a real cluster, from its observation stream.

mod history;
mod linearizability;
mod monitor;
mod safety;

pub use history::{Input, Operation, Output};
pub use linearizability::{KeyViolation, LinearizabilityReport, Verdict, check_history};
pub use monitor::Monitor;
pub use safety::{Property, SafetyChecker, Violation};
