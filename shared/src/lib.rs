//! Consenso's shared core. Everything here compiles for the native node and for
//! `wasm32-unknown-unknown`, so the servers, the simulator and the page run the same code.
//!
//! # Layout
//!
//! - [`ids`], [`types`]: the numbers everything is counted in, and Raft's vocabulary — entries,
//!   configurations, snapshots, roles, messages — as plain data at the bottom of the crate.
//! - [`raft`]: the Raft consensus algorithm as a sans-IO state machine. Time and a seed are
//!   inputs; messages, things to persist, entries to apply and observation events are outputs.
//! - [`protocol`]: the JSON frames spoken over WebSockets by clients, pages, proxies and servers.
//! - [`kv`]: the replicated key-value store with client sessions (exactly-once writes).
//! - [`replica`]: a server's logic without I/O — Raft, the store and waiting client requests —
//!   driven alike by the real node and by the simulator.
//! - [`event`]: observation events — the one vocabulary the node, the page and the simulator use
//!   to say what happened.
//! - [`event_text`]: events in words, in English and Spanish.
//! - [`recording`], [`diagram`]: sessions saved as JSON lines, and drawn as space-time
//!   diagrams (SVG) for slides.
//! - [`check`]: the safety and linearizability checkers, and the live invariant monitor.
//! - [`lesson`]: scripted lessons that stage Raft's rules on a live cluster, with captions.
//! - [`proxy`]: the proxy's brain as a sans-IO state machine — routing and retries with
//!   sessions, admin commands, time control, membership steps, lessons — driven by the real
//!   proxy, the page's in-process cluster and the simulator alike.
//! - [`playground`]: a whole cluster inside one process, behind the frames a proxy speaks —
//!   the page's `?sim`.
//! - [`sim`]: the deterministic simulator that drives replicas through faults and runs the
//!   checkers.
//! - [`transit`]: messages on their way — ids, latency, holding while a clock is stopped, loss.
//! - [`rng`]: the deterministic random number generator behind every "random" choice.
//! - [`visible`]: user text with its control characters written out, for terminals and SVG.

pub mod check;
pub mod diagram;
pub mod event;
pub mod event_text;
pub mod ids;
pub mod kv;
pub mod lesson;
pub mod playground;
pub mod protocol;
pub mod proxy;
pub mod raft;
pub mod recording;
pub mod replica;
pub mod rng;
pub mod session;
pub mod sim;
pub mod transit;
pub mod types;
pub mod visible;
