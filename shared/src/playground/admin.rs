//! Admin commands on the playground: the same `AdminCommand`s a proxy takes, with the same
//! meaning, acting on simulated processes and a simulated network.

use std::collections::BTreeSet;

use crate::event::Event;
use crate::protocol::{AdminCommand, ApiError, ErrorKind, MAX_DELAY_MS};
use crate::raft::{Config, MembershipChange, MessageId, NodeId};
use crate::replica::Request;

use super::clients::AnswerTo;

use super::{Core, STEP_TRAVEL_MS};

/// Steps in one command at most (as the proxy).
const MAX_STEPS: u32 = 200;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message)
}

impl Core {
    fn known(&self, node: NodeId) -> Result<(), ApiError> {
        if self.servers.contains_key(&node) {
            Ok(())
        } else {
            let ids: Vec<String> = self.servers.keys().map(|i| i.to_string()).collect();
            Err(bad(format!("there is no node {node} (nodes: {})", ids.join(", "))))
        }
    }

    /// A known server whose process runs (paused or not).
    fn up(&self, node: NodeId) -> Result<(), ApiError> {
        self.known(node)?;
        if self.servers[&node].is_up() { Ok(()) } else { Err(bad(format!("node {node} is not running"))) }
    }

    /// The servers a fault applies to: one, or all.
    fn targets(&self, node: Option<NodeId>) -> Result<Vec<NodeId>, ApiError> {
        match node {
            Some(n) => self.known(n).map(|_| vec![n]),
            None => Ok(self.servers.keys().copied().collect()),
        }
    }

    /// Copies the cluster-wide settings into every server's.
    pub(super) fn sync_common(&mut self) {
        for server in self.servers.values_mut() {
            server.faults.time_scale = self.common.time_scale;
            server.faults.latency_ms = self.common.latency_ms;
            server.faults.jitter_ms = self.common.jitter_ms;
            server.faults.max_entries = self.common.max_entries;
            if let Some(replica) = &mut server.replica {
                let default = Config::new(server.id, vec![]).max_entries_per_message;
                replica.set_max_entries_per_message(self.common.max_entries.map_or(default, |n| n as usize));
            }
        }
    }

    pub(super) fn admin(&mut self, command: AdminCommand) -> Result<String, ApiError> {
        let description = command.describe();
        let result = self.act(command);
        if result.is_ok() {
            self.events.push(crate::event::Observed {
                node: 0,
                at: self.now,
                event: Event::Fault { description },
            });
        }
        result
    }

    fn act(&mut self, command: AdminCommand) -> Result<String, ApiError> {
        match command {
            AdminCommand::Crash { node } => {
                self.known(node)?;
                self.server(node).crash();
                Ok(format!("node {node} crashed"))
            }
            AdminCommand::Restart { node } => {
                self.known(node)?;
                // As the supervisor does: a running (or paused) process is killed first.
                if self.servers[&node].is_up() {
                    self.server(node).crash();
                }
                self.start_server(node);
                Ok(format!("node {node} restarted from its disk"))
            }
            AdminCommand::Pause { node } => {
                self.up(node)?;
                self.server(node).paused = true;
                Ok(format!("node {node} paused"))
            }
            AdminCommand::Resume { node } => {
                self.up(node)?;
                let inbox = {
                    let server = self.server(node);
                    server.paused = false;
                    std::mem::take(&mut server.inbox)
                };
                let now = self.now;
                let server = self.server(node);
                if let Some(replica) = &mut server.replica {
                    let local = now + server.skew;
                    for message in inbox {
                        replica.step(local, message);
                    }
                }
                self.work(node);
                Ok(format!("node {node} resumed"))
            }
            AdminCommand::Partition { groups } => {
                for n in groups.iter().flatten() {
                    self.known(*n)?;
                }
                let all: BTreeSet<NodeId> = self.servers.keys().copied().collect();
                let groups = crate::protocol::partition_groups(&all, groups)?;
                for (group, outside) in &groups {
                    for node in group {
                        let faults = &mut self.server(*node).faults;
                        faults.blocked_to = outside.clone();
                        faults.blocked_from = outside.clone();
                    }
                }
                Ok(format!(
                    "partitioned into {}",
                    crate::protocol::describe_groups(groups.iter().map(|(g, _)| g))
                ))
            }
            AdminCommand::Block { from, to } => {
                self.known(from)?;
                self.known(to)?;
                if from == to {
                    return Err(bad("a node cannot be cut off from itself"));
                }
                let sender = &mut self.server(from).faults;
                if !sender.blocked_to.contains(&to) {
                    sender.blocked_to.push(to);
                }
                let receiver = &mut self.server(to).faults;
                if !receiver.blocked_from.contains(&from) {
                    receiver.blocked_from.push(from);
                }
                Ok(format!("messages from node {from} to node {to} are now lost"))
            }
            AdminCommand::Heal => {
                for server in self.servers.values_mut() {
                    let faults = &mut server.faults;
                    faults.blocked_to.clear();
                    faults.blocked_from.clear();
                    faults.drop_rate = 0.0;
                    faults.delay_ms = 0;
                }
                Ok("network healed: no partitions, loss or delay".to_string())
            }
            AdminCommand::Drop { node, rate } => {
                if !(0.0..=1.0).contains(&rate) {
                    return Err(bad(format!("drop rate {rate} is not between 0 and 1")));
                }
                for n in self.targets(node)? {
                    self.server(n).faults.drop_rate = rate;
                }
                Ok(format!("dropping {:.0}% of messages", rate * 100.0))
            }
            AdminCommand::Delay { node, ms } => {
                if ms > MAX_DELAY_MS {
                    return Err(bad(format!("delay is limited to {MAX_DELAY_MS} ms")));
                }
                for n in self.targets(node)? {
                    self.server(n).faults.delay_ms = ms;
                }
                Ok(format!("delaying messages by {ms} ms"))
            }
            AdminCommand::TimeScale { scale } => {
                if !scale.is_finite() || !(0.1..=1000.0).contains(&scale) {
                    return Err(bad("time scale must be between 0.1 and 1000"));
                }
                self.common.time_scale = scale;
                self.sync_common();
                Ok(format!("time runs {scale}× slower"))
            }
            AdminCommand::Latency { ms, jitter_ms } => {
                if ms.unwrap_or(0) > MAX_DELAY_MS || jitter_ms.unwrap_or(0) > MAX_DELAY_MS {
                    return Err(bad(format!("latency and jitter are limited to {MAX_DELAY_MS} ms")));
                }
                self.common.latency_ms = ms;
                self.common.jitter_ms = jitter_ms;
                self.sync_common();
                Ok(match ms {
                    Some(ms) => format!("latency {ms} ms"),
                    None => "automatic latency".to_string(),
                })
            }
            AdminCommand::BatchSize { entries } => {
                self.common.max_entries = entries.map(|n| n.clamp(1, 100_000));
                self.sync_common();
                Ok(match entries {
                    Some(n) => format!("at most {n} entries per AppendEntries"),
                    None => "default AppendEntries batches".to_string(),
                })
            }
            AdminCommand::TransferLeadership { to } => {
                self.known(to)?;
                let leader = self.leader().ok_or_else(|| {
                    ApiError::new(ErrorKind::NoLeader, "there is no leader to hand over from")
                })?;
                let now = self.now;
                let server = self.server(leader);
                let local = server.now(now);
                if let Some(replica) = &mut server.replica {
                    replica
                        .transfer_leadership(local, to)
                        .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("{e:?}")))?;
                }
                self.work(leader);
                Ok(format!("asked leader {leader} to hand over to node {to}"))
            }
            AdminCommand::StopTime => {
                if !self.stopped {
                    self.stopped = true;
                    for server in self.servers.values_mut().filter(|s| s.is_up()) {
                        server.events.push(Event::ClockStopped);
                    }
                }
                Ok("time stopped: no timer fires, messages are held".to_string())
            }
            AdminCommand::StartTime => {
                if self.stopped {
                    self.stopped = false;
                    for server in self.servers.values_mut().filter(|s| s.is_up()) {
                        server.events.push(Event::ClockStarted);
                    }
                }
                Ok("time runs".to_string())
            }
            AdminCommand::Step { count } => {
                if count == 0 || count > MAX_STEPS {
                    return Err(bad(format!("step count must be 1 to {MAX_STEPS}")));
                }
                self.act(AdminCommand::StopTime)?;
                // A message still on its way from the previous step arrives first, as the
                // proxy's step waits for its journey: two quick steps keep their order.
                self.land_travelling(f64::INFINITY);
                let mut done = Vec::new();
                for _ in 0..count {
                    done.push(self.step_once());
                }
                Ok(done.join("; "))
            }
            AdminCommand::DeliverMessage { id } => {
                if self.release(id) {
                    Ok(format!("message #{id} delivered"))
                } else {
                    Err(not_held(id))
                }
            }
            AdminCommand::DropMessage { id } => {
                let dropped = self.servers.values_mut().any(|s| s.transit.drop_message(id));
                let travelling = self.travelling.iter().position(|(_, m)| m.message.id == id);
                if let Some(at) = travelling {
                    let (_, message) = self.travelling.remove(at);
                    if let Some(sender) = self.servers.get_mut(&message.message.from) {
                        sender.transit.lost(&message.message, crate::event::LossReason::Dropped);
                    }
                } else if !dropped {
                    return Err(not_held(id));
                }
                Ok(format!("message #{id} dropped"))
            }
            AdminCommand::FireTimer { node } => {
                self.known(node)?;
                if self.servers[&node].paused {
                    return Err(bad(format!("node {node} is paused: its clock does not run")));
                }
                let now = self.now;
                let server = self.server(node);
                let Some(replica) = &mut server.replica else {
                    return Err(ApiError::new(ErrorKind::BadRequest, format!("node {node} is down")));
                };
                let local = now + server.skew;
                let by = replica.next_deadline().saturating_sub(local);
                server.skew += by;
                server.events.push(Event::ClockAdvanced { by });
                replica.tick(local + by);
                self.work(node);
                Ok(format!("node {node}'s clock moved {by} ms to its next timer"))
            }
            AdminCommand::Advance { node, ms } => {
                if ms > MAX_DELAY_MS * 10 {
                    return Err(bad("advance by at most 100000 ms at a time"));
                }
                for n in self.targets(node)? {
                    let server = self.server(n);
                    server.skew += ms;
                    server.events.push(Event::ClockAdvanced { by: ms });
                }
                self.fire_timers();
                Ok(format!("clocks moved {ms} ms"))
            }
            AdminCommand::Snapshot { node } => {
                for n in self.targets(node)? {
                    let server = self.server(n);
                    if let Some(snapshot) = server.replica.as_mut().and_then(|r| r.compact_now()) {
                        server.disk.compact(&snapshot);
                    }
                    self.work(n);
                }
                Ok("snapshot taken".to_string())
            }
            AdminCommand::Reset => {
                // The first configuration again, default batches, no request left waiting.
                let count = self.voters.len();
                self.common.max_entries = None;
                self.ops.clear();
                self.lesson_answers.clear();
                self.boot(count);
                Ok(format!("the cluster restarted: {count} servers on empty disks"))
            }
            AdminCommand::OpenWrites { .. } => Ok("everyone may write in the simulated cluster".to_string()),
            AdminCommand::Record { .. } => Err(ApiError::new(
                ErrorKind::NotSupported,
                "a simulated cluster has no disk to record to: the page's download button saves its last minutes",
            )),
            AdminCommand::Lesson { .. } => {
                Err(ApiError::new(ErrorKind::BadRequest, "lessons are started through the playground"))
            }
            AdminCommand::AddServer { node, .. } => {
                if self.servers.len() >= super::MAX_SERVERS {
                    return Err(bad(format!(
                        "the simulated cluster has at most {} servers",
                        super::MAX_SERVERS
                    )));
                }
                let id = node.unwrap_or(self.highest_id + 1);
                if self.servers.contains_key(&id) || id <= self.retired_below(id) {
                    return Err(bad(format!("node {id} is or was a member: a new server needs a new id")));
                }
                self.highest_id = self.highest_id.max(id);
                self.servers.insert(id, super::Server::new(id, self.common.clone()));
                self.start_server(id);
                let change = MembershipChange::AddLearner { id, address: super::server::address(id) };
                self.submit(0, Request::ChangeMembership { change }, AnswerTo::Nobody, None);
                Ok(format!(
                    "node {id} started on an empty disk and joins as a learner; the leader makes it a voter once \
                     it has caught up"
                ))
            }
            AdminCommand::RemoveServer { node } => {
                self.known(node)?;
                let change = MembershipChange::Remove { id: node };
                self.submit(0, Request::ChangeMembership { change }, AnswerTo::Nobody, None);
                Ok(format!("node {node} leaves the configuration (a leader hands over first), then stops"))
            }
        }
    }

    /// Ids of servers that left are never used again (a returning id would vote twice).
    fn retired_below(&self, id: NodeId) -> NodeId {
        if self.retired.contains(&id) { id } else { 0 }
    }

    /// A server that left the configuration stops, as the supervisor stops its process.
    pub(super) fn retire(&mut self, id: NodeId) {
        if let Some(mut server) = self.servers.remove(&id) {
            server.crash();
            self.events.extend(server.take_events(self.now));
            self.retired.insert(id);
        }
    }

    fn server(&mut self, id: NodeId) -> &mut super::Server {
        self.servers.get_mut(&id).expect("checked by known()")
    }

    /// One step: the oldest held message sets off on a short, visible journey; with nothing
    /// held, the clocks move to the next timer.
    fn step_once(&mut self) -> String {
        let oldest = self
            .servers
            .values()
            .flat_map(|s| s.transit.queued().into_iter().map(|t| (t.stamp, t.message.id)))
            .min();
        match oldest {
            Some((_, id)) => {
                self.release(id);
                format!("message #{id} released")
            }
            None => {
                let next = self.servers.values().filter_map(|s| s.next_wake()).min();
                let Some(at) = next else { return "nothing to do".to_string() };
                let by = at.saturating_sub(self.now);
                self.now = self.now.max(at);
                for server in self.servers.values_mut().filter(|s| s.is_up()) {
                    server.events.push(Event::ClockAdvanced { by });
                }
                self.fire_timers();
                format!("clocks moved {by} ms to the next timer")
            }
        }
    }

    /// Fires the timers due on each server's clock (time stopped or not).
    pub(super) fn fire_timers(&mut self) {
        let ids: Vec<NodeId> = self.servers.keys().copied().collect();
        for id in ids {
            let now = self.now;
            let Some(server) = self.servers.get_mut(&id) else { continue };
            if server.is_running() {
                let local = server.now(now);
                server.replica.as_mut().expect("running").tick(local);
                self.work(id);
            }
        }
    }

    /// Takes a held message out of its sender's queue to arrive after a visible journey.
    fn release(&mut self, id: MessageId) -> bool {
        let travel = STEP_TRAVEL_MS as u64;
        let found = self.servers.values_mut().find_map(|s| s.transit.release(id, travel));
        let Some(message) = found else { return false };
        let at = self.wall.unwrap_or(0.0) + STEP_TRAVEL_MS;
        self.travelling.push((at, message));
        true
    }
}

fn not_held(id: MessageId) -> ApiError {
    ApiError::new(
        ErrorKind::BadRequest,
        format!("message #{id} is not on its way (delivered, lost or unknown)"),
    )
}
