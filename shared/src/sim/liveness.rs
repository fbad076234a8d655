//! Liveness: once the faults end, the cluster must get going again. A quarter of the way from
//! the end of a faulted run, the simulator stops injecting faults (and the operator stops
//! changing members), heals the network (no partition, loss or duplication), resumes paused
//! servers and restarts crashed ones.
//! Then, within `LEADER_WITHIN_MS` of cluster time, there must be a leader that has committed an
//! entry of its own term (so it commits); and within `CATCH_UP_WITHIN_MS` more, every member that
//! runs must have applied what that leader had committed — catch-up by AppendEntries or by
//! snapshot. Safety holds whatever happens;
//! this is the promise that something *does* happen.

use super::{SimEvent, Simulation};
use crate::check::{Property, Violation};
use crate::raft::{Index, NodeId, Role};

/// After the faults end, a leader must have committed in its term within this much cluster time.
const LEADER_WITHIN_MS: u64 = 4_000;
/// ...and every running member must have applied that leader's commit within this much more.
const CATCH_UP_WITHIN_MS: u64 = 6_000;
/// How often the checks look (a run ends as soon as both hold).
const LOOK_EVERY_MS: u64 = 100;
/// A run extends past its step budget for the calm period, but never beyond this many times it.
pub(super) const CALM_STEP_FACTOR: u64 = 10;

/// Where the calm period of a run stands.
#[derive(Debug, Default)]
pub(super) struct Calm {
    /// Faults ended at this time; the highest commit index any server had then.
    pub since: Option<(u64, Index)>,
    /// The leader's commit index at the first check, which every member must reach, and by when.
    pub target: Option<(NodeId, Index, u64)>,
    /// Both checks done: the run may end.
    pub checked: bool,
}

impl Simulation {
    /// Whether the run is in its calm period (no more faults, no more membership changes).
    pub(super) fn calm(&self) -> bool {
        self.calm.since.is_some()
    }

    /// Ends the faults: heals, resumes, restarts, and schedules the liveness checks.
    pub(super) fn begin_calm(&mut self) {
        let high = self.up_rafts().map(|(_, r)| r.commit_index()).max().unwrap_or(0);
        self.calm.since = Some((self.now, high));
        self.network.heal();
        // Loss and duplication are faults too; reordering and delay are just a network.
        self.network.faults.drop_ppm = 0;
        self.network.faults.duplicate_ppm = 0;
        for id in 1..=self.provisioned as NodeId {
            if self.node(id).paused {
                self.node(id).paused = false;
                self.run_node(id);
            }
            if !self.node(id).is_up() {
                self.start_node(id);
            }
        }
        self.note("CALM: faults end; network healed, every server running".to_string());
        self.schedule(self.now + LOOK_EVERY_MS, SimEvent::CheckLiveness);
    }

    /// The two liveness checks (see the module documentation), looked at every `LOOK_EVERY_MS`
    /// until they hold or their time is up.
    pub(super) fn check_liveness(&mut self) {
        let (since, high) = self.calm.since.expect("checks come after the calm began");
        match self.calm.target {
            None => {
                let leader = self
                    .up_rafts()
                    .filter(|(_, r)| r.role() == Role::Leader)
                    .max_by_key(|(_, r)| r.term())
                    .map(|(id, r)| (id, r.commit_index(), r.term_at(r.commit_index()) == Some(r.term())));
                match leader {
                    Some((id, commit, true)) => {
                        self.calm.target = Some((id, commit, self.now + CATCH_UP_WITHIN_MS));
                        self.schedule(self.now, SimEvent::CheckLiveness);
                    }
                    _ if self.now < since + LEADER_WITHIN_MS => {
                        self.schedule(self.now + LOOK_EVERY_MS, SimEvent::CheckLiveness);
                    }
                    _ => self.liveness_violation(format!(
                        "{} ms after the faults ended (at {since} ms, commit index {high}) no leader had committed \
                         an entry of its term (leader, commit, committed in its term: {leader:?})",
                        LEADER_WITHIN_MS
                    )),
                }
            }
            Some((leader, target, deadline)) => {
                let behind: Vec<(NodeId, Index)> = self
                    .members_that_run()
                    .into_iter()
                    .filter_map(|id| {
                        let applied = self.node(id).replica.as_ref()?.kv().applied();
                        (applied < target).then_some((id, applied))
                    })
                    .collect();
                if behind.is_empty() {
                    self.calm.checked = true;
                } else if self.now < deadline {
                    self.schedule(self.now + LOOK_EVERY_MS, SimEvent::CheckLiveness);
                } else {
                    self.liveness_violation(format!(
                        "{} ms after leader {leader} had committed index {target}, members still had not applied \
                         it: {behind:?} (node, applied)",
                        CATCH_UP_WITHIN_MS
                    ));
                }
            }
        }
    }

    /// Members of the configuration in force on the highest-term leader whose process runs.
    fn members_that_run(&self) -> Vec<NodeId> {
        let Some((_, leader)) =
            self.up_rafts().filter(|(_, r)| r.role() == Role::Leader).max_by_key(|(_, r)| r.term())
        else {
            return Vec::new();
        };
        leader.membership().members().filter(|id| self.nodes[*id as usize - 1].is_up()).collect()
    }

    fn up_rafts(&self) -> impl Iterator<Item = (NodeId, &crate::raft::Raft)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.replica.as_ref().map(|r| (i as NodeId + 1, r.raft())))
    }

    fn liveness_violation(&mut self, detail: String) {
        self.calm.checked = true;
        if self.report.violation.is_none() {
            self.note(format!("VIOLATION: Liveness: {detail}"));
            self.report.violation = Some(Violation { property: Property::Liveness, step: self.step, detail });
        }
    }
}
