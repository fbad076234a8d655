//! The servers of the in-page cluster and the network between them: one clock for the cluster
//! (slow motion stretches it; each server's own clock is it plus an offset, as a timer fired
//! on one server leaves it ahead), delivery in time order, and what the servers tell a proxy —
//! replies, events, statuses and logs — gathered as the `ServerOutbound` frames real servers
//! send.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::{LossReason, Observed};
use crate::protocol::{FaultSettings, ServerOutbound, SupervisorOutbound};
use crate::raft::{Bugs, Config, Millis, NodeId};
use crate::rng::Rng;
use crate::transit::InTransit;

use super::server::Server;

/// A tab in the background gets no timers; when it comes back, at most this much real time
/// is simulated at once.
const MAX_CATCH_UP_MS: f64 = 2_000.0;
/// Work done in one `advance` at most (deliveries and timers), so that a page never hangs.
const MAX_STEPS_PER_ADVANCE: usize = 20_000;
/// Messages a paused server holds at most (its socket buffers); later ones are lost.
const PAUSED_INBOX: usize = 1_000;
/// How often each server reports its status, in real milliseconds (as real ones do).
const STATUS_EVERY_MS: f64 = 250.0;

pub(super) struct Cluster {
    pub servers: BTreeMap<NodeId, Server>,
    pub bugs: Bugs,
    /// Whether elections start with a pre-vote round (`?sim&prevote=off` leaves it out).
    pub pre_vote: bool,
    pub rng: Rng,
    /// The cluster's clock, in ms of cluster time.
    pub now: Millis,
    /// Fractions of a millisecond not yet added to `now` (slow motion).
    carry: f64,
    /// The page's clock at the last `advance`.
    pub wall: Option<f64>,
    next_status: f64,
    /// Ordering stamps for messages, across servers.
    stamp: u64,
    /// Stepped messages: delivered at a real instant, whatever the clocks say.
    pub travelling: Vec<(f64, InTransit)>,
    /// The servers of the first configuration.
    pub voters: Vec<NodeId>,
    /// Servers that left for good: their ids are not given again.
    pub retired: BTreeSet<NodeId>,
    /// Resets so far (told to the proxy: what it knew before is void).
    pub epoch: u64,
    /// Frames for the proxy, from servers and from the supervisor.
    pub outbound: Vec<(NodeId, ServerOutbound)>,
    pub supervisor_out: Vec<SupervisorOutbound>,
    /// Links that came up (a server started) or dropped (it crashed or stopped).
    pub links: Vec<(NodeId, bool)>,
    /// Numbers of the event frames each server sent since it started.
    events_seq: BTreeMap<NodeId, u64>,
}

impl Cluster {
    pub fn new(count: usize, seed: u64, bugs: Bugs, pre_vote: bool) -> Cluster {
        let mut cluster = Cluster {
            servers: BTreeMap::new(),
            bugs,
            pre_vote,
            rng: Rng::new(seed),
            now: 0,
            carry: 0.0,
            wall: None,
            next_status: 0.0,
            stamp: 0,
            travelling: Vec::new(),
            voters: Vec::new(),
            retired: BTreeSet::new(),
            epoch: 0,
            outbound: Vec::new(),
            supervisor_out: Vec::new(),
            links: Vec::new(),
            events_seq: BTreeMap::new(),
        };
        cluster.boot(count, FaultSettings::normal());
        cluster
    }

    /// Every server on an empty disk, with `faults`, the network whole.
    pub fn boot(&mut self, count: usize, faults: FaultSettings) {
        for id in self.servers.keys().copied().collect::<Vec<_>>() {
            self.links.push((id, false));
        }
        self.servers = (1..=count as NodeId).map(|id| (id, Server::new(id, faults.clone()))).collect();
        self.voters = self.servers.keys().copied().collect();
        self.retired.clear();
        self.travelling.clear();
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
        cfg.pre_vote = self.pre_vote;
        cfg
    }

    /// Starts (or restarts) a server from its disk; the proxy's link to it comes up.
    pub fn start_server(&mut self, id: NodeId) {
        let (cfg, seed, now) = (self.config(id), self.rng.next_u64(), self.now);
        let server = self.servers.get_mut(&id).expect("a known server");
        server.start(cfg, seed, now);
        self.events_seq.insert(id, 0);
        self.links.push((id, true));
        self.work(id);
        self.send_log(id);
        self.send_status(id);
    }

    pub fn crash(&mut self, id: NodeId) {
        if let Some(server) = self.servers.get_mut(&id) {
            if server.is_up() {
                server.crash();
                self.links.push((id, false));
            }
        }
    }

    /// Whether the running servers' time is stopped (the proxy stops them all at once; one that
    /// is down gets the settings in force when it restarts).
    pub fn stopped(&self) -> bool {
        self.servers.values().filter(|s| s.is_up()).any(|s| s.faults.time_stopped)
    }

    /// The time scale in force (the proxy sets the same on every server).
    pub fn time_scale(&self) -> f64 {
        self.servers.values().find(|s| s.is_up()).map_or(1.0, |s| s.faults.time_scale)
    }

    /// Moves the cluster to the page's clock `wall_ms`: timers fire, messages arrive, and each
    /// server reports its status every quarter second.
    pub fn advance(&mut self, wall_ms: f64) {
        let elapsed = self.wall.map_or(0.0, |w| (wall_ms - w).clamp(0.0, MAX_CATCH_UP_MS));
        self.wall = Some(self.wall.map_or(wall_ms, |w| w.max(wall_ms)));
        // While time is stopped no timer fires and nothing comes due: only steps move it.
        if !self.stopped() {
            self.carry += elapsed / self.time_scale().max(1e-3);
            let whole = self.carry.floor();
            self.carry -= whole;
            self.run_until(self.now + whole as Millis);
        }
        self.land_travelling(wall_ms);
        self.flush_events();
        if wall_ms >= self.next_status {
            self.next_status = wall_ms + STATUS_EVERY_MS;
            for id in self.servers.keys().copied().collect::<Vec<_>>() {
                self.send_status(id);
            }
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

    /// Fires due timers and delivers due messages at the current time.
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

    pub fn fire_timers(&mut self) {
        for id in self.servers.keys().copied().collect::<Vec<_>>() {
            let now = self.now;
            let Some(server) = self.servers.get_mut(&id) else { continue };
            if server.is_running() {
                let local = server.now(now);
                server.replica.as_mut().expect("running").tick(local);
                self.work(id);
            }
        }
    }

    /// A message reaches its destination — or is lost there, with the reason.
    pub fn deliver(&mut self, arriving: InTransit) {
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

    /// Lets a server finish what it has to do; its answers go to the proxy.
    pub fn work(&mut self, id: NodeId) {
        let now = self.now;
        let answers = self.servers.get_mut(&id).expect("a known server").work(now, &mut self.stamp);
        for (request, reply) in answers {
            self.outbound.push((id, ServerOutbound::Reply { id: request, reply }));
        }
    }

    pub fn land_travelling(&mut self, wall_ms: f64) {
        let (landed, still): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.travelling).into_iter().partition(|(at, _)| *at <= wall_ms);
        self.travelling = still;
        for (_, message) in landed {
            self.deliver(message);
        }
    }

    /// Every server's events since the last call, as one frame each.
    pub fn flush_events(&mut self) {
        let now = self.now;
        for (id, server) in &mut self.servers {
            let events: Vec<Observed> = server.take_events(now);
            if events.is_empty() {
                continue;
            }
            let seq = self.events_seq.entry(*id).or_default();
            *seq += 1;
            self.outbound.push((*id, ServerOutbound::Events { events, seq: *seq }));
        }
    }

    /// A server's log, as it sends it to a proxy that subscribes (after a start or restart).
    pub fn send_log(&mut self, id: NodeId) {
        let Some(log) = self.servers.get(&id).and_then(Server::log) else { return };
        self.flush_events();
        self.events_seq.insert(id, 0);
        self.outbound.push((
            id,
            ServerOutbound::Log {
                snapshot_index: log.snapshot_index,
                snapshot_term: log.snapshot_term,
                skipped: log.skipped,
                entries: log.entries,
            },
        ));
    }

    /// A running server's status report (a paused or crashed one sends none).
    pub fn send_status(&mut self, id: NodeId) {
        let Some(server) = self.servers.get(&id).filter(|s| s.is_running()) else { return };
        let Some(status) = server.status(self.now) else { return };
        self.outbound.push((id, ServerOutbound::Status { status: Box::new(status) }));
    }
}
