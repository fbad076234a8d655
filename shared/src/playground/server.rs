//! One server of the playground: a `Replica` with a disk that survives crashes, its own clock
//! (the cluster's clock plus an offset, so that one server's timer can be fired alone, as on
//! real machines) and its own network queue, in a `Transit` like the node's outbox.

use std::collections::BTreeMap;

use crate::event::{Event, LogMirror, LossReason, OBSERVED_LOG_WINDOW, Observed};
use crate::protocol::{ClockStatus, FaultSettings, HELD_LISTED, HeldMessage, ServerStatus, kv_sample};
use crate::raft::{Config, Message, Millis, NodeId, Persisted, summarize};
use crate::replica::{Replica, Reply, Request, RequestId};
use crate::sim::Disk;
use crate::transit::{InTransit, Transit};

pub(super) struct Server {
    pub id: NodeId,
    /// `None` while crashed.
    pub replica: Option<Replica>,
    pub disk: Disk,
    pub transit: Transit,
    pub faults: FaultSettings,
    pub paused: bool,
    /// What arrived while paused: delivered on resume, as a socket's buffer would.
    pub inbox: Vec<Message>,
    /// How far this server's clock is ahead of the cluster's.
    pub skew: Millis,
    /// Client requests in the replica: replica request id → the proxy's request id.
    pub requests: BTreeMap<RequestId, u64>,
    next_request: RequestId,
    pub events: Vec<Event>,
    /// Bumped by every crash, so that a request sent to an earlier life is retried.
    pub incarnation: u64,
    pub messages_sent: u64,
}

impl Server {
    pub fn new(id: NodeId, faults: FaultSettings) -> Server {
        Server {
            id,
            replica: None,
            disk: Disk::default(),
            transit: Transit::new(id.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            faults,
            paused: false,
            inbox: Vec::new(),
            skew: 0,
            requests: BTreeMap::new(),
            next_request: 1,
            events: Vec::new(),
            incarnation: 0,
            messages_sent: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// Up and not paused: its timers fire and it takes messages.
    pub fn is_running(&self) -> bool {
        self.is_up() && !self.paused
    }

    pub fn now(&self, cluster_now: Millis) -> Millis {
        cluster_now + self.skew
    }

    /// Starts (or restarts) from what its disk holds.
    pub fn start(&mut self, cfg: Config, seed: u64, cluster_now: Millis) {
        let persisted: Persisted = self.disk.persisted();
        let recovered = Event::recovered(&persisted);
        self.events.push(recovered);
        // Message ids of a new life must not repeat the old one's.
        self.transit = Transit::new(seed);
        self.replica = Some(Replica::new(cfg, persisted, seed, self.now(cluster_now), 1_000));
    }

    /// SIGKILL: everything volatile is gone, messages on their way from it too.
    pub fn crash(&mut self) {
        self.replica = None;
        self.paused = false;
        self.inbox.clear();
        self.requests.clear();
        self.incarnation += 1;
        for queued in self.transit.due(Millis::MAX) {
            self.transit.lost(&queued.message, LossReason::Unreachable);
        }
    }

    pub fn request(&mut self, cluster_now: Millis, op: u64, request: Request) {
        let now = self.now(cluster_now);
        let Some(replica) = &mut self.replica else { return };
        let rid = self.next_request;
        self.next_request += 1;
        self.requests.insert(rid, op);
        replica.request(now, rid, request);
    }

    /// Runs rounds until the replica has nothing left to do: send, persist, apply. Returns
    /// the answers to client requests, by operation.
    pub fn work(&mut self, cluster_now: Millis, stamp: &mut u64) -> Vec<(u64, Reply)> {
        let now = self.now(cluster_now);
        let Some(replica) = &mut self.replica else { return Vec::new() };
        let policy = self.faults.network_policy(replica.raft().config().election_timeout);
        let mut answers = Vec::new();
        while replica.has_work() {
            let mut work = replica.take_work();
            for message in std::mem::take(&mut work.messages_now) {
                *stamp += 1;
                self.messages_sent += 1;
                self.transit.send(now, *stamp, message, &policy);
            }
            self.disk.write(&work.persist);
            for message in std::mem::take(&mut work.messages) {
                *stamp += 1;
                self.messages_sent += 1;
                self.transit.send(now, *stamp, message, &policy);
            }
            let done = replica.finish(work);
            if let Some(snapshot) = &done.snapshot {
                self.disk.compact(snapshot);
            }
            for (rid, reply) in done.replies {
                if let Some(op) = self.requests.remove(&rid) {
                    answers.push((op, reply));
                }
            }
            // The core's events first (a role change), then the messages it caused.
            self.events.extend(done.events);
            self.events.extend(self.transit.take_events());
        }
        answers
    }

    /// Events since the last call, stamped with this server's clock.
    pub fn take_events(&mut self, cluster_now: Millis) -> Vec<Observed> {
        self.events.extend(self.transit.take_events());
        let (node, at) = (self.id, self.now(cluster_now));
        self.events.drain(..).map(|event| Observed { node, at, event }).collect()
    }

    pub fn held(&self) -> Vec<HeldMessage> {
        self.transit.queued().into_iter().take(HELD_LISTED).map(HeldMessage::from).collect()
    }

    /// The newest part of the log, as a server sends it to a subscribing proxy.
    pub fn log(&self) -> Option<LogMirror> {
        let raft = self.replica.as_ref()?.raft();
        let snapshot_index = raft.snapshot_index();
        let first =
            (snapshot_index + 1).max((raft.last_index() + 1).saturating_sub(OBSERVED_LOG_WINDOW as u64));
        Some(LogMirror {
            snapshot_index,
            snapshot_term: raft.term_at(snapshot_index).unwrap_or(0),
            skipped: first - snapshot_index - 1,
            entries: (first..=raft.last_index()).filter_map(|i| raft.entry(i)).map(summarize).collect(),
        })
    }

    /// Its status report, as a real server sends it (none while crashed).
    pub fn status(&self, cluster_now: Millis) -> Option<ServerStatus> {
        let replica = self.replica.as_ref()?;
        let (sample, truncated) = kv_sample(replica.kv());
        let policy = self.faults.network_policy(replica.raft().config().election_timeout);
        Some(ServerStatus {
            replica: replica.status(),
            pid: 0,
            address: address(self.id),
            now: self.now(cluster_now),
            faults: self.faults.clone(),
            kv: Some(sample),
            kv_truncated: truncated,
            rss_bytes: None,
            clock: ClockStatus {
                stopped: self.faults.time_stopped,
                next_deadline: replica.next_deadline(),
                latency_ms: policy.latency,
                jitter_ms: policy.jitter,
                held_count: self.transit.len() as u64,
                held: self.held(),
                messages_sent: self.messages_sent,
            },
            bugs: replica.raft().config().bugs.iter().collect(),
            hosted: None,
        })
    }

    /// The next moment, on the cluster's clock, when this server has something to do.
    pub fn next_wake(&self) -> Option<Millis> {
        let replica = self.replica.as_ref().filter(|_| !self.paused)?;
        let next = replica.next_deadline().min(self.transit.next_due().unwrap_or(Millis::MAX));
        Some(next.saturating_sub(self.skew))
    }

    /// Messages due by the cluster's `now`, earliest first.
    pub fn due(&mut self, cluster_now: Millis) -> Vec<InTransit> {
        if !self.is_running() {
            return Vec::new();
        }
        self.transit.due(self.now(cluster_now))
    }
}

/// How a simulated server is named on the page.
pub fn address(id: NodeId) -> String {
    format!("in-page-{id}")
}
