//! The cluster as one proxy sees it — for `status` requests, the pages' periodic update and
//! the decisions the proxy makes (who leads, who is a member).

use crate::protocol::{ClusterStatus, HELD_LISTED, HeldMessage, Members, NodeView, ProcessState, TimeStatus};
use crate::raft::{Bug, NodeId, Role, Term};

use super::core::State;

impl State {
    /// The cluster was reset onto empty disks: its logs, statuses, alarms and past are void.
    pub fn forget_cluster(&mut self) {
        self.monitor.reset();
        for server in self.servers.values_mut() {
            server.forget();
        }
        self.fanout.forget();
        self.sent_kv.clear();
        self.publish_status_now();
    }

    /// The whole cluster, as pages and `status` show it.
    pub fn cluster_status(&self) -> ClusterStatus {
        let now = self.now;
        let mut nodes = Vec::new();
        for (id, server) in &self.servers {
            let fresh = server.fresh(now).cloned();
            let process = self.supervisor.processes.get(id);
            let state = match (process, &fresh) {
                (Some(p), _) => p.state,
                (None, Some(_)) => ProcessState::Up,
                (None, None) => ProcessState::Unreachable,
            };
            let known = fresh.as_ref().or_else(|| server.last_status());
            let pid = process.and_then(|p| p.pid).or_else(|| known.map(|s| s.pid)).filter(|p| *p != 0);
            let pid = if state == ProcessState::Crashed { None } else { pid };
            let partitioned = known.is_some_and(|s| s.faults.partitioned());
            nodes.push(NodeView::new(*id, server.address.clone(), pid, state, partitioned, fresh));
        }
        let leader = leader_of(&nodes);
        let mut bugs: Vec<Bug> =
            nodes.iter().filter_map(|n| n.status.as_ref()).flat_map(|s| s.bugs.clone()).collect();
        bugs.sort_by_key(|b| b.name());
        bugs.dedup();
        ClusterStatus {
            term: nodes.iter().filter_map(|n| n.term).max().unwrap_or(0),
            leader,
            time_scale: self.time_scale(),
            proxies: self.settings.proxies.clone(),
            supervised: self.supervisor.up,
            stats: self.stats.summary(now),
            messages_per_s: self
                .servers
                .values()
                .filter(|s| s.fresh(now).is_some())
                .map(|s| s.message_rate)
                .sum(),
            time: self.time_status(&nodes),
            alarms: self.monitor.alarms().to_vec(),
            lesson: self.lesson.status.clone(),
            bugs,
            open_writes: self.open_writes,
            recording: self.settings.recording.clone(),
            members: self.members(false).unwrap_or_default(),
            nodes,
        }
    }

    /// Time across the cluster: stopped if any server's clock is, and every held message.
    fn time_status(&self, nodes: &[NodeView]) -> TimeStatus {
        let reports: Vec<_> = nodes.iter().filter_map(|n| n.status.as_ref()).collect();
        let mut messages: Vec<HeldMessage> = reports
            .iter()
            .flat_map(|s| s.clock.held.iter().filter(|m| !self.gate.was_released(m.id, self.now)).cloned())
            .collect();
        messages.sort_by_key(HeldMessage::send_order);
        messages.truncate(HELD_LISTED);
        let first = reports.first();
        TimeStatus {
            stopped: reports.iter().any(|s| s.clock.stopped),
            held: reports.iter().map(|s| s.clock.held_count).sum(),
            messages,
            latency_ms: first.map_or(0, |s| s.clock.latency_ms),
            jitter_ms: first.map_or(0, |s| s.clock.jitter_ms),
            latency_auto: first.is_none_or(|s| s.faults.latency_ms.is_none()),
        }
    }

    /// The configuration as the leader (else the most advanced server) reports it: the one in
    /// force, or with `committed` the one as of its commit index — what decisions rest on (a
    /// configuration in force may still be cut off by the next leader).
    pub fn members(&self, committed: bool) -> Option<Members> {
        self.servers
            .values()
            .filter_map(|s| s.fresh(self.now))
            .map(|s| {
                let raft = &s.replica.raft;
                let rank = (raft.role == Role::Leader, raft.term, raft.commit, raft.last_index);
                let members = if committed {
                    Members {
                        voters: raft.committed_voters.clone(),
                        learners: raft.committed_learners.clone(),
                    }
                } else {
                    Members { voters: raft.voters.clone(), learners: raft.learners.clone() }
                };
                (rank, members)
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, members)| members)
    }

    /// Reachable servers by what they say they are: the leader of the highest term, and the
    /// others — leaving out `avoid`.
    pub fn roles(&self, avoid: impl Fn(NodeId) -> bool) -> (Option<NodeId>, Vec<NodeId>) {
        let roles: Vec<(NodeId, Role, Term)> = self
            .servers
            .iter()
            .filter(|(id, _)| !avoid(**id))
            .filter_map(|(id, s)| s.role(self.now).map(|(role, term)| (*id, role, term)))
            .collect();
        let leader = roles
            .iter()
            .filter(|(_, role, _)| *role == Role::Leader)
            .max_by_key(|(_, _, t)| *t)
            .map(|(id, _, _)| *id);
        let others = roles.iter().filter(|(id, _, _)| Some(*id) != leader).map(|(id, _, _)| *id).collect();
        (leader, others)
    }
}

/// The leader of the highest term that any reachable server reports.
pub fn leader_of(nodes: &[NodeView]) -> Option<NodeId> {
    nodes.iter().filter(|n| n.role == Some(Role::Leader)).max_by_key(|n| n.term).map(|n| n.id)
}
