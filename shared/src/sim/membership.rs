//! The operator: in the seeds that have one, it adds and removes servers at random while
//! every fault goes on — one request at a time, to whichever server leads, as an
//! administrator would. New servers get fresh ids and empty disks. A server a leader reports
//! as restarted on an empty disk (`Event::DiskLost`) is repaired the safe way: removed, then
//! added again under the same id, as a learner (what an operator does for a StatefulSet pod
//! that lost its volume). Its choices come from a generator of their own, so seeds without an
//! operator run exactly as they did before there was one.

use super::node::Input;
use super::{SimEvent, Simulation};
use crate::raft::{MembershipChange, NodeId, Role};
use crate::replica::{Reply, Request};

/// Servers the operator may add over a run, beyond the first configuration.
pub(super) const SPARE_SERVERS: usize = 8;
/// The operator keeps between these many members.
const FEWEST_MEMBERS: usize = 2;
const MOST_MEMBERS: usize = 7;

impl Simulation {
    /// The operator's regular round: one change, and the next round scheduled.
    pub(super) fn operate(&mut self) {
        if self.calm() {
            return;
        }
        let next = self.membership_rng.range(100, 500);
        self.schedule(self.now + next, SimEvent::Operate);
        self.ask_for_a_change(false);
    }

    /// Asks the leader for one change: an addition or a removal at random, or a removal when
    /// `remove` (the changes that move the majority; an added learner does not).
    pub(super) fn ask_for_a_change(&mut self, remove: bool) {
        if self.calm() {
            return;
        }
        let Some(leader) = self.current_leader() else { return };
        let config = self.node(leader).replica.as_ref().expect("a leader is up").raft().membership().clone();
        let members: Vec<NodeId> = config.members().collect();
        if let Some(change) = self.repair_a_lost_disk(&config) {
            self.note(format!("operator asks n{leader}: {change:?} (a server that lost its disk)"));
            self.node(leader).inbox.push_back(Input::Operator(Request::ChangeMembership { change }));
            return self.run_node(leader);
        }
        let spare = (self.provisioned < self.nodes.len()).then_some(self.provisioned as NodeId + 1);
        let grow = !remove && members.len() < MOST_MEMBERS && self.membership_rng.chance(500_000);
        let change = match spare {
            Some(id) if grow || (!remove && members.len() <= FEWEST_MEMBERS) => {
                self.provisioned += 1;
                self.start_node(id);
                self.note(format!("operator: new server n{id} started, empty disk"));
                // An address like a real one, so that it crosses the wire format too.
                MembershipChange::AddLearner { id, address: format!("10.0.0.{id}:7000") }
            }
            _ if members.len() > FEWEST_MEMBERS => {
                let id = members[self.membership_rng.below(members.len() as u64) as usize];
                // Removing an admitted voter where others lost their disks could leave a
                // configuration without an admitted majority: a cluster that never recovers.
                if !self.majority_admitted_without(id) {
                    return;
                }
                self.removals_asked.insert(id);
                MembershipChange::Remove { id }
            }
            _ => return,
        };
        self.note(format!("operator asks n{leader}: {change:?}"));
        self.node(leader).inbox.push_back(Input::Operator(Request::ChangeMembership { change }));
        self.run_node(leader);
    }

    /// The next step for a server reported to have lost its disk: remove it while it is a
    /// member; once it is not, add it back (its process is still running, unadmitted).
    fn repair_a_lost_disk(&mut self, config: &crate::raft::Configuration) -> Option<MembershipChange> {
        let lost = self.lost_disks.iter().copied().next()?;
        if config.is_member(lost) {
            return (config.voters.len() > 1 || !config.voters.contains(&lost))
                .then_some(MembershipChange::Remove { id: lost });
        }
        self.lost_disks.remove(&lost);
        Some(MembershipChange::AddLearner { id: lost, address: format!("10.0.0.{lost}:7000") })
    }

    /// A leader said a voter came back on an empty disk.
    pub(super) fn note_lost_disk(&mut self, event: &crate::event::Event) {
        if let (true, crate::event::Event::DiskLost { node }) = (self.operator, event) {
            self.lost_disks.insert(*node);
        }
    }

    pub(super) fn operator_heard(&mut self, from: NodeId, reply: Reply) {
        if matches!(reply, Reply::MembershipChanged { .. }) {
            self.report.membership_changes += 1;
        }
        self.note(format!("operator hears from n{from}: {reply:?}"));
    }

    /// A new leader is the moment a change is most likely to go wrong (it may not yet have
    /// committed an entry of its term): sometimes the operator asks at once.
    pub(super) fn maybe_operate_at_critical_point(&mut self, event: &crate::event::Event) {
        let elected = matches!(event, crate::event::Event::RoleChanged { role: Role::Leader, .. });
        if self.operator && elected && self.membership_rng.chance(1_000_000) {
            let after = self.membership_rng.range(0, 3);
            self.schedule(self.now + after, SimEvent::OperateNow { remove: true });
        }
    }

    /// The leader of the highest term among the servers that are up.
    fn current_leader(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.replica.as_ref().map(|r| (i as NodeId + 1, r.raft())))
            .filter(|(_, raft)| raft.role() == Role::Leader)
            .max_by_key(|(_, raft)| raft.term())
            .map(|(id, _)| id)
    }
}
