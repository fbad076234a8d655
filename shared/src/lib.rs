//! Consenso's shared core. Everything here compiles for the native node and for
//! `wasm32-unknown-unknown`, so the servers, the simulator and the page run the same code.
//!
//! # Layout
//!
//! In layers: a module imports only from the layers below its own (`crate::…` never points
//! up). Bottom first:
//!
//! 1. [`ids`], [`rng`], [`visible`]: the numbers everything is counted in; the deterministic
//!    random number generator behind every "random" choice; user text with its control
//!    characters written out, for terminals and SVG.
//! 2. [`kv`]: the replicated key-value store with client sessions (exactly-once writes),
//!    registered through the log.
//! 3. [`types`]: Raft's vocabulary — entries, configurations, snapshots, roles, messages — as
//!    plain data.
//! 4. [`event`]: observation events — the one vocabulary the node, the page and the simulator
//!    use to say what happened — and the safety properties an alarm names.
//! 5. [`raft`]: the Raft consensus algorithm as a sans-IO state machine. Time and a seed are
//!    inputs; messages, things to persist, entries to apply and observation events are outputs.
//! 6. [`transit`]: messages on their way — ids, latency, holding while a clock is stopped,
//!    loss; [`replica`]: a server's logic without I/O — Raft, the store and waiting client
//!    requests; [`session`]: the client's side of a write session; [`event_text`]: events in
//!    words, in English and Spanish.
//! 7. [`protocol`]: the JSON frames spoken over WebSockets by clients, pages, proxies, servers
//!    and the supervisor.
//! 8. [`check`]: the safety and linearizability checkers, and the live invariant monitor;
//!    [`recording`]: sessions saved as JSON lines.
//! 9. [`lesson`]: scripted lessons that stage Raft's rules on a live cluster, with captions;
//!    [`diagram`]: recordings drawn as space-time diagrams (SVG) for slides, or in words.
//! 10. [`proxy`]: the proxy's brain as a sans-IO state machine — routing and retries with
//!     sessions, admin commands, time control, membership steps, lessons — driven by the real
//!     proxy, the page's in-process cluster and the simulator alike.
//! 11. [`sim`]: the deterministic simulator that drives replicas through faults, with clients
//!     behind proxy cores, and runs the checkers.
//! 12. [`playground`]: a whole cluster inside one process, behind the frames a proxy speaks —
//!     the page's `?sim`.

pub mod check;
pub mod diagram;
pub mod event;
pub mod event_text;
pub mod hosted;
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
