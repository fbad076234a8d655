//! The task that owns the Replica, the disk and the clock.
//!
//! It waits for inputs until the next thing due — the Raft core's next deadline, a message's
//! delivery time, the next status report — takes everything that queued up meanwhile (so that
//! many client writes become one batch and one fsync), feeds it all to the core, then runs
//! rounds: queue the leader's appends, persist, queue what depended on the persist, apply,
//! answer clients, publish events. Messages leave through the outbox when they are due.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use shared::event::{Event, OBSERVED_LOG_WINDOW};
use shared::protocol::{
    ApiError, ClockStatus, ErrorKind, ServerOutbound, ServerStatus, TimeCommand, TimeReport, encode,
    kv_sample,
};
use shared::raft::{Config, Message, MessageId, Millis, NodeId, Persisted, Role, Snapshot, summarize};
use shared::replica::{Replica, Request, RequestId};

use super::Shared;
use super::clock::Clock;
use super::faults::policy;
use super::outbox::{Link, Outbox};
use super::storage::{Identity, Storage};

/// Where the network tasks (and a hosted node's reader) queue inputs for the loop.
pub type InputSender = tokio::sync::mpsc::UnboundedSender<Input>;
pub type InputReceiver = tokio::sync::mpsc::UnboundedReceiver<Input>;

/// How often subscribers get a status report.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// Inputs taken in one turn at most, so that a flood cannot starve the timers.
const INPUTS_PER_TURN: usize = 8192;

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
    /// Fault settings changed (the time scale, the clock's state, the latency may have).
    FaultsChanged,
    /// A proxy asks about (or acts on) the clock and the held messages.
    Time {
        connection: u64,
        id: u64,
        command: TimeCommand,
    },
    /// Take a snapshot now.
    Snapshot,
    /// `consenso init`: become a voter of a new cluster (only on an empty disk).
    Bootstrap {
        connection: u64,
        id: u64,
        cluster: String,
        voters: Vec<NodeId>,
    },
    /// A peer of this cluster introduced itself: a server that knew no cluster yet keeps it.
    AdoptCluster(String),
    /// A hosted node (`super::hosted`) wrote a line, or one that could not be read; `pending`
    /// counts the lines read and not yet handled.
    FromNode {
        line: Result<String, String>,
        pending: Arc<std::sync::atomic::AtomicUsize>,
    },
    /// A hosted node closed its output (it exited).
    NodeOutputClosed,
    Shutdown,
}

/// Everything the loop starts from.
pub struct Options {
    pub cfg: Config,
    pub storage: Storage,
    pub persisted: Persisted,
    pub seed: u64,
    pub snapshot_every: u64,
    pub max_store_bytes: u64,
    /// The server's own AppendEntries batch limit, when no admin overrides it.
    pub max_batch: usize,
    pub links: BTreeMap<NodeId, Link>,
    pub inputs: InputReceiver,
}

pub async fn run(shared: Arc<Shared>, options: Options) -> anyhow::Result<()> {
    let Options {
        cfg,
        mut storage,
        persisted,
        seed,
        snapshot_every,
        max_store_bytes,
        max_batch,
        links,
        mut inputs,
    } = options;
    let faults = shared.faults.get();
    let clock = Clock::new(faults.time_scale);
    let recovered = Event::recovered(&persisted);
    let election_timeout = cfg.election_timeout;
    let outbox = Outbox::new(seed.rotate_left(17), policy(&faults, election_timeout), links);
    let mut replica = Replica::new(cfg.clone(), persisted, seed, clock.now(), snapshot_every);
    replica.set_store_limit(max_store_bytes);
    let mut server = Server {
        cfg,
        seed,
        snapshot_every,
        max_store_bytes,
        shared,
        pending: BTreeMap::new(),
        next_request: 1,
        events: vec![recovered],
        outbox,
        clock,
        election_timeout,
        max_batch,
        blocked_from: Vec::new(),
        reports: Vec::new(),
        next_status: Instant::now(),
        published: super::EventBatch::default(),
    };
    server.apply_faults(&mut replica);
    loop {
        let wait = server.wait(&replica);
        let Some(batch) = next_inputs(&mut inputs, wait).await else { return Ok(()) };
        let mut shutting_down = false;
        for input in batch {
            shutting_down |= server.input(&mut replica, &mut storage, input).await?;
        }
        server.turn(&mut replica, &mut storage).await?;
        if shutting_down {
            // The last turn's events: queued with its answers, then written by their tasks.
            server.publish_events();
        }
        // Let the network tasks write this turn's replies and messages before the next one.
        tokio::task::yield_now().await;
        if shutting_down {
            return Ok(());
        }
    }
}

/// The inputs of one turn: the first within `wait` (none if it passes), then whatever else has
/// arrived, up to `INPUTS_PER_TURN`. `None` once every sender is gone.
pub(super) async fn next_inputs(inputs: &mut InputReceiver, wait: Duration) -> Option<Vec<Input>> {
    let mut batch = Vec::new();
    match tokio::time::timeout(wait, inputs.recv()).await {
        Ok(Some(input)) => batch.push(input),
        Ok(None) => return None,
        Err(_elapsed) => {}
    }
    while batch.len() < INPUTS_PER_TURN {
        match inputs.try_recv() {
            Ok(input) => batch.push(input),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// A client request in the replica: where to answer it, and since when it waits (writes).
struct PendingRequest {
    connection: u64,
    id: u64,
    write_since: Option<Instant>,
}

/// A time command awaiting its answer.
struct PendingReport {
    connection: u64,
    id: u64,
    /// Messages acted on, with their travel time in real ms.
    acted: Vec<(MessageId, u64)>,
}

struct Server {
    /// The core's settings, to start it again when `init` makes this server a voter.
    cfg: Config,
    seed: u64,
    snapshot_every: u64,
    max_store_bytes: u64,
    shared: Arc<Shared>,
    /// Client requests in the replica, by the replica's request id.
    pending: BTreeMap<RequestId, PendingRequest>,
    next_request: RequestId,
    events: Vec<Event>,
    outbox: Outbox,
    clock: Clock,
    election_timeout: Millis,
    max_batch: usize,
    /// Peers whose messages this server does not accept (the receiving side of a cut link).
    blocked_from: Vec<NodeId>,
    /// Time commands to answer at the end of this turn, once their effects are done.
    reports: Vec<PendingReport>,
    next_status: Instant,
    /// Events stamped and waiting to go out.
    published: super::EventBatch,
}

impl Server {
    /// After a turn's inputs: timers, due messages, rounds until the core is idle, and what
    /// the world is told (new members connected, gauges, time reports, events, the status).
    async fn turn(&mut self, replica: &mut Replica, storage: &mut Storage) -> anyhow::Result<()> {
        replica.tick(self.clock.now());
        self.outbox.dispatch(&self.clock);
        let worked = replica.has_work();
        while replica.has_work() {
            self.round(replica, storage).await?;
        }
        if worked && self.clock.is_stopped() {
            // Stepping a stopped cluster: every move should show at once.
            self.next_status = Instant::now();
        }
        self.connect_new_members(replica);
        self.update_gauges(replica);
        self.answer_reports(replica);
        self.gather_events();
        if Instant::now() >= self.next_status {
            // Events first: the status reflects them.
            self.publish_events();
            self.publish_status(replica);
            self.next_status = Instant::now() + STATUS_EVERY;
        }
        Ok(())
    }

    /// Opens a connection to every member of the configuration this server has none to: a
    /// server added at run time, whose address came with the change that added it.
    fn connect_new_members(&mut self, replica: &Replica) {
        let config = replica.raft().membership();
        for id in config.members() {
            if id == self.shared.id || self.outbox.has_link(id) {
                continue;
            }
            let Some(address) = config.addresses.get(&id) else { continue };
            tracing::info!("node {id} joined the configuration: connecting to it at {address}");
            let (sender, receiver) = super::peers::link();
            self.outbox.add_link(id, sender);
            self.shared.runtime.spawn(super::peers::run(self.shared.clone(), id, address.clone(), receiver));
        }
    }

    fn update_gauges(&self, replica: &Replica) {
        let (m, raft) = (&self.shared.metrics, replica.raft());
        m.set_role(raft.role());
        m.term.set(raft.term());
        m.commit.set(raft.commit_index());
        m.applied.set(replica.kv().applied());
        m.last_index.set(raft.last_index());
        m.snapshot_index.set(raft.snapshot_index());
    }

    /// Real time until something is due: a timer, a message, a status report.
    fn wait(&self, replica: &Replica) -> Duration {
        let now = Instant::now();
        let status = self.next_status.saturating_duration_since(now);
        let events = self.published.due().map(|due| due.saturating_duration_since(now));
        [self.clock.until(replica.next_deadline()), self.outbox.next_wake(&self.clock), events]
            .into_iter()
            .flatten()
            .fold(status, Duration::min)
    }

    /// Handles one input; true when it asks the loop to end.
    async fn input(
        &mut self,
        replica: &mut Replica,
        storage: &mut Storage,
        input: Input,
    ) -> anyhow::Result<bool> {
        let now = self.clock.now();
        match input {
            Input::Peer(msg) if self.blocked_from.contains(&msg.from) => self.outbox.lost_on_arrival(&msg),
            Input::Peer(msg) => {
                self.shared.metrics.received(msg.body.kind());
                replica.step(now, msg);
            }
            Input::Request { connection, id, request } => self.request(replica, connection, id, request),
            Input::Subscribe => {
                // Through the same channel as events, so that the log and the events that
                // follow it arrive in order.
                self.publish_events();
                self.publish_log(replica);
                self.next_status = Instant::now();
            }
            Input::Transfer(to) => {
                let _ = replica.transfer_leadership(now, to);
            }
            Input::FaultsChanged => {
                self.apply_faults(replica);
                self.next_status = Instant::now();
            }
            Input::Time { connection, id, command } => self.time(connection, id, command),
            Input::Snapshot => {
                if let Some(snapshot) = replica.compact_now() {
                    store_snapshot(replica, storage, snapshot).await?;
                }
                self.next_status = Instant::now();
            }
            Input::Bootstrap { connection, id, cluster, voters } => {
                let result = self.bootstrap(replica, storage, cluster, voters);
                match &result {
                    Ok(done) => tracing::info!("{done}"),
                    Err(e) => tracing::warn!("bootstrap refused: {e}"),
                }
                self.shared.send_to(connection, encode(&ServerOutbound::Done { id, result }).into());
                self.next_status = Instant::now();
            }
            Input::AdoptCluster(cluster) => {
                let identity = storage.identity().expect("the directory was claimed at start").clone();
                if identity.cluster.is_none() {
                    tracing::info!("node {} belongs to cluster {cluster} from now on", self.shared.id);
                    storage.write_identity(Identity { cluster: Some(cluster), ..identity })?;
                }
            }
            // Only a hosted node's host gets these.
            Input::FromNode { .. } | Input::NodeOutputClosed => {}
            Input::Shutdown => return Ok(true),
        }
        Ok(false)
    }

    fn request(&mut self, replica: &mut Replica, connection: u64, id: u64, request: Request) {
        match &request {
            Request::Write { .. } => self.shared.metrics.proposals.add(1),
            Request::Read { consistency, .. } => self.shared.metrics.read(*consistency),
            Request::ChangeMembership { .. } | Request::Register => {}
        }
        let rid = self.next_request;
        self.next_request += 1;
        let write_since = matches!(request, Request::Write { .. }).then(Instant::now);
        self.pending.insert(rid, PendingRequest { connection, id, write_since });
        replica.request(self.clock.now(), rid, request);
    }

    /// A time command acts on the clock or the held messages now; it is answered after the
    /// turn's rounds, with the clock and queue as they are then.
    fn time(&mut self, connection: u64, id: u64, command: TimeCommand) {
        let acted = match command {
            TimeCommand::Report => Vec::new(),
            TimeCommand::Release { ids } => self.outbox.release(&self.clock, &ids),
            TimeCommand::Drop { ids } => self.outbox.drop_messages(&ids),
            TimeCommand::Advance { ms } => {
                self.clock.advance(ms);
                self.events.push(Event::ClockAdvanced { by: ms });
                Vec::new()
            }
        };
        self.reports.push(PendingReport { connection, id, acted });
        self.next_status = Instant::now();
    }

    /// `consenso init` asks this server to be a voter of a new cluster. Only a server that
    /// holds nothing may: its identity is written first (with the first configuration), then
    /// the core starts over as a voter of it. Asking again with the same cluster and voters
    /// is answered yes; anything else on a server with state is refused.
    fn bootstrap(
        &mut self,
        replica: &mut Replica,
        storage: &mut Storage,
        cluster: String,
        mut voters: Vec<NodeId>,
    ) -> Result<String, ApiError> {
        let id = self.shared.id;
        let identity = storage.identity().expect("the directory was claimed at start").clone();
        voters.sort_unstable();
        voters.dedup();
        if let Some(mine) = &identity.cluster {
            if *mine == cluster && identity.first_voters == voters {
                return Ok(format!("node {id} is already a voter of cluster {cluster}"));
            }
            let message = format!("node {id} already belongs to cluster {mine}: it cannot start another");
            return Err(ApiError::new(ErrorKind::WrongCluster, message));
        }
        let raft = replica.raft();
        if raft.term() > 0 || raft.last_index() > 0 || raft.admitted() {
            let message = format!(
                "node {id} has Raft state (term {}, last index {}): a cluster already reached it",
                raft.term(),
                raft.last_index()
            );
            return Err(ApiError::new(ErrorKind::WrongCluster, message));
        }
        if !voters.contains(&id) {
            let message = format!("node {id} is not among the voters {voters:?} it was asked to join");
            return Err(ApiError::new(ErrorKind::BadRequest, message));
        }
        let identity = Identity { cluster: Some(cluster.clone()), first_voters: voters.clone(), ..identity };
        storage.write_identity(identity).map_err(|e| {
            ApiError::new(ErrorKind::Unavailable, format!("node {id} cannot write its identity: {e:#}"))
        })?;
        *self.shared.cluster.lock().expect("cluster lock") = Some(cluster.clone());
        let mut cfg = self.cfg.clone();
        cfg.voters = voters.clone();
        *replica = Replica::new(cfg, Persisted::default(), self.seed, self.clock.now(), self.snapshot_every);
        replica.set_store_limit(self.max_store_bytes);
        self.apply_faults(replica);
        Ok(format!("node {id} is a voter of the new cluster {cluster}, first configuration {voters:?}"))
    }

    /// Takes the fault settings into the clock, the network policy and the core.
    fn apply_faults(&mut self, replica: &mut Replica) {
        let faults = self.shared.faults.get();
        if (faults.time_scale - self.clock.scale()).abs() > f64::EPSILON {
            self.clock.set_scale(faults.time_scale);
        }
        if faults.time_stopped && !self.clock.is_stopped() {
            self.clock.stop();
            self.events.push(Event::ClockStopped);
        } else if !faults.time_stopped && self.clock.is_stopped() {
            self.clock.start();
            self.events.push(Event::ClockStarted);
        }
        replica.set_max_entries_per_message(faults.max_entries.map_or(self.max_batch, |n| n as usize));
        self.outbox.policy = policy(&faults, self.election_timeout);
        self.blocked_from = faults.blocked_from;
    }

    async fn round(&mut self, replica: &mut Replica, storage: &mut Storage) -> anyhow::Result<()> {
        let mut work = replica.take_work();
        let metrics = &self.shared.metrics;
        for msg in work.messages_now.iter().chain(&work.messages) {
            metrics.sent(msg.body.kind());
        }
        let wrote = !work.persist.is_empty();
        if !work.messages_now.is_empty() {
            self.outbox.send(&self.clock, std::mem::take(&mut work.messages_now));
            if wrote {
                // The peers' tasks run on this thread: let them put the leader's appends on
                // the wire, so that the followers' fsyncs overlap this one.
                tokio::task::yield_now().await;
            }
        }
        let started = Instant::now();
        let leader = replica.raft().role() == Role::Leader;
        if let Err(e) = persist(storage, &work.persist, leader).await {
            // Continuing could acknowledge what is not on disk: stop instead.
            tracing::error!("cannot persist: {e:#}; stopping so that nothing unsafe is acknowledged");
            std::process::exit(1);
        }
        if wrote {
            metrics.fsync.observe(started.elapsed());
        }
        self.outbox.send(&self.clock, std::mem::take(&mut work.messages));
        let done = replica.finish(work);
        for event in &done.events {
            match event {
                Event::RoleChanged { role: Role::Candidate, .. } => metrics.elections_started.add(1),
                Event::RoleChanged { role: Role::Leader, .. } => metrics.elections_won.add(1),
                _ => {}
            }
        }
        if let Some(snapshot) = done.snapshot {
            store_snapshot(replica, storage, snapshot).await?;
        }
        for (rid, reply) in done.replies {
            if let Some(PendingRequest { connection, id, write_since }) = self.pending.remove(&rid) {
                if let Some(since) = write_since {
                    self.shared.metrics.write_answered.observe(since.elapsed());
                }
                self.shared.send_to(connection, encode(&ServerOutbound::Reply { id, reply }).into());
            }
        }
        // The core's events first (a role change), then the messages it caused.
        self.events.extend(done.events);
        self.events.extend(self.outbox.take_events(&self.clock));
        Ok(())
    }

    fn answer_reports(&mut self, replica: &Replica) {
        if self.reports.is_empty() {
            return;
        }
        for PendingReport { connection, id, acted } in std::mem::take(&mut self.reports) {
            let report = TimeReport {
                node: self.shared.id,
                now: self.clock.now(),
                stopped: self.clock.is_stopped(),
                next_deadline: replica.next_deadline(),
                held: self.outbox.held(),
                acted,
            };
            self.shared.send_to(connection, encode(&ServerOutbound::Time { id, report }).into());
        }
    }

    /// Stamps this turn's events and sends them when due: at once while the clock is stopped
    /// (every step shows as it happens) or when they hold a change of role, else within
    /// `EventBatch::WINDOW`.
    fn gather_events(&mut self) {
        self.stamp_events();
        if self.clock.is_stopped() || self.published.due().is_some_and(|due| Instant::now() >= due) {
            self.published.flush(&self.shared);
        }
    }

    /// Sends every event now (before a status that reflects them, a log, a shutdown).
    fn publish_events(&mut self) {
        self.stamp_events();
        self.published.flush(&self.shared);
    }

    /// Stamps this turn's events, the core's and the outbox's, into the batch.
    fn stamp_events(&mut self) {
        self.events.extend(self.outbox.take_events(&self.clock));
        self.published.add(self.shared.id, self.clock.now(), &mut self.events);
    }

    fn status(&self, replica: &Replica) -> ServerStatus {
        let (sample, truncated) = kv_sample(replica.kv());
        let policy = &self.outbox.policy;
        ServerStatus {
            replica: replica.status(),
            pid: std::process::id(),
            address: self.shared.address.clone(),
            now: self.clock.now(),
            faults: self.shared.faults.get(),
            kv: Some(sample),
            kv_truncated: truncated,
            rss_bytes: resident_memory(),
            clock: ClockStatus {
                stopped: self.clock.is_stopped(),
                next_deadline: replica.next_deadline(),
                latency_ms: policy.latency,
                jitter_ms: policy.jitter,
                held_count: self.outbox.held_count() as u64,
                held: self.outbox.held(),
                messages_sent: self.outbox.sent(),
            },
            bugs: replica.raft().config().bugs.iter().collect(),
            hosted: None,
        }
    }

    fn publish_status(&self, replica: &Replica) {
        let frame = encode(&ServerOutbound::Status { status: Box::new(self.status(replica)) });
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

/// Writes a round's state and makes it durable. `off_thread`: the flush runs on a thread of
/// its own while this one keeps the network going (its tasks read and parse what arrives, and
/// write what was queued), at the price of two hand-offs between threads. Worth it on a
/// leader, whose own fsync runs beside its followers' and is rarely what a write waits for
/// (+10 % writes/s at 64 clients); not on a follower, whose fsync every write waits for
/// (−10 % at 1 client). Measured in bench/RESULTS.md.
async fn persist(
    storage: &mut Storage,
    round: &shared::replica::Persist,
    off_thread: bool,
) -> anyhow::Result<()> {
    // A snapshot from the leader can be large: encoded and flushed on another thread, while
    // this server's network tasks go on (the loop waits for it, as it must before answering).
    if let Some(snapshot) = &round.snapshot {
        store_off_thread(storage, snapshot.clone()).await?;
    }
    if !storage.write(round)? {
        return Ok(());
    }
    match storage.syncer() {
        Some(file) if off_thread => tokio::task::spawn_blocking(move || file.sync_data())
            .await
            .context("the flushing thread failed")?
            .context("cannot flush the log to disk"),
        _ => storage.sync(),
    }
}

/// Writes a snapshot taken here and drops the stored log up to it (keeping what follows).
async fn store_snapshot(replica: &Replica, storage: &mut Storage, snapshot: Snapshot) -> anyhow::Result<()> {
    let raft = replica.raft();
    let after: Vec<_> =
        (snapshot.meta.index + 1..=raft.last_index()).filter_map(|i| raft.entry(i).cloned()).collect();
    let index = snapshot.meta.index;
    store_off_thread(storage, snapshot).await?;
    storage.compacted(index, &after).context("cannot store a snapshot")
}

/// Writes `snapshot.json` on the blocking pool: the server's thread runs its network tasks
/// meanwhile (peers' frames are read, answers written), though the Raft loop waits.
async fn store_off_thread(storage: &Storage, snapshot: Snapshot) -> anyhow::Result<()> {
    let writer = storage.snapshot_writer();
    tokio::task::spawn_blocking(move || writer.store(&snapshot))
        .await
        .context("the snapshot's thread failed")?
        .context("cannot store a snapshot")
}

/// Resident set size from /proc (Linux); `None` elsewhere.
fn resident_memory() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
