//! The deterministic simulator: a whole cluster — servers, network, disks, clients, faults —
//! in one thread, on virtual time, from one seed.
//!
//! Every "random" choice comes from the seed, so a failing seed replays exactly (`consenso sim
//! --seed S --trace`). After every step the safety checker looks at what changed; at the end
//! the clients' history is checked for linearizability. With a `Bug` switched on, these checks
//! must find the defect; that is how we know they can fail.
//!
//! Nothing here uses threads, a clock or the OS, so the simulator also runs in the browser.
//!
//! # Layout
//!
//! - `network`: delays, loss, duplication, partitions; the JSON wire round trip.
//! - `node`: a server with its simulated disk; crash and restart.
//! - `client`: the workload, through the proxies, and what its answers mean.
//! - `proxies`: real proxy cores between the clients and the servers; proxy crashes.
//! - `faults`: the fault schedule, random and at critical moments.
//! - `membership`: the operator that adds and removes servers during a run.
//! - `liveness`: the calm after the faults, and the check that the cluster gets going again.
//! - this file: the event loop, the servers' rounds and the report.

mod client;
mod faults;
mod liveness;
mod membership;
mod network;
mod node;
mod proxies;
pub(crate) use node::Disk;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use crate::check::{Operation, Output, Property, SafetyChecker, Violation, check_history};
use crate::event::Event;
use crate::protocol::{ClientFrame, ProxyFrame, ServerOutbound};
use crate::proxy::ConnId;
use crate::raft::{Bugs, Config, Millis, NodeId, Role};
use crate::replica::Replica;
use crate::rng::Rng;
use client::SimClient;
use network::{Network, NetworkFaults, wire_round_trip, wire_round_trip_reply};
use node::{Input, SimNode};
use proxies::{SessionsSeen, SimProxy};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    /// Cluster size; `None` lets the seed choose 3, 5 or 7.
    pub nodes: Option<usize>,
    /// Events to process.
    pub steps: u64,
    pub bugs: Bugs,
    /// Inject crashes, pauses, partitions and an unreliable network.
    pub faults: bool,
    /// Keep a readable line per event.
    pub trace: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> SimConfig {
        SimConfig { seed, nodes: None, steps: 10_000, bugs: Bugs::none(), faults: true, trace: false }
    }
}

/// What a run found.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    pub seed: u64,
    pub nodes: usize,
    pub steps: u64,
    pub virtual_ms: Millis,
    /// The first property violated, if any.
    pub violation: Option<Violation>,
    pub operations_completed: usize,
    pub operations_unknown: usize,
    /// Keys whose linearizability search ran out of budget: the run proves nothing about them.
    pub linearizability_unknown: Vec<String>,
    pub elections_won: u64,
    pub crashes: u64,
    pub partitions: u64,
    pub snapshots_installed: u64,
    /// Membership changes the operator asked for that committed (0 in seeds without one).
    pub membership_changes: u64,
    /// Servers restarted on an empty disk, and crashes that left a batch half written.
    pub disks_wiped: u64,
    pub torn_writes: u64,
    /// Proxies that crashed (their clients failed over to another).
    pub proxy_crashes: u64,
    /// Sessions registered through the log, and those the store forgot to make room (the
    /// simulator shrinks the table in some seeds, so eviction is reached with few clients).
    pub sessions_registered: u64,
    pub sessions_evicted: u64,
    #[serde(skip)]
    pub trace: Vec<String>,
    #[serde(skip)]
    pub history: Vec<Operation>,
}

impl SimReport {
    fn empty(seed: u64, nodes: usize) -> SimReport {
        SimReport {
            seed,
            nodes,
            steps: 0,
            virtual_ms: 0,
            violation: None,
            operations_completed: 0,
            operations_unknown: 0,
            linearizability_unknown: Vec::new(),
            elections_won: 0,
            crashes: 0,
            partitions: 0,
            snapshots_installed: 0,
            membership_changes: 0,
            disks_wiped: 0,
            torn_writes: 0,
            proxy_crashes: 0,
            sessions_registered: 0,
            sessions_evicted: 0,
            trace: Vec::new(),
            history: Vec::new(),
        }
    }
}

/// Runs one seed to the end (or to its first violation).
pub fn run(cfg: &SimConfig) -> SimReport {
    Simulation::new(cfg.clone()).run()
}

/// Per-run parameters drawn from the seed, so that seeds explore different settings.
#[derive(Debug, Clone)]
struct Params {
    nodes: usize,
    clients: usize,
    keys: u64,
    election_timeout: Millis,
    /// The servers' default (half the timeout) or the paper's full timeout of spread.
    election_jitter: Millis,
    heartbeat: Millis,
    max_entries: usize,
    max_inflight: usize,
    pre_vote: bool,
    check_quorum: bool,
    snapshot_every: u64,
    disk_max: Millis,
    fault_interval: Millis,
    /// Bytes per message: small values cut snapshots into many chunks.
    max_bytes: usize,
    /// Copies of a multi-byte phrase in values, at most (0: short ASCII values).
    padding: u32,
    /// How many disks this run may wipe (a server restarted on an empty directory). Without an
    /// operator to replace them, at most a minority: a wiped voter never counts again.
    wipes: u32,
    /// Proxies between the clients and the servers.
    proxies: usize,
    /// Sessions each store keeps (`None`: the default): in some seeds barely more than the
    /// clients, so that sessions of dead connections are evicted, and now and then a live one.
    session_capacity: Option<usize>,
}

impl Params {
    fn draw(rng: &mut Rng, cfg: &SimConfig) -> Params {
        let nodes = cfg.nodes.unwrap_or_else(|| *rng.pick(&[3, 3, 3, 5, 5, 7]));
        let clients = rng.range(2, 5) as usize;
        Params {
            nodes,
            clients,
            keys: rng.range(1, 4),
            election_timeout: 150,
            // Drawn from a generator of its own, so that adding the setting left the seed's
            // other settings as they were.
            election_jitter: *Rng::new(cfg.seed ^ 0x6a17_7e55).pick(&[75, 150]),
            heartbeat: rng.range(30, 60),
            max_entries: *rng.pick(&[1, 1, 1, 2, 3, 8]),
            max_inflight: rng.range(1, 6) as usize,
            pre_vote: rng.chance(800_000),
            check_quorum: rng.chance(800_000),
            snapshot_every: *rng.pick(&[0, 4, 8, 16, 64]),
            disk_max: *rng.pick(&[0, 2, 5, 20]),
            fault_interval: rng.range(80, 500),
            max_bytes: *rng.pick(&[1 << 20, 1 << 20, 1 << 20, 64, 300]),
            padding: if rng.chance(300_000) { rng.range(1, 40) as u32 } else { 0 },
            wipes: if cfg.faults && rng.chance(400_000) {
                rng.range(1, (nodes as u64 - 1) / 2) as u32
            } else {
                0
            },
            proxies: rng.range(1, 2) as usize,
            session_capacity: rng.chance(250_000).then(|| clients + rng.range(1, 3) as usize),
        }
    }
}

#[derive(Debug)]
enum SimEvent {
    DeliverToNode(NodeId, Input),
    /// A client's frame reaches proxy `proxy` (if it still lives its life `incarnation`).
    ToProxy {
        proxy: usize,
        incarnation: u64,
        conn: ConnId,
        frame: ClientFrame,
    },
    /// A server's frame (an answer, a status, role changes) reaches a proxy, if both still live
    /// the lives they sent and received it in.
    ToProxyFromServer {
        proxy: usize,
        incarnation: u64,
        node: NodeId,
        server_life: u64,
        frame: ServerOutbound,
    },
    /// A proxy's answer reaches the client on connection `conn`.
    ToClient {
        conn: ConnId,
        frame: ProxyFrame,
    },
    /// A client's connection to its proxy dropped (the proxy died).
    ConnectionLost {
        conn: ConnId,
    },
    /// A proxy's timer.
    ProxyWake {
        proxy: usize,
        incarnation: u64,
        at: Millis,
    },
    ProxyRestart(usize),
    /// A server's periodic status report.
    ReportStatus {
        node: NodeId,
        incarnation: u64,
    },
    Tick(NodeId),
    DiskDone {
        node: NodeId,
        incarnation: u64,
    },
    ClientWake {
        client: usize,
        generation: u64,
    },
    Fault,
    Crash {
        node: NodeId,
        incarnation: u64,
    },
    Restart(NodeId),
    Resume(NodeId),
    Heal,
    /// The operator's next round of membership changes.
    Operate,
    /// One change asked at once, at a critical moment.
    OperateNow {
        remove: bool,
    },
    /// A server compacts its log now (as an admin's `snapshot` command).
    Compact(NodeId),
    /// The leader is asked to hand leadership to another voter.
    Transfer,
    /// Once faults end, whether the cluster gets going again (see `liveness`).
    CheckLiveness,
}

impl SimEvent {
    /// A status report on its way: it changes what proxies know, not what servers do.
    fn is_measurement(&self) -> bool {
        matches!(
            self,
            SimEvent::ReportStatus { .. }
                | SimEvent::ToProxyFromServer { frame: ServerOutbound::Status { .. }, .. }
        )
    }
}

#[derive(Debug)]
struct Scheduled {
    at: Millis,
    seq: u64,
    event: SimEvent,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

struct Simulation {
    cfg: SimConfig,
    params: Params,
    rng: Rng,
    now: Millis,
    /// Events handled: the clock of the history (invocations and completions).
    step: u64,
    /// Events handled but the servers' status reports, which only inform the proxies: what
    /// the run's budget (`SimConfig::steps`) counts.
    work: u64,
    queue: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    nodes: Vec<SimNode>,
    clients: Vec<SimClient>,
    proxies: Vec<SimProxy>,
    sessions_seen: SessionsSeen,
    /// Servers started so far: the first configuration, then those the operator added.
    provisioned: usize,
    /// Whether this seed has an operator changing membership, and its own choices.
    operator: bool,
    membership_rng: Rng,
    /// Servers a leader reported as restarted on an empty disk, for the operator to repair.
    lost_disks: std::collections::BTreeSet<NodeId>,
    /// Servers the operator asked to remove (the removal may still come into force).
    removals_asked: std::collections::BTreeSet<NodeId>,
    calm: liveness::Calm,
    network: Network,
    checker: SafetyChecker,
    history: Vec<Operation>,
    /// History entries of reads that were abandoned (they changed nothing): left out at the end.
    abandoned: Vec<bool>,
    trace: Vec<String>,
    report: SimReport,
}

impl Simulation {
    fn new(cfg: SimConfig) -> Simulation {
        let mut rng = Rng::new(cfg.seed);
        let params = Params::draw(&mut rng, &cfg);
        let faults = if cfg.faults {
            NetworkFaults {
                drop_ppm: *rng.pick(&[0, 10_000, 50_000, 150_000, 300_000]),
                duplicate_ppm: rng.range(0, 30_000) as u32,
                min_delay: 1,
                max_delay: rng.range(2, 30),
                slow_ppm: 10_000,
            }
        } else {
            NetworkFaults { drop_ppm: 0, duplicate_ppm: 0, min_delay: 1, max_delay: 5, slow_ppm: 0 }
        };
        let report = SimReport::empty(cfg.seed, params.nodes);
        let node_count = params.nodes;
        let nodes = (0..params.nodes + membership::SPARE_SERVERS).map(|_| SimNode::new()).collect();
        let mut membership_rng = Rng::new(cfg.seed ^ 0x6d65_6d62_6572_7321);
        let operator = cfg.faults && membership_rng.chance(800_000);
        // Some clients number their own writes (and fail over with them), some let the proxy.
        let clients = (1..=params.clients as u64)
            .map(|n| SimClient::new(n, rng.chance(600_000), n as usize % params.proxies))
            .collect();
        let proxies = (0..params.proxies).map(|_| SimProxy::new()).collect();
        let sessions_seen = SessionsSeen::new(params.session_capacity);
        Simulation {
            params,
            rng,
            now: 0,
            step: 0,
            work: 0,
            queue: BinaryHeap::new(),
            seq: 0,
            nodes,
            clients,
            proxies,
            sessions_seen,
            provisioned: node_count,
            operator,
            membership_rng,
            lost_disks: std::collections::BTreeSet::new(),
            removals_asked: std::collections::BTreeSet::new(),
            calm: liveness::Calm::default(),
            network: Network::new(faults),
            checker: SafetyChecker::new(1..=node_count as NodeId).with_unique_values(),
            history: Vec::new(),
            abandoned: Vec::new(),
            trace: Vec::new(),
            report,
            cfg,
        }
    }

    fn run(mut self) -> SimReport {
        if self.cfg.trace {
            let p = &self.params;
            let line = format!(
                "seed {} · {} nodes · {} clients on {} keys · heartbeat {} ms · election timeout {}–{} ms · \
                 pre-vote {} · check-quorum {} · snapshot every {} · batch {}×{} · bugs: {}",
                self.cfg.seed,
                p.nodes,
                p.clients,
                p.keys,
                p.heartbeat,
                p.election_timeout,
                p.election_timeout + p.election_jitter,
                p.pre_vote,
                p.check_quorum,
                p.snapshot_every,
                p.max_entries,
                p.max_inflight,
                if self.cfg.bugs.is_empty() {
                    "none".to_string()
                } else {
                    self.cfg.bugs.iter().map(|b| b.name()).collect::<Vec<_>>().join(", ")
                }
            );
            self.trace.push(line);
        }
        let first: Vec<NodeId> = (1..=self.params.nodes as NodeId).collect();
        for id in first.clone() {
            self.node(id).disk.bootstrap(first.clone());
            self.start_node(id);
        }
        for p in 0..self.proxies.len() {
            self.start_proxy(p);
        }
        for client in 0..self.clients.len() {
            let at = self.rng.range(0, 50);
            self.schedule(at, SimEvent::ClientWake { client, generation: 0 });
        }
        if self.cfg.faults {
            let at = self.rng.range(100, 100 + self.params.fault_interval);
            self.schedule(at, SimEvent::Fault);
        }
        if self.operator {
            let at = self.membership_rng.range(300, 1_000);
            self.schedule(at, SimEvent::Operate);
        }
        let calm_at = self.cfg.steps * 3 / 4;
        let hard_stop = self.cfg.steps * liveness::CALM_STEP_FACTOR;
        while self.report.violation.is_none() {
            let in_budget = self.work < self.cfg.steps && !self.calm.checked;
            let checking = self.calm() && !self.calm.checked && self.work < hard_stop;
            if !in_budget && !checking {
                break;
            }
            if self.cfg.faults && self.work >= calm_at && !self.calm() {
                self.begin_calm();
            }
            let Some(Reverse(next)) = self.queue.pop() else { break };
            self.step += 1;
            if !next.event.is_measurement() {
                self.work += 1;
            }
            debug_assert!(next.at >= self.now, "time never goes backwards");
            self.now = next.at;
            self.handle(next.event);
            if let Some(v) = self.checker.take_violations().into_iter().next() {
                self.note(format!("VIOLATION: {}: {}", v.property, v.detail));
                self.report.violation = Some(v);
            }
        }
        self.finish()
    }

    fn finish(mut self) -> SimReport {
        // Reads still in flight changed nothing: leave them out. Writes still in flight stay,
        // with unknown outcome.
        for client in &self.clients {
            if let Some(op) = &client.current {
                if matches!(op.input, crate::check::Input::Get { .. }) {
                    self.abandoned[op.history] = true;
                }
            }
        }
        let history: Vec<Operation> = self
            .history
            .iter()
            .zip(&self.abandoned)
            .filter(|(_, abandoned)| !**abandoned)
            .map(|(op, _)| op.clone())
            .collect();
        self.report.operations_completed = history.iter().filter(|o| o.complete.is_some()).count();
        self.report.operations_unknown = history.iter().filter(|o| o.output == Output::Unknown).count();
        if self.report.violation.is_none() {
            let lin = check_history(&history);
            self.report.linearizability_unknown = lin.inconclusive.clone();
            if let Some(v) = lin.violation {
                let detail = format!("key {} ({} operations): {}", v.key, v.operations, v.reason);
                if self.cfg.trace {
                    self.trace.push(format!("VIOLATION: Linearizability: {detail}; around it:"));
                    self.trace.extend(v.near.iter().map(|o| format!("    {o}")));
                }
                self.report.violation =
                    Some(Violation { property: Property::Linearizability, step: self.step, detail });
            }
        }
        self.report.steps = self.step;
        self.report.virtual_ms = self.now;
        (self.report.sessions_registered, self.report.sessions_evicted) = self.sessions_seen.counts();
        self.report.trace = self.trace;
        self.report.history = history;
        self.report
    }

    fn schedule(&mut self, at: Millis, event: SimEvent) {
        self.seq += 1;
        self.queue.push(Reverse(Scheduled { at, seq: self.seq, event }));
    }

    fn note(&mut self, text: String) {
        if self.cfg.trace {
            self.trace.push(format!("{:>7} ms #{:<6} {text}", self.now, self.step));
        }
    }

    fn node(&mut self, id: NodeId) -> &mut SimNode {
        &mut self.nodes[id as usize - 1]
    }

    fn handle(&mut self, event: SimEvent) {
        match event {
            SimEvent::DeliverToNode(id, input) => {
                // A partition also cuts messages that were already on the wire.
                let cut = matches!(&input, Input::Raft(m) if self.network.is_blocked(m.from, m.to));
                if self.node(id).is_up() && !cut {
                    self.node(id).inbox.push_back(input);
                    self.run_node(id);
                }
            }
            SimEvent::ToProxy { proxy, incarnation, conn, frame } => {
                self.proxy_hears_client(proxy, incarnation, conn, frame)
            }
            SimEvent::ToProxyFromServer { proxy, incarnation, node, server_life, frame } => {
                self.proxy_hears_server(proxy, incarnation, node, server_life, frame)
            }
            SimEvent::ToClient { conn, frame } => self.client_answer(conn, frame),
            SimEvent::ConnectionLost { conn } => self.connection_lost(conn),
            SimEvent::ProxyWake { proxy, incarnation, at } => self.proxy_wake(proxy, incarnation, at),
            SimEvent::ProxyRestart(p) => {
                self.note(format!("proxy {} restarted", p + 1));
                self.start_proxy(p);
            }
            SimEvent::ReportStatus { node, incarnation } => self.report_status(node, incarnation),
            SimEvent::Tick(id) => {
                let now = self.now;
                let node = self.node(id);
                if node.is_up() && node.next_tick == Some(now) {
                    node.next_tick = None;
                    node.inbox.push_back(Input::Tick);
                    self.run_node(id);
                }
            }
            SimEvent::DiskDone { node, incarnation } => self.disk_done(node, incarnation),
            SimEvent::ClientWake { client, generation } => self.client_wake(client, generation),
            SimEvent::Fault => self.inject_fault(),
            SimEvent::Crash { node, incarnation } => {
                if self.node(node).incarnation == incarnation && !self.calm() {
                    let restart_after = self.rng.range(1, 40);
                    self.crash_node(node, restart_after);
                }
            }
            SimEvent::Restart(id) => self.start_node(id),
            SimEvent::Resume(id) => {
                if self.node(id).paused {
                    self.node(id).paused = false;
                    self.note(format!("n{id} resumed"));
                    self.run_node(id);
                }
            }
            SimEvent::Heal => {
                if self.network.is_partitioned() {
                    self.network.heal();
                    self.note("network healed".to_string());
                }
            }
            SimEvent::Operate => self.operate(),
            SimEvent::OperateNow { remove } => self.ask_for_a_change(remove),
            SimEvent::Compact(id) => self.compact(id),
            SimEvent::Transfer => self.transfer(),
            SimEvent::CheckLiveness => self.check_liveness(),
        }
    }

    // ------------------------------------------------------------------ servers

    fn raft_config(&self, id: NodeId) -> Config {
        let p = &self.params;
        // A disk holding the first configuration starts from it; any other server (added by
        // the operator, or restarted on a wiped disk) starts with none and waits to be added.
        let first_voters = self.nodes[id as usize - 1].disk.first_voters();
        let mut cfg = if !first_voters.is_empty() {
            Config::new(id, first_voters.to_vec())
        } else if id as usize <= p.nodes && self.cfg.bugs.has(crate::raft::Bug::VoteOnEmptyDisk) {
            // The defect: an empty disk taken for a new cluster.
            Config::new(id, (1..=p.nodes as NodeId).collect())
        } else {
            Config::joining(id)
        };
        cfg.election_timeout = p.election_timeout;
        cfg.election_jitter = p.election_jitter;
        cfg.heartbeat_interval = p.heartbeat;
        cfg.max_entries_per_message = p.max_entries;
        cfg.max_bytes_per_message = p.max_bytes;
        cfg.max_inflight_messages = p.max_inflight;
        cfg.pre_vote = p.pre_vote;
        cfg.check_quorum = p.check_quorum;
        cfg.bugs = self.cfg.bugs;
        cfg
    }

    fn start_node(&mut self, id: NodeId) {
        if self.node(id).is_up() {
            return;
        }
        let cfg = self.raft_config(id);
        let seed = self.rng.next_u64();
        let (now, snapshot_every) = (self.now, self.params.snapshot_every);
        let persisted = self.node(id).disk.persisted();
        let snapshot_index = persisted.snapshot.as_ref().map_or(0, |s| s.meta.index);
        let restarted = self.node(id).incarnation > 0;
        let mut replica = Replica::new(cfg, persisted, seed, now, snapshot_every);
        if let Some(capacity) = self.params.session_capacity {
            replica.set_session_capacity(capacity);
        }
        let (admitted, config) = (replica.raft().admitted(), replica.raft().membership().clone());
        self.node(id).replica = Some(replica);
        self.checker.on_restart(id, snapshot_index, admitted, config, self.step);
        if restarted {
            self.note(format!("n{id} restarted from its disk"));
        }
        let incarnation = self.node(id).incarnation;
        self.links_to(id, true);
        self.report_status(id, incarnation);
        self.run_node(id);
    }

    /// Lets a server work until it waits on its disk or has nothing left to do.
    fn run_node(&mut self, id: NodeId) {
        loop {
            let node = &mut self.nodes[id as usize - 1];
            let Some(replica) = node.replica.as_mut() else { return };
            if node.paused || node.io.is_some() {
                return;
            }
            if replica.has_work() {
                self.start_round(id);
                continue;
            }
            let Some(input) = node.inbox.pop_front() else { break };
            let now = self.now;
            let term_before = replica.raft().term();
            match input {
                Input::Raft(msg) => replica.step(now, msg),
                Input::Tick => replica.tick(now),
                Input::Request { proxy, incarnation, id, request } => {
                    let rid = node.next_request;
                    node.next_request += 1;
                    node.requests.insert(rid, (proxy, incarnation, id));
                    replica.request(now, rid, request);
                }
                Input::Operator(request) => replica.request(now, OPERATOR_REQUEST, request),
            }
            let step = self.step;
            let raft = self.nodes[id as usize - 1].replica.as_ref().expect("up").raft();
            raft.check_invariants();
            assert!(
                raft.term() >= term_before,
                "n{id}: term went back from {term_before} to {}",
                raft.term()
            );
            self.checker.after_input(id, raft, step);
        }
        self.schedule_tick(id);
    }

    fn schedule_tick(&mut self, id: NodeId) {
        let now = self.now;
        let node = self.node(id);
        let Some(replica) = node.replica.as_ref() else { return };
        let deadline = replica.next_deadline().max(now);
        if node.next_tick != Some(deadline) {
            node.next_tick = Some(deadline);
            self.schedule(deadline, SimEvent::Tick(id));
        }
    }

    fn start_round(&mut self, id: NodeId) {
        let node = &mut self.nodes[id as usize - 1];
        let mut work = node.replica.as_mut().expect("up").take_work();
        let incarnation = node.incarnation;
        self.send_messages(std::mem::take(&mut work.messages_now).into_iter());
        // Nothing to write means no disk latency; it still completes as its own step, which
        // keeps the event loop iterative.
        let latency = if work.persist.is_empty() { 0 } else { self.rng.range(0, self.params.disk_max) };
        let records = usize::from(work.persist.hard_state.is_some()) + work.persist.entries.len();
        self.node(id).io = Some(work);
        self.schedule(self.now + latency, SimEvent::DiskDone { node: id, incarnation });
        // Buggify: a crash in the middle of a write of several records tears it.
        if self.cfg.faults && !self.calm() && records >= 2 && self.rng.chance(25_000) {
            let restart_after = self.rng.range(1, 100);
            self.crash_node(id, restart_after);
        }
    }

    /// Sends Raft messages through the network — as the node sends them, through the JSON wire
    /// format, so that what the simulator proves also holds for what crosses a real socket.
    fn send_messages(&mut self, messages: impl Iterator<Item = crate::raft::Message>) {
        for msg in messages {
            let msg = wire_round_trip(msg);
            if self.cfg.trace {
                let line = format!("n{} {}", msg.from, crate::event::message_sent(&msg, 0).describe());
                self.note(line);
            }
            for delay in self.network.route(&mut self.rng, Some((msg.from, msg.to))) {
                self.schedule(self.now + delay, SimEvent::DeliverToNode(msg.to, Input::Raft(msg.clone())));
            }
        }
    }

    fn disk_done(&mut self, id: NodeId, incarnation: u64) {
        let step = self.step;
        let node = self.node(id);
        if node.incarnation != incarnation || !node.is_up() {
            return;
        }
        let Some(mut work) = node.io.take() else { return };
        node.disk.write(&work.persist);
        self.checker.on_persist(id, &work.persist, step);
        if let Some(snapshot) = &work.persist.snapshot {
            self.report.snapshots_installed += 1;
            self.sessions_seen.installed(snapshot.meta.index);
        }
        let messages = std::mem::take(&mut work.messages);
        self.send_messages(messages.into_iter());
        let work_restored = work.persist.snapshot.is_some();
        let node = &mut self.nodes[id as usize - 1];
        let replica = node.replica.as_mut().expect("up");
        let done = replica.finish(work);
        self.checker.after_finish(id, replica.raft(), &done.applied, step);
        self.sessions_seen.applied(&done.applied);
        if !done.applied.is_empty() || done.snapshot.is_some() || work_restored {
            self.checker.store_at(id, replica.kv().applied(), replica.kv().digest(), step);
        }
        self.checker.after_input(id, replica.raft(), step);
        if let Some(snapshot) = &done.snapshot {
            node.disk.compact(snapshot);
        }
        for (rid, reply) in done.replies {
            if rid == OPERATOR_REQUEST {
                self.operator_heard(id, reply);
                continue;
            }
            let Some((proxy, incarnation, request)) = self.nodes[id as usize - 1].requests.remove(&rid)
            else {
                continue;
            };
            let reply = wire_round_trip_reply(reply);
            self.server_frame(id, proxy, incarnation, ServerOutbound::Reply { id: request, reply });
        }
        self.roles_to_proxies(id, &done.events);
        for event in done.events {
            if matches!(event, Event::RoleChanged { role: Role::Leader, .. }) {
                self.report.elections_won += 1;
            }
            self.maybe_crash_at_critical_point(id, &event);
            self.maybe_operate_at_critical_point(&event);
            self.note_lost_disk(&event);
            if self.cfg.trace {
                let text = format!("n{id} {}", event.describe());
                self.note(text);
            }
        }
        self.run_node(id);
    }
}

/// The request id of the operator's membership changes (clients' ids start at 1).
const OPERATOR_REQUEST: crate::replica::RequestId = 0;

/// Summary of a batch of seeds, for `consenso sim` and the tests.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchSummary {
    pub runs: u64,
    pub steps: u64,
    pub violations: u64,
    pub failing: Vec<(u64, Property, u64)>,
    /// Seeds whose linearizability search ran out of budget: not violations, not passes.
    pub undecided: Vec<u64>,
}

/// Runs seeds `start..start+count` with otherwise equal settings.
pub fn run_batch(
    base: &SimConfig,
    start: u64,
    count: u64,
    mut on_report: impl FnMut(&SimReport),
) -> BatchSummary {
    let mut summary = BatchSummary::default();
    for seed in start..start + count {
        let report = run(&SimConfig { seed, ..base.clone() });
        summary.runs += 1;
        summary.steps += report.steps;
        if let Some(v) = &report.violation {
            summary.violations += 1;
            summary.failing.push((seed, v.property, v.step));
        } else if !report.linearizability_unknown.is_empty() {
            summary.undecided.push(seed);
        }
        on_report(&report);
    }
    summary
}
