//! The proxies between the clients and the servers: real proxy cores (`crate::proxy`), as
//! `consenso proxy` runs them, wired to the simulated servers and clients. A proxy may crash
//! (what it held is gone; its clients fail over to another) and comes back empty, as a
//! restarted process does.
//!
//! What crosses between a proxy and a server goes through the JSON wire format, over a link
//! like the real one, a WebSocket: delayed, never lost or partitioned — but a crash on either
//! side drops it, with what was on it. Servers report their status to every proxy four times a second, as real ones
//! do; a paused or crashed server stops reporting, and a crash drops its links.

use std::collections::BTreeMap;

use super::client::SimClient;
use super::node::Input;
use super::{SimEvent, Simulation};
use crate::event::{Event, Observed};
use crate::kv::KvStore;
use crate::protocol::{ClientFrame, FaultSettings, ServerInbound, ServerOutbound, ServerStatus};
use crate::proxy::{ConnId, Proxy, Settings};
use crate::raft::{Index, Millis, NodeId, Payload};
use crate::replica::AppliedEntry;

/// How often a server reports its status to the proxies (as `consenso server` does).
pub(super) const STATUS_EVERY_MS: Millis = 250;

pub(super) struct SimProxy {
    /// `None` while crashed.
    pub core: Option<Proxy>,
    /// Bumped by every crash: frames meant for an earlier life are dropped.
    pub incarnation: u64,
    /// The wake-up scheduled for it, if any.
    wake: Option<Millis>,
    /// When the last frame from each server reaches it: a link is a WebSocket, whose frames
    /// arrive in the order they left.
    last_from: BTreeMap<NodeId, Millis>,
}

impl SimProxy {
    pub fn new() -> SimProxy {
        SimProxy { core: None, incarnation: 0, wake: None, last_from: BTreeMap::new() }
    }
}

impl Simulation {
    fn proxy_settings(&self) -> Settings {
        let servers = (1..=self.nodes.len() as NodeId).map(|id| (id, format!("n{id}"))).collect();
        Settings {
            proxies: (1..=self.proxies.len()).map(|p| format!("proxy-{p}")).collect(),
            servers,
            supervised: false,
            open_writes: true,
            recording: None,
            bugs: self.cfg.bugs,
        }
    }

    /// Starts (or restarts) proxy `p`, empty, with links to every server that runs.
    pub(super) fn start_proxy(&mut self, p: usize) {
        let mut core = Proxy::new(self.proxy_settings(), self.now);
        for id in 1..=self.nodes.len() as NodeId {
            if self.node(id).is_up() {
                core.link(self.now, id, true);
            }
        }
        self.proxies[p].core = Some(core);
        self.proxies[p].wake = None;
        self.drain_proxy(p);
    }

    /// Proxy `p`'s process dies: requests it routed are orphaned (servers still answer them,
    /// to nobody) and its clients' connections drop.
    pub(super) fn crash_proxy(&mut self, p: usize, restart_after: Millis) {
        if self.proxies[p].core.take().is_none() {
            return;
        }
        self.proxies[p].incarnation += 1;
        self.report.proxy_crashes += 1;
        self.note(format!("proxy {} CRASHED", p + 1));
        for client in 0..self.clients.len() {
            if self.clients[client].proxy == p {
                if let Some((conn, _)) = self.clients[client].conn {
                    let delay = self.rng.range(1, 20);
                    self.schedule(self.now + delay, SimEvent::ConnectionLost { conn });
                }
            }
        }
        self.schedule(self.now + restart_after, SimEvent::ProxyRestart(p));
    }

    /// Gives proxy `p` an input (if it runs), then does what it asks.
    pub(super) fn with_proxy(&mut self, p: usize, input: impl FnOnce(&mut Proxy, Millis)) {
        let now = self.now;
        let Some(core) = self.proxies[p].core.as_mut() else { return };
        input(core, now);
        self.drain_proxy(p);
    }

    /// Carries out what proxy `p` wants done: frames to servers and clients, and its wake-up.
    fn drain_proxy(&mut self, p: usize) {
        let incarnation = self.proxies[p].incarnation;
        let Some(core) = self.proxies[p].core.as_mut() else { return };
        let ready = core.ready();
        for line in ready.log {
            self.note(format!("proxy {}: {line}", p + 1));
        }
        for (node, frame) in ready.to_servers {
            // The simulated servers take requests; faults and time commands are not used here.
            let ServerInbound::Request { id, request } = frame else { continue };
            let request = super::network::wire_round_trip_request(request);
            let input = Input::Request { proxy: p, incarnation, id, request };
            let delay = self.link_delay();
            self.schedule(self.now + delay, SimEvent::DeliverToNode(node, input));
        }
        for (conn, frame) in ready.to_clients {
            let delay = self.link_delay();
            self.schedule(self.now + delay, SimEvent::ToClient { conn, frame });
        }
        if let Some(at) = ready.wake_at {
            let at = at.max(self.now);
            if self.proxies[p].wake.is_none_or(|w| at < w || w < self.now) {
                self.proxies[p].wake = Some(at);
                self.schedule(at, SimEvent::ProxyWake { proxy: p, incarnation, at });
            }
        }
    }

    pub(super) fn proxy_wake(&mut self, p: usize, incarnation: u64, at: Millis) {
        if self.proxies[p].incarnation != incarnation || self.proxies[p].wake != Some(at) {
            return;
        }
        self.proxies[p].wake = None;
        self.with_proxy(p, |proxy, now| proxy.tick(now));
    }

    pub(super) fn proxy_hears_client(
        &mut self,
        p: usize,
        incarnation: u64,
        conn: ConnId,
        frame: ClientFrame,
    ) {
        if self.proxies[p].incarnation != incarnation {
            return;
        }
        self.with_proxy(p, |proxy, now| proxy.client(now, conn, frame));
    }

    pub(super) fn proxy_hears_server(
        &mut self,
        p: usize,
        incarnation: u64,
        node: NodeId,
        server_life: u64,
        frame: ServerOutbound,
    ) {
        if self.proxies[p].incarnation != incarnation
            || self.nodes[node as usize - 1].incarnation != server_life
        {
            return;
        }
        self.with_proxy(p, |proxy, now| proxy.server(now, node, frame));
    }

    /// A server's link to every proxy came up (it started) or dropped (it crashed).
    pub(super) fn links_to(&mut self, node: NodeId, up: bool) {
        for p in 0..self.proxies.len() {
            self.with_proxy(p, |proxy, now| proxy.link(now, node, up));
        }
    }

    /// A server reports its status to every proxy, and plans its next report.
    pub(super) fn report_status(&mut self, id: NodeId, incarnation: u64) {
        let node = &self.nodes[id as usize - 1];
        if !node.is_up() || node.incarnation != incarnation {
            return;
        }
        let next = self.now + STATUS_EVERY_MS;
        self.schedule(next, SimEvent::ReportStatus { node: id, incarnation });
        let node = &self.nodes[id as usize - 1];
        let Some(replica) = node.replica.as_ref().filter(|_| !node.paused) else { return };
        let status = ServerStatus {
            replica: replica.status(),
            pid: 0,
            address: format!("n{id}"),
            now: self.now,
            faults: FaultSettings::normal(),
            kv: None,
            kv_truncated: false,
            rss_bytes: None,
            clock: Default::default(),
            bugs: self.cfg.bugs.iter().collect(),
            hosted: None,
        };
        self.send_to_every_proxy(id, ServerOutbound::Status { status: Box::new(status) });
    }

    /// A server's changes of role reach every proxy in an events frame, as a real server's
    /// do at once (proxies route by them). Its other events are left out: the proxies'
    /// monitors see elections, the simulator's checker sees the rest.
    pub(super) fn roles_to_proxies(&mut self, id: NodeId, events: &[Event]) {
        let roles: Vec<Observed> = events
            .iter()
            .filter(|e| matches!(e, Event::RoleChanged { .. }))
            .map(|event| Observed { node: id, at: self.now, event: event.clone() })
            .collect();
        if roles.is_empty() {
            return;
        }
        let node = &mut self.nodes[id as usize - 1];
        node.events_seq += 1;
        let frame = ServerOutbound::Events { events: roles, seq: node.events_seq };
        self.send_to_every_proxy(id, frame);
    }

    /// A frame from server `node` to every live proxy.
    fn send_to_every_proxy(&mut self, node: NodeId, frame: ServerOutbound) {
        for p in 0..self.proxies.len() {
            if self.proxies[p].core.is_some() {
                self.server_frame(node, p, self.proxies[p].incarnation, frame.clone());
            }
        }
    }

    /// A frame from server `node` to proxy `p`, after the link's delay and never before the
    /// frames it sent earlier.
    pub(super) fn server_frame(&mut self, node: NodeId, p: usize, incarnation: u64, frame: ServerOutbound) {
        let delay = self.link_delay();
        let last = self.proxies[p].last_from.get(&node).copied().unwrap_or(0);
        let at = (self.now + delay).max(last);
        self.proxies[p].last_from.insert(node, at);
        let server_life = self.nodes[node as usize - 1].incarnation;
        self.schedule(at, SimEvent::ToProxyFromServer { proxy: p, incarnation, node, server_life, frame });
    }

    /// How long a frame takes over a client's or a proxy's link.
    pub(super) fn link_delay(&mut self) -> Millis {
        self.rng.range(self.network.faults.min_delay, self.network.faults.max_delay)
    }

    pub(super) fn connection_lost(&mut self, conn: ConnId) {
        let client = SimClient::client_of(conn);
        if self.clients[client].conn.map(|(c, _)| c) == Some(conn) {
            self.fail_over(client);
        }
    }
}

/// The sessions as the log decides them: a store that applies every entry once, in log order,
/// as the first server to apply it does — what a session refused as forgotten is checked
/// against (`Property::LiveSessions`).
#[derive(Default)]
pub(super) struct SessionsSeen {
    pub store: KvStore,
    /// The highest index any server applied (or installed in a snapshot).
    highest: Index,
    registered: u64,
    evicted: u64,
}

impl SessionsSeen {
    pub fn new(capacity: Option<usize>) -> SessionsSeen {
        let mut store = KvStore::default();
        if let Some(capacity) = capacity {
            store.set_session_capacity(capacity);
        }
        SessionsSeen { store, highest: 0, registered: 0, evicted: 0 }
    }

    pub fn applied(&mut self, entries: &[AppliedEntry]) {
        for entry in entries {
            self.highest = self.highest.max(entry.index);
            if entry.index != self.store.applied() + 1 {
                continue;
            }
            match &entry.payload {
                Payload::Command(command) => {
                    self.store.apply(entry.index, command);
                }
                Payload::Register => {
                    let before = self.store.session_count();
                    self.store.register(entry.index);
                    self.registered += 1;
                    if self.store.session_count() <= before {
                        self.evicted += 1;
                    }
                }
                Payload::Noop | Payload::Config(_) => self.store.skip(entry.index),
            }
        }
    }

    pub fn installed(&mut self, index: Index) {
        self.highest = self.highest.max(index);
    }

    /// Sessions registered, and evicted to make room.
    pub fn counts(&self) -> (u64, u64) {
        (self.registered, self.evicted)
    }

    /// Whether it has applied everything any server has.
    pub fn caught_up(&self) -> bool {
        self.store.applied() >= self.highest
    }
}
