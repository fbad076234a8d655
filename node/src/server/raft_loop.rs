//! The thread that owns the Replica and the disk.
//!
//! It waits for inputs until the Raft core's next deadline, takes everything that queued up
//! meanwhile (so that many client writes become one batch and one fsync), feeds it all to the
//! core, then runs rounds: send the leader's appends, persist, send what depended on the
//! persist, apply, answer clients, publish events.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::Context;
use shared::event::{Event, OBSERVED_LOG_WINDOW, Observed};
use shared::protocol::{ServerOutbound, ServerStatus, encode};
use shared::raft::{Config, Message, NodeId, Persisted, summarize};
use shared::replica::{Replica, Request, RequestId};

use super::Shared;
use super::clock::Clock;
use super::storage::Storage;

/// How often subscribers get a status report.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Keys of the store included in a status report.
const STATUS_KEYS: usize = 200;

pub enum Input {
    Peer(Message),
    Request {
        connection: u64,
        id: u64,
        request: Request,
    },
    /// A proxy subscribed (or lost events): everyone gets the whole log again.
    Subscribe,
    Transfer(NodeId),
    /// Fault settings changed (the time scale may have).
    FaultsChanged,
    Shutdown,
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    shared: Arc<Shared>,
    cfg: Config,
    mut storage: Storage,
    persisted: Persisted,
    seed: u64,
    time_scale: f64,
    snapshot_every: u64,
    inputs: Receiver<Input>,
) -> anyhow::Result<()> {
    let mut clock = Clock::new(time_scale);
    let recovered = Event::Recovered {
        term: persisted.hard_state.term,
        voted_for: persisted.hard_state.voted_for,
        snapshot_index: persisted.snapshot.as_ref().map_or(0, |s| s.meta.index),
        last_index: persisted
            .entries
            .last()
            .map(|e| e.index)
            .unwrap_or_else(|| persisted.snapshot.as_ref().map_or(0, |s| s.meta.index)),
    };
    let mut replica = Replica::new(cfg, persisted, seed, clock.now(), snapshot_every);
    let mut server = Server { shared, pending: BTreeMap::new(), next_request: 1, events: vec![recovered] };
    let mut next_status = Instant::now();
    let mut shutting_down = false;
    while !shutting_down {
        let wait =
            clock.until(replica.next_deadline()).min(next_status.saturating_duration_since(Instant::now()));
        let mut batch = Vec::new();
        match inputs.recv_timeout(wait) {
            Ok(input) => batch.push(input),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while batch.len() < 8192 {
            match inputs.try_recv() {
                Ok(input) => batch.push(input),
                Err(_) => break,
            }
        }
        let scale = server.shared.faults.time_scale();
        if (scale - clock.scale()).abs() > f64::EPSILON {
            clock.set_scale(scale);
        }
        let now = clock.now();
        for input in batch {
            match input {
                Input::Peer(msg) => replica.step(now, msg),
                Input::Request { connection, id, request } => {
                    let rid = server.next_request;
                    server.next_request += 1;
                    server.pending.insert(rid, (connection, id));
                    replica.request(now, rid, request);
                }
                Input::Subscribe => {
                    // Through the same channel as events, so that the log and the events that
                    // follow it arrive in order.
                    server.publish_events(now);
                    server.publish_log(&replica);
                    next_status = Instant::now();
                }
                Input::Transfer(to) => {
                    let _ = replica.transfer_leadership(now, to);
                }
                Input::FaultsChanged => next_status = Instant::now(),
                Input::Shutdown => shutting_down = true,
            }
        }
        replica.tick(clock.now());
        while replica.has_work() {
            server.round(&mut replica, &mut storage)?;
        }
        server.publish_events(clock.now());
        if Instant::now() >= next_status {
            server.publish_status(&replica, &clock);
            next_status = Instant::now() + STATUS_EVERY;
        }
    }
    Ok(())
}

struct Server {
    shared: Arc<Shared>,
    /// Client requests in the replica, by the replica's request id: (connection, frame id).
    pending: BTreeMap<RequestId, (u64, u64)>,
    next_request: RequestId,
    events: Vec<Event>,
}

impl Server {
    fn round(&mut self, replica: &mut Replica, storage: &mut Storage) -> anyhow::Result<()> {
        let mut work = replica.take_work();
        self.send_to_peers(std::mem::take(&mut work.messages_now));
        if let Err(e) = storage.persist(&work.persist) {
            // Continuing could acknowledge what is not on disk: stop instead.
            tracing::error!("cannot persist: {e:#}; stopping so that nothing unsafe is acknowledged");
            std::process::exit(1);
        }
        self.send_to_peers(std::mem::take(&mut work.messages));
        let done = replica.finish(work);
        if let Some(snapshot) = &done.snapshot {
            let raft = replica.raft();
            let after: Vec<_> = (snapshot.meta.index + 1..=raft.last_index())
                .filter_map(|i| raft.entry(i).cloned())
                .collect();
            storage.compact(snapshot, &after).context("cannot store a snapshot")?;
        }
        for (rid, reply) in done.replies {
            if let Some((connection, id)) = self.pending.remove(&rid) {
                self.send_to(connection, encode(&ServerOutbound::Reply { id, reply }).into());
            }
        }
        self.events.extend(done.events);
        Ok(())
    }

    fn send_to_peers(&self, messages: Vec<Message>) {
        for msg in messages {
            if let Some(queue) = self.shared.peers.get(&msg.to) {
                let _ = queue.send(msg);
            }
        }
    }

    fn send_to(&self, connection: u64, frame: Arc<str>) {
        if let Some(tx) = self.shared.connections.lock().expect("connections lock").get(&connection) {
            let _ = tx.send(frame);
        }
    }

    fn publish_events(&mut self, now: u64) {
        if self.events.is_empty() {
            return;
        }
        let node = self.shared.id;
        let events = self.events.drain(..).map(|event| Observed { node, at: now, event }).collect();
        // No subscriber is fine: events are for observers only.
        let _ = self.shared.observers.send(encode(&ServerOutbound::Events { events }).into());
    }

    fn status(&self, replica: &Replica, clock: &Clock) -> ServerStatus {
        let kv = replica.kv();
        ServerStatus {
            replica: replica.status(),
            pid: std::process::id(),
            address: self.shared.address.clone(),
            now: clock.now(),
            faults: self.shared.faults.get(),
            kv: kv.iter().take(STATUS_KEYS).map(|(k, v)| (k.clone(), v.clone())).collect(),
            kv_truncated: kv.len() > STATUS_KEYS,
            rss_bytes: resident_memory(),
        }
    }

    fn publish_status(&self, replica: &Replica, clock: &Clock) {
        let frame = encode(&ServerOutbound::Status { status: Box::new(self.status(replica, clock)) });
        let _ = self.shared.observers.send(frame.into());
    }

    /// The whole uncompacted log, for subscribers to start from.
    fn publish_log(&self, replica: &Replica) {
        let raft = replica.raft();
        let snapshot_index = raft.snapshot_index();
        let first =
            (snapshot_index + 1).max((raft.last_index() + 1).saturating_sub(OBSERVED_LOG_WINDOW as u64));
        let entries = (first..=raft.last_index()).filter_map(|i| raft.entry(i)).map(summarize).collect();
        let snapshot_term = raft.term_at(snapshot_index).unwrap_or(0);
        let skipped = first - snapshot_index - 1;
        let frame = ServerOutbound::Log { snapshot_index, snapshot_term, skipped, entries };
        let _ = self.shared.observers.send(encode(&frame).into());
    }
}

/// Resident set size from /proc (Linux); `None` elsewhere.
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
