//! The cluster inside the page: 3–7 servers of the real Raft core in one process, behind the
//! same frames a proxy speaks. The page's `?sim` (and a student at home with no cluster) talks
//! to a `Core` exactly as it talks to a proxy over a WebSocket — it sends `ClientFrame`s
//! and draws the `ProxyFrame`s that come back — so every view and control works unchanged.
//!
//! Sans-IO like the rest of `shared/`: the page passes in its clock (`advance(wall_ms)`) and a
//! seed; everything random comes from the seed, so one seed and one sequence of actions give
//! one run, on any machine. Time works as on the real servers: each server has a clock (the
//! cluster's, plus an offset that firing one server's timer adds), slow motion stretches it,
//! messages travel in each sender's `Transit` and are held while time is stopped, and a step
//! releases the oldest to travel a short, visible while in real time.
//!
//! # Layout
//!
//! - `lessons`: `Playground`, what the page talks to — the core below, plus lessons (the same
//!   scripts the proxy runs) driven without an executor;
//! - this file: the core — the clock, delivery, and the frames going out (welcome, events,
//!   status, logs);
//! - `server`: one server — replica, disk that survives crashes, clock offset, network queue;
//! - `admin`: the admin commands (faults, time, snapshots, reset);
//! - `clients`: reads and writes, routed and retried as the proxy does.

mod admin;
mod clients;
mod lessons;
mod server;

pub use lessons::Playground;

use std::collections::BTreeMap;

use crate::check::Monitor;
use crate::event::{Event, LossReason, Observed};
use crate::protocol::{
    ClientFrame, ClusterStatus, FaultSettings, HELD_LISTED, HeldMessage, Members, NodeAddress,
    PROTOCOL_VERSION, Picture, ProxyFrame, RequestStats, TimeStatus,
};
use crate::raft::{Bug, Bugs, Config, Millis, NodeId, Role};
use crate::rng::Rng;
use crate::transit::InTransit;
use clients::ClientOp;
use server::Server;

/// Servers a playground may have.
pub const MIN_SERVERS: usize = 3;
pub const MAX_SERVERS: usize = 7;
/// How often the page gets a status, in real milliseconds (as from a proxy).
const STATUS_EVERY_MS: f64 = 250.0;
/// A tab in the background gets no timers; when it comes back, at most this much real time
/// is simulated at once.
const MAX_CATCH_UP_MS: f64 = 2_000.0;
/// Work done in one `advance` at most (deliveries and timers), so that a page never hangs.
const MAX_STEPS_PER_ADVANCE: usize = 20_000;
/// Messages a paused server holds at most (its socket buffers); later ones are lost.
const PAUSED_INBOX: usize = 1_000;
/// A stepped message travels this long in real time, so that it is seen arriving.
const STEP_TRAVEL_MS: f64 = 600.0;

pub(crate) struct Core {
    servers: BTreeMap<NodeId, Server>,
    bugs: Bugs,
    rng: Rng,
    /// The cluster's clock, in ms of cluster time.
    now: Millis,
    /// Fractions of a millisecond not yet added to `now` (slow motion).
    carry: f64,
    stopped: bool,
    /// Faults that apply to every server (time scale, latency, batch size); per-server ones
    /// live in each server's settings.
    common: FaultSettings,
    /// The page's clock at the last `advance`.
    wall: Option<f64>,
    next_status: f64,
    /// Ordering stamps for messages, across servers.
    stamp: u64,
    /// Stepped messages: delivered at a real instant, whatever the clocks say.
    travelling: Vec<(f64, InTransit)>,
    monitor: Monitor,
    ops: Vec<ClientOp>,
    clients: clients::Clients,
    out: Vec<ProxyFrame>,
    events: Vec<Observed>,
    /// The lesson running, for the status; its script runs in `lessons`.
    lesson: Option<crate::lesson::LessonStatus>,
    /// Answers to a lesson's requests, by the lesson's request id.
    lesson_answers: BTreeMap<u64, ProxyFrame>,
    /// The highest server id ever used, and the ids of servers that left.
    highest_id: NodeId,
    retired: std::collections::BTreeSet<NodeId>,
    /// The servers of the first configuration.
    voters: Vec<NodeId>,
    /// Messages sent per second of real time, and the count and moment it was last measured.
    messages_per_s: f64,
    sent_before: (u64, f64),
}

impl Core {
    /// A cluster of `servers` (clamped to 3–7) that runs with the deliberate defects `bugs`.
    pub fn new(servers: usize, seed: u64, bugs: &[Bug]) -> Core {
        let bugs = bugs.iter().fold(Bugs::none(), |all, bug| all.with(*bug));
        let mut playground = Core {
            servers: BTreeMap::new(),
            bugs,
            rng: Rng::new(seed),
            now: 0,
            carry: 0.0,
            stopped: false,
            common: FaultSettings::normal(),
            wall: None,
            next_status: 0.0,
            stamp: 0,
            travelling: Vec::new(),
            monitor: Monitor::new(),
            ops: Vec::new(),
            clients: clients::Clients::new(seed),
            out: Vec::new(),
            events: Vec::new(),
            lesson: None,
            lesson_answers: BTreeMap::new(),
            highest_id: 0,
            retired: Default::default(),
            voters: Vec::new(),
            messages_per_s: 0.0,
            sent_before: (0, 0.0),
        };
        playground.boot(servers.clamp(MIN_SERVERS, MAX_SERVERS));
        playground
    }

    /// Every server on an empty disk, the network whole, time running.
    fn boot(&mut self, count: usize) {
        self.servers = (1..=count as NodeId).map(|id| (id, Server::new(id, self.common.clone()))).collect();
        self.highest_id = count as NodeId;
        self.retired.clear();
        self.voters = self.servers.keys().copied().collect();
        self.stopped = false;
        self.travelling.clear();
        self.monitor.reset();
        for id in 1..=count as NodeId {
            self.start_server(id);
        }
    }

    /// A server of the first configuration bootstraps with it; one added later starts with none
    /// and waits to be added.
    fn config(&self, id: NodeId) -> Config {
        let mut cfg = if self.voters.contains(&id) {
            Config::new(id, self.voters.clone())
        } else {
            Config::joining(id)
        };
        cfg.bugs = self.bugs;
        cfg
    }

    fn start_server(&mut self, id: NodeId) {
        let (cfg, seed, now) = (self.config(id), self.rng.next_u64(), self.now);
        let server = self.servers.get_mut(&id).expect("a known server");
        server.start(cfg, seed, now);
        // A restarted server starts with the settings in force, as the supervisor's do.
        self.sync_common();
        self.monitor.restarted(id);
        self.work(id);
        self.send_log(id);
    }

    /// The first frame, as a proxy greets a subscribing page: the whole picture, with what
    /// happened since the last frame taken as its recent events (frames not yet taken are
    /// replaced by it).
    pub fn welcome(&mut self) -> ProxyFrame {
        let recent = self.collect_events();
        self.out.clear();
        self.picture_with(recent)
    }

    /// A picture of the cluster now, that changes nothing (a recording's keyframe).
    pub fn picture(&self) -> ProxyFrame {
        self.picture_with(Vec::new())
    }

    fn picture_with(&self, recent: Vec<Observed>) -> ProxyFrame {
        let logs = self.servers.values().filter_map(|s| Some((s.id, s.log()?))).collect();
        ProxyFrame::Welcome {
            version: PROTOCOL_VERSION,
            admin: true,
            proxies: Vec::new(),
            nodes: self
                .servers
                .keys()
                .map(|id| NodeAddress { id: *id, address: server::address(*id) })
                .collect(),
            picture: Some(Box::new(Picture { cluster: self.status(), logs, recent })),
        }
    }

    /// Takes a frame from the page. Answers come out of `take_frames`.
    pub fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Hello { .. } => {
                let welcome = self.welcome();
                self.out.push(welcome);
            }
            ClientFrame::Status { id } => {
                let cluster = Box::new(self.status());
                self.out.push(ProxyFrame::Status { id: Some(id), cluster });
            }
            ClientFrame::Admin { id, command } => {
                let frame = match self.admin(command) {
                    Ok(message) => ProxyFrame::AdminDone { id, message },
                    Err(error) => ProxyFrame::Error { id: Some(id), error },
                };
                self.out.push(frame);
            }
            other => self.client_request(other),
        }
    }

    /// Frames for the page since the last call, in order.
    pub fn take_frames(&mut self) -> Vec<ProxyFrame> {
        self.flush_events();
        std::mem::take(&mut self.out)
    }

    /// Moves the cluster to the page's clock `wall_ms` (milliseconds, any origin): timers fire,
    /// messages arrive, clients retry. A status goes out every quarter second.
    pub fn advance(&mut self, wall_ms: f64) {
        let elapsed = self.wall.map_or(0.0, |w| (wall_ms - w).clamp(0.0, MAX_CATCH_UP_MS));
        self.wall = Some(wall_ms);
        // While time is stopped no timer fires and nothing comes due: only steps move it.
        if !self.stopped {
            self.carry += elapsed / self.common.time_scale.max(1e-3);
            let whole = self.carry.floor();
            self.carry -= whole;
            self.run_until(self.now + whole as Millis);
        }
        self.land_travelling(wall_ms);
        self.retry_clients();
        let alarms = self.monitor.check_logs();
        self.raise(alarms);
        if wall_ms >= self.next_status {
            self.next_status = wall_ms + STATUS_EVERY_MS;
            self.measure_rate(wall_ms);
            self.flush_events();
            let cluster = Box::new(self.status());
            self.out.push(ProxyFrame::Status { id: None, cluster });
        }
    }

    /// Runs timers and deliveries in time order up to `target` on the cluster's clock.
    fn run_until(&mut self, target: Millis) {
        for _ in 0..MAX_STEPS_PER_ADVANCE {
            let next = self.servers.values().filter_map(Server::next_wake).min();
            match next {
                Some(t) if t <= target => {
                    self.now = self.now.max(t);
                    self.tick_all();
                }
                _ => break,
            }
        }
        self.now = self.now.max(target);
        self.tick_all();
    }

    /// Fires due timers and delivers due messages at the current time. (A server may leave
    /// the cluster on the way, when a configuration without it commits.)
    fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.servers.keys().copied().collect();
        for id in &ids {
            let Some(server) = self.servers.get_mut(id) else { continue };
            for message in server.due(self.now) {
                self.deliver(message);
            }
        }
        self.fire_timers();
    }

    /// A message reaches its destination — or is lost there, with the reason.
    fn deliver(&mut self, arriving: InTransit) {
        let message = arriving.message;
        let (from, to) = (message.from, message.to);
        let verdict = match self.servers.get(&to) {
            None => Some(LossReason::Unreachable),
            Some(s) if !s.is_up() => Some(LossReason::Unreachable),
            Some(s) if s.faults.blocked_from.contains(&from) => Some(LossReason::Partition),
            Some(_) => None,
        };
        if let Some(reason) = verdict {
            if let Some(sender) = self.servers.get_mut(&from) {
                sender.transit.lost(&message, reason);
            }
            return;
        }
        let now = self.now;
        let server = self.servers.get_mut(&to).expect("checked");
        if server.paused {
            // A stopped process's socket buffers fill up; beyond that the sender's link drops.
            if server.inbox.len() < PAUSED_INBOX {
                server.inbox.push(message);
            } else if let Some(sender) = self.servers.get_mut(&from) {
                sender.transit.lost(&message, LossReason::Overflow);
            }
            return;
        }
        let local = server.now(now);
        server.replica.as_mut().expect("checked").step(local, message);
        self.work(to);
    }

    /// Lets a server finish what it has to do, and routes its answers to client operations.
    fn work(&mut self, id: NodeId) {
        let now = self.now;
        let answers = self.servers.get_mut(&id).expect("a known server").work(now, &mut self.stamp);
        for (op, reply) in answers {
            self.answered(id, op, reply);
        }
    }

    fn land_travelling(&mut self, wall_ms: f64) {
        let (landed, still): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.travelling).into_iter().partition(|(at, _)| *at <= wall_ms);
        self.travelling = still;
        for (_, message) in landed {
            self.deliver(message);
        }
    }

    /// Gathers every server's events into one `events` frame.
    fn flush_events(&mut self) {
        let events = self.collect_events();
        if !events.is_empty() {
            self.out.push(ProxyFrame::Events { events });
        }
    }

    /// Every server's events since the last call, in order, with the monitor's alarms.
    fn collect_events(&mut self) -> Vec<Observed> {
        let now = self.now;
        let mut events: Vec<Observed> = std::mem::take(&mut self.events);
        for server in self.servers.values_mut() {
            events.extend(server.take_events(now));
        }
        let mut alarms = Vec::new();
        for observed in &events {
            alarms.extend(self.monitor.observe(observed));
        }
        events.extend(alarms.into_iter().map(|alarm| Observed {
            node: 0,
            at: 0,
            event: Event::Alarm { alarm },
        }));
        events
    }

    fn raise(&mut self, alarms: Vec<crate::event::Alarm>) {
        self.events.extend(alarms.into_iter().map(|alarm| Observed {
            node: 0,
            at: 0,
            event: Event::Alarm { alarm },
        }));
    }

    /// Sends a server's log to the page (after a start, a restart, a reset).
    fn send_log(&mut self, id: NodeId) {
        let Some(log) = self.servers.get(&id).and_then(Server::log) else { return };
        self.flush_events();
        self.monitor.log(id, log.clone());
        self.out.push(ProxyFrame::Log {
            node: id,
            snapshot_index: log.snapshot_index,
            snapshot_term: log.snapshot_term,
            skipped: log.skipped,
            entries: log.entries,
        });
    }

    /// Messages sent per second of the page's time, over the last status period (as a proxy
    /// reports it). A server that left takes its count with it: the rate never goes negative.
    fn measure_rate(&mut self, wall_ms: f64) {
        let sent: u64 = self.servers.values().map(|s| s.messages_sent).sum();
        let (before, at) = self.sent_before;
        if wall_ms > at {
            self.messages_per_s = sent.saturating_sub(before) as f64 * 1000.0 / (wall_ms - at);
        }
        self.sent_before = (sent, wall_ms);
    }

    /// The cluster as a proxy's status shows it.
    pub fn status(&self) -> ClusterStatus {
        let nodes: Vec<_> = self.servers.values().map(|s| s.view(self.now, self.stopped)).collect();
        let leader =
            nodes.iter().filter(|n| n.role == Some(Role::Leader)).max_by_key(|n| n.term).map(|n| n.id);
        let mut held: Vec<HeldMessage> = self.servers.values().flat_map(Server::held).collect();
        held.sort_by_key(HeldMessage::send_order);
        held.truncate(HELD_LISTED);
        let policy = self.common.network_policy(Config::new(1, vec![]).election_timeout);
        let members = nodes
            .iter()
            .filter_map(|n| n.status.as_ref())
            .max_by_key(|s| {
                (s.replica.raft.role == Role::Leader, s.replica.raft.term, s.replica.raft.last_index)
            })
            .map(|s| Members {
                voters: s.replica.raft.voters.clone(),
                learners: s.replica.raft.learners.clone(),
            })
            .unwrap_or_default();
        ClusterStatus {
            term: nodes.iter().filter_map(|n| n.term).max().unwrap_or(0),
            leader,
            time_scale: self.common.time_scale,
            proxies: Vec::new(),
            supervised: true,
            time: TimeStatus {
                stopped: self.stopped,
                held: self.servers.values().map(|s| s.transit.len() as u64).sum::<u64>()
                    + self.travelling.len() as u64,
                messages: held,
                latency_ms: policy.latency,
                jitter_ms: policy.jitter,
                latency_auto: self.common.latency_ms.is_none(),
            },
            alarms: self.monitor.alarms().to_vec(),
            members,
            lesson: self.lesson.clone(),
            bugs: self.bugs.iter().collect(),
            open_writes: true,
            recording: None,
            stats: RequestStats::default(),
            messages_per_s: self.messages_per_s,
            nodes,
        }
    }

    /// The cluster's clock now (ms of cluster time).
    pub fn now(&self) -> Millis {
        self.now
    }

    /// The leader of the highest term, if any server leads.
    pub fn leader(&self) -> Option<NodeId> {
        self.status().leader
    }
}
