//! The proxy's brain as a sans-IO state machine: what a proxy decides, written once and driven
//! three ways — by `consenso proxy` (tokio, WebSockets), by the page's in-process cluster
//! (`playground`) and by the deterministic simulator, whose clients go through it.
//!
//! Like the Raft core it has no sockets, no clock and no randomness. Its inputs are the
//! frames that reach a proxy and the time:
//!
//! - a client connection opens ([`Proxy::opened`]), sends a frame ([`Proxy::client`]) or
//!   closes ([`Proxy::closed`]);
//! - a server's link comes up or goes down ([`Proxy::link`]) and the server sends a frame
//!   ([`Proxy::server`]);
//! - the supervisor's link comes up or goes down ([`Proxy::supervisor_link`]) and it sends a
//!   frame ([`Proxy::supervisor`]);
//! - time passes ([`Proxy::tick`]).
//!
//! Its outputs come out of [`Proxy::ready`] as a [`Ready`]: frames for servers, answers for
//! clients, frames for every subscribed page, requests for the supervisor, links to open or
//! close, lines for the log, and when to call `tick` next. Requests, admin commands and
//! lessons wait on servers and on time, so they are written as `async` tasks run by a tiny
//! executor of its own (`tasks`), polled only by these inputs: the same inputs in the same
//! order give the same outputs (the simulator replays a seed exactly, proxies included).
//!
//! # Layout
//!
//! - `core`: what the proxy knows (servers, connections, the supervisor, the time gate);
//! - `wait`: what its tasks wait on (time, a new leader, answers);
//! - `tasks`: the executor;
//! - `client`: one client frame, from validation to answer, with the connection's own session
//!   (registered through the log at its first write, like a client's `register`);
//! - `route`: where a request goes and its retries (sessions make them safe; the deliberate
//!   defect `retry-without-session` is here);
//! - `admin`: what each admin command means and its one validation;
//! - `time`: stop, step, start, deliver and drop held messages;
//! - `membership`: adding and removing servers;
//! - `lessons`: the lesson driver;
//! - `status`: the cluster as this proxy sees it;
//! - `supervise`: asking the supervisor; the servers known;
//! - `fanout`: events sampled and batched for pages;
//! - `stats`: the requests completed, for rates and latencies;
//! - `ready`: what the proxy is told at start and what it asks to be done.

mod admin;
mod client;
mod core;
mod fanout;
mod lessons;
mod membership;
mod ready;
mod route;
mod stats;
mod status;
mod supervise;
mod tasks;
mod time;
mod wait;

pub use admin::{MAX_ADVANCE_MS, TIME_SCALE_MAX, TIME_SCALE_MIN};
pub use membership::MAX_NODE_ID;
pub use ready::{ConnId, LinkChange, Ready, Settings};
pub use route::{ATTEMPT_MS, OVERALL_MS};
pub use status::leader_of;
pub use time::MAX_STEPS;

use std::collections::BTreeSet;

use crate::event::{Event, LogMirror, Observed};
use crate::protocol::{
    AdminCommand, ClientFrame, ClusterStatus, NodeAddress, PROTOCOL_VERSION, Picture, ProxyFrame,
    ServerInbound, ServerOutbound, SupervisorOutbound,
};
use crate::raft::{Millis, NodeId};

use self::core::{Connection, Core, State};
use self::tasks::{SpawnQueue, Tasks};

/// How often pages get the cluster's status.
const STATUS_EVERY_MS: Millis = 250;
/// Events go to pages in one frame per display frame (~60 a second)…
const EVENTS_EVERY_MS: Millis = 16;
/// …or, in slow motion or with time stopped, within a few milliseconds, so that a page draws
/// each message leaving when it leaves (events are few then).
const EVENTS_PROMPTLY_MS: Millis = 3;
/// Log entries in a new page's first picture, across all servers, and per server: enough to
/// fill the widest logs view and scroll back a while, in a first frame of a few hundred KB.
const PICTURE_LOG_ENTRIES: usize = 2_400;
const PICTURE_LOG_ENTRIES_PER_NODE: usize = 1_000;

/// One proxy.
pub struct Proxy {
    core: Core,
    tasks: Tasks,
    last_flush: Millis,
}

impl Proxy {
    pub fn new(settings: Settings, now: Millis) -> Proxy {
        let spawn = SpawnQueue::default();
        let mut state = State::new(settings, spawn.clone());
        state.now = now;
        for (node, server) in &state.servers {
            state.out.links.push(LinkChange::Add { node: *node, address: server.address.clone() });
        }
        Proxy { core: Core::new(state), tasks: Tasks::new(spawn), last_flush: now }
    }

    /// A client connected. Returns its first frame: the welcome (with the whole picture for a
    /// page that subscribes). Everything published after this call is for it too.
    pub fn opened(&mut self, now: Millis, conn: ConnId, admin: bool, subscribe: bool) -> ProxyFrame {
        self.at(now);
        let mut state = self.core.state();
        state
            .conns
            .insert(conn, Connection { admin, session: None, registering: false, waiting: Vec::new() });
        let picture = subscribe.then(|| Box::new(picture_of(&state)));
        ProxyFrame::Welcome {
            version: PROTOCOL_VERSION,
            admin,
            proxies: state.settings.proxies.clone(),
            nodes: state
                .servers
                .iter()
                .map(|(id, s)| NodeAddress { id: *id, address: s.address.clone() })
                .collect(),
            picture,
        }
    }

    /// A client's connection closed: its requests still run (a write may commit), their answers
    /// go nowhere.
    pub fn closed(&mut self, now: Millis, conn: ConnId) {
        self.at(now);
        let mut state = self.core.state();
        if let Some(connection) = state.conns.remove(&conn) {
            for waker in connection.waiting {
                waker.wake();
            }
        }
        drop(state);
        self.run();
    }

    /// A frame from client `conn` (a hello was already answered by `opened`).
    pub fn client(&mut self, now: Millis, conn: ConnId, frame: ClientFrame) {
        self.at(now);
        let core = self.core.clone();
        self.core.state().spawn.spawn(async move {
            let answer = client::handle(core.clone(), conn, frame).await;
            let mut state = core.state();
            if state.conns.contains_key(&conn) {
                state.out.to_clients.push((conn, answer));
            }
        });
        self.run();
    }

    /// A server's link came up (it was greeted and subscribed) or dropped.
    pub fn link(&mut self, now: Millis, node: NodeId, up: bool) {
        self.at(now);
        let mut state = self.core.state();
        let Some(server) = state.servers.get_mut(&node) else { return };
        server.up = up;
        server.events_seq = 0;
        if up {
            // A server that comes back gets the faults in force (a partition, a stopped clock).
            if let Some(faults) = server.desired_faults.clone() {
                state.out.to_servers.push((node, ServerInbound::Faults { faults }));
            }
        } else {
            state.link_lost(node);
        }
        drop(state);
        self.run();
    }

    /// A frame from server `node`.
    pub fn server(&mut self, now: Millis, node: NodeId, frame: ServerOutbound) {
        self.at(now);
        {
            let mut state = self.core.state();
            if state.servers.contains_key(&node) {
                from_server(&mut state, node, frame);
            }
        }
        self.run();
    }

    /// The supervisor's link came up or dropped.
    pub fn supervisor_link(&mut self, now: Millis, up: bool) {
        self.at(now);
        let mut state = self.core.state();
        state.supervisor.up = up;
        if !up {
            state.supervisor_lost();
        }
        drop(state);
        self.run();
    }

    /// A frame from the supervisor.
    pub fn supervisor(&mut self, now: Millis, frame: SupervisorOutbound) {
        self.at(now);
        {
            let mut state = self.core.state();
            from_supervisor(&mut state, frame);
        }
        self.run();
    }

    /// Time passed.
    pub fn tick(&mut self, now: Millis) {
        self.at(now);
        self.run();
    }

    /// What to do now (see [`Ready`]).
    pub fn ready(&mut self) -> Ready {
        self.run();
        let mut state = self.core.state();
        let mut ready = std::mem::take(&mut state.out);
        let flush_at = (state.fanout.has_pending()).then(|| self.last_flush + flush_every(&state));
        let times = [state.next_timer(), Some(state.next_status), flush_at];
        ready.wake_at = times.into_iter().flatten().min();
        ready
    }

    /// The cluster as this proxy sees it now.
    pub fn status(&self) -> ClusterStatus {
        self.core.state().cluster_status()
    }

    /// The whole picture, for a recording's keyframe.
    pub fn picture(&self) -> Picture {
        picture_of(&self.core.state())
    }

    /// The recording file named in statuses (the driver records; `None`: not recording).
    pub fn set_recording(&mut self, file: Option<String>) {
        self.core.state().settings.recording = file;
    }

    /// Whether an admin command is one the driver carries out itself (recording to a file).
    pub fn is_for_driver(command: &AdminCommand) -> bool {
        matches!(command, AdminCommand::Record { .. })
    }

    /// Client requests, admin commands and lessons in progress (for tests and metrics).
    pub fn tasks(&self) -> usize {
        self.tasks.len()
    }

    fn at(&mut self, now: Millis) {
        self.core.state().advance(now);
    }

    /// Runs woken tasks and the periodic work that is due.
    fn run(&mut self) {
        self.tasks.run();
        let cancelled = std::mem::take(&mut self.core.state().cancelled);
        for task in cancelled {
            self.tasks.cancel(task);
        }
        let now = self.core.now();
        if now >= self.core.state().next_status {
            self.status_round();
            self.tasks.run();
        }
        let mut state = self.core.state();
        if state.fanout.has_pending() && now >= self.last_flush + flush_every(&state) {
            self.last_flush = now;
            let events = state.fanout.take();
            state.out.publish.push(ProxyFrame::Events { events });
        }
    }

    /// Every `STATUS_EVERY_MS`: the monitor looks at the logs, removed servers stop, and pages
    /// get the status.
    fn status_round(&mut self) {
        let mut state = self.core.state();
        state.next_status = state.now + STATUS_EVERY_MS;
        let alarms = state.monitor.check_logs();
        raise(&mut state, alarms);
        let mut cluster = state.cluster_status();
        // The store samples rarely change and are most of a status's bytes: sent when they do.
        for node in &mut cluster.nodes {
            let Some(status) = &mut node.status else { continue };
            if status.kv.is_some() && state.sent_kv.get(&node.id) == status.kv.as_ref() {
                status.kv = None;
            } else if let Some(kv) = &status.kv {
                state.sent_kv.insert(node.id, kv.clone());
            }
        }
        if state.fanout.has_pending() {
            // Events before the status that may already reflect them.
            let events = state.fanout.take();
            state.out.publish.push(ProxyFrame::Events { events });
        }
        state.out.publish.push(ProxyFrame::Status { id: None, cluster: Box::new(cluster) });
        drop(state);
        membership::stop_those_removed(&self.core);
    }
}

fn flush_every(state: &State) -> Millis {
    if state.gate.is_stopped() || state.time_scale() >= 2.0 { EVENTS_PROMPTLY_MS } else { EVENTS_EVERY_MS }
}

fn picture_of(state: &State) -> Picture {
    let per_node = (PICTURE_LOG_ENTRIES / state.servers.len().max(1)).min(PICTURE_LOG_ENTRIES_PER_NODE);
    let logs = state.servers.iter().map(|(node, s)| (*node, s.log.tail(per_node))).collect();
    Picture { cluster: state.cluster_status(), logs, recent: state.fanout.recent() }
}

/// New alarms go to pages (as events from "node 0", the monitor) and to the log.
fn raise(state: &mut State, alarms: Vec<crate::event::Alarm>) {
    for alarm in alarms {
        state.note(format!("invariant monitor: {} broken: {}", alarm.property, alarm.detail));
        state.fanout.push(Observed { node: 0, at: 0, event: Event::Alarm { alarm } });
    }
}

fn from_server(state: &mut State, node: NodeId, frame: ServerOutbound) {
    let now = state.now;
    match frame {
        ServerOutbound::Reply { id, reply } => state.answer_request(id, reply),
        ServerOutbound::Time { id, report } => state.answer_time(id, report),
        ServerOutbound::Events { events, seq } => {
            let server = state.servers.get_mut(&node).expect("checked by the caller");
            let gap = server.events_seq != 0 && seq != server.events_seq + 1;
            server.events_seq = seq;
            let mut heard_role = false;
            for observed in &events {
                server.log.apply(&observed.event);
                if let Event::RoleChanged { role, term, .. } = observed.event {
                    server.took_role(role, term);
                    heard_role = true;
                }
            }
            // News only if the frame leaves it leading: an announcement older than its last
            // status, or one it stepped down from within the frame, is not a leader to route to.
            if heard_role && server.announced_leading() {
                state.leader_announced(node);
            }
            if gap {
                state.monitor.gap(node);
            }
            let alarms: Vec<_> = events.iter().flat_map(|observed| state.monitor.observe(observed)).collect();
            raise(state, alarms);
            state.fanout.offer(&events, now);
        }
        ServerOutbound::Status { status } => {
            state.servers.get_mut(&node).expect("checked by the caller").took_status(*status, now);
            let stopped = state.servers.values().any(|s| s.fresh(now).is_some_and(|st| st.clock.stopped));
            state.gate.set_stopped(stopped, now);
        }
        ServerOutbound::Log { snapshot_index, snapshot_term, skipped, entries } => {
            let mirror = LogMirror { snapshot_index, snapshot_term, skipped, entries: entries.clone() };
            let server = state.servers.get_mut(&node).expect("checked by the caller");
            server.log = mirror.clone();
            server.events_seq = 0;
            state.fanout.forget_sender(node);
            state.monitor.log(node, mirror);
            if state.fanout.has_pending() {
                // The log replaces what came before it: events first.
                let events = state.fanout.take();
                state.out.publish.push(ProxyFrame::Events { events });
            }
            state.out.publish.push(ProxyFrame::Log { node, snapshot_index, snapshot_term, skipped, entries });
        }
        ServerOutbound::Error { error } => state.note(format!("node {node} reports: {error}")),
        // A proxy never asks for a bootstrap (only `consenso init` does); the driver checked
        // the welcome.
        ServerOutbound::Welcome { .. } | ServerOutbound::Done { .. } => {}
    }
}

fn from_supervisor(state: &mut State, frame: SupervisorOutbound) {
    match frame {
        SupervisorOutbound::Processes { processes, epoch, retired } => {
            // Servers started or stopped since (by any proxy): talk to the ones that joined,
            // stop talking to the ones that left — only servers the supervisor ran (one added
            // with an address is not its business).
            for p in &processes {
                let Some(address) = &p.address else { continue };
                if state.servers.get(&p.node).is_none_or(|s| &s.address != address) {
                    state.servers.insert(p.node, core::ServerView::new(address.clone()));
                    state.out.links.push(LinkChange::Add { node: p.node, address: address.clone() });
                    state.note(format!("node {} joined at {address}", p.node));
                }
            }
            let gone: Vec<NodeId> = state
                .supervisor
                .processes
                .keys()
                .filter(|id| !processes.iter().any(|p| p.node == **id))
                .copied()
                .collect();
            for node in gone {
                if state.servers.remove(&node).is_some() {
                    state.link_lost(node);
                    state.out.links.push(LinkChange::Remove { node });
                    state.note(format!("node {node} left the cluster"));
                }
            }
            state.supervisor.processes = processes.into_iter().map(|p| (p.node, p)).collect();
            state.supervisor.retired = retired.into_iter().collect::<BTreeSet<_>>();
            if state.supervisor.epoch.replace(epoch).is_some_and(|before| before != epoch) {
                // Reset by this proxy or another: what it knew is void.
                state.forget_cluster();
            }
        }
        SupervisorOutbound::Done { id, result } => state.answer_supervisor(id, result),
        SupervisorOutbound::Error { error } => state.note(format!("the supervisor reports: {error}")),
        SupervisorOutbound::Welcome { .. } => {}
    }
}
