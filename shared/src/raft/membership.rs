//! Membership changes, one server at a time (dissertation §4.1–4.3).
//!
//! A configuration is an entry in the log and takes effect on a server as soon as the server
//! appends it, committed or not. Changing one server at a time keeps every majority of the old
//! configuration overlapping every majority of the new one, so no two leaders can be elected in
//! one term by disjoint majorities — provided a leader never starts a change while another is
//! uncommitted and, the correction published after the dissertation (raft-dev, 2015), never
//! before it has committed an entry of its own term: otherwise a change left uncommitted by a
//! previous leader and the new leader's change can together differ by two servers.
//! (`Bug::ChangeBeforeCommit` leaves that correction out, for the simulator to catch.)
//!
//! New servers join as **learners**: they receive the log (by snapshot if need be) but neither
//! vote nor count towards commitment until the leader promotes them, which it does once they
//! hold every committed entry — a new voter far behind would stall commits (§4.2.1).
//! A leader never removes itself: asked to, it hands leadership to the most up-to-date voter
//! first (§3.10), and the new leader carries out the removal when asked again (§4.2.2).
//!
//! We chose single-server changes over joint consensus because every change a user makes here
//! (add one server, remove one, replace one) is a single-server change, and one configuration
//! at a time is what a class can follow on screen.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::{Bug, ProposeError, Raft};
use crate::event::Event;
use crate::types::{Configuration, Index, Millis, NodeId, Payload, Role};

/// A change to the cluster's membership, asked of the leader.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum MembershipChange {
    /// A new server joins without a vote and catches up; the leader promotes it when it holds
    /// every committed entry. `address` is where it listens, for the other servers' drivers.
    AddLearner { id: NodeId, address: String },
    /// A learner becomes a voter (the leader does this by itself once the learner caught up).
    Promote { id: NodeId },
    /// A voter or a learner leaves.
    Remove { id: NodeId },
}

/// Why a membership change does not apply to a configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeRefused {
    AlreadyAMember(NodeId),
    NotALearner(NodeId),
    LastVoter(NodeId),
    NotAMember(NodeId),
    /// The leader would leave, and no admitted voter can take over.
    NoSuccessor(NodeId),
}

impl std::fmt::Display for ChangeRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChangeRefused::AlreadyAMember(id) => write!(f, "node {id} is already a member"),
            ChangeRefused::NotALearner(id) => write!(f, "node {id} is not a learner"),
            ChangeRefused::LastVoter(id) => write!(f, "node {id} is the last voter"),
            ChangeRefused::NotAMember(id) => write!(f, "node {id} is not a member"),
            ChangeRefused::NoSuccessor(_) => f.write_str("no other voter can take over (none admitted)"),
        }
    }
}

impl Configuration {
    /// Voters and learners: every server the leader replicates to.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    pub fn is_member(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// The configuration after `change`, or why it does not apply to this one.
    pub fn apply(&self, change: &MembershipChange) -> Result<Configuration, ChangeRefused> {
        let mut next = self.clone();
        match change {
            MembershipChange::AddLearner { id, address } => {
                if self.is_member(*id) {
                    return Err(ChangeRefused::AlreadyAMember(*id));
                }
                next.learners.insert(*id);
                if !address.is_empty() {
                    next.addresses.insert(*id, address.clone());
                }
            }
            MembershipChange::Promote { id } => {
                if !next.learners.remove(id) {
                    return Err(ChangeRefused::NotALearner(*id));
                }
                next.voters.insert(*id);
            }
            MembershipChange::Remove { id } => {
                if self.voters.contains(id) && self.voters.len() == 1 {
                    return Err(ChangeRefused::LastVoter(*id));
                }
                if !next.voters.remove(id) && !next.learners.remove(id) {
                    return Err(ChangeRefused::NotAMember(*id));
                }
                next.addresses.remove(id);
            }
        }
        Ok(next)
    }
}

impl Raft {
    /// Proposes a membership change on the leader. Returns the index of the new configuration's
    /// entry, which is in force at once; the driver learns it committed as for any entry.
    pub fn change_membership(
        &mut self,
        now: Millis,
        change: MembershipChange,
    ) -> Result<Index, ProposeError> {
        self.set_now(now);
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader { leader: self.leader });
        }
        if let Some((to, _)) = self.transfer {
            return Err(ProposeError::TransferInProgress { to });
        }
        if !self.committed_in_term() && !self.cfg.bugs.has(Bug::ChangeBeforeCommit) {
            return Err(ProposeError::NotCommittedInTerm);
        }
        if let Some(index) = self.pending_membership_change() {
            return Err(ProposeError::MembershipChangePending { index });
        }
        let config =
            self.log.config().apply(&change).map_err(|refused| ProposeError::InvalidChange { refused })?;
        if change == (MembershipChange::Remove { id: self.id }) {
            let Some(to) = self.most_up_to_date_voter() else {
                return Err(ProposeError::InvalidChange { refused: ChangeRefused::NoSuccessor(self.id) });
            };
            self.transfer_leadership(now, to)?;
            return Err(ProposeError::LeaderRemovalHandsOver { to });
        }
        Ok(self.append_own(Payload::Config(config)))
    }

    /// The index of a configuration entry not yet committed, if any.
    pub(super) fn pending_membership_change(&self) -> Option<Index> {
        Some(self.log.config_index()).filter(|index| *index > self.commit)
    }

    /// The successor for a leader that leaves: a voter heard from lately (a crashed one
    /// would never take over), the most up to date among them.
    fn most_up_to_date_voter(&self) -> Option<NodeId> {
        let config = self.log.config();
        self.progress
            .iter()
            .filter(|(id, p)| config.voters.contains(id) && p.admitted)
            .max_by_key(|(id, p)| (p.recent_active, p.matched, std::cmp::Reverse(**id)))
            .map(|(id, _)| *id)
    }

    /// Promotes a learner that holds every committed entry, when a change may start.
    pub(super) fn maybe_promote_learner(&mut self) {
        let may_start = self.committed_in_term() || self.cfg.bugs.has(Bug::ChangeBeforeCommit);
        if self.role != Role::Leader
            || self.transfer.is_some()
            || !may_start
            || self.pending_membership_change().is_some()
        {
            return;
        }
        // Within one message of the commit index counts as caught up: under a steady load the
        // commit index moves on while the learner's answer travels, and it would never be
        // exactly there (§4.2.1 promotes after a round that ends close enough).
        let close_enough = self.commit.saturating_sub(self.cfg.max_entries_per_message as Index);
        // Only a learner heard from lately, whose disk says it was let in: promoting a crashed
        // one would add a voter that cannot acknowledge the change that makes it one.
        let heard_since = self.now.saturating_sub(self.cfg.election_timeout);
        let config = self.log.config();
        let caught_up = config.learners.iter().copied().find(|id| {
            self.progress.get(id).is_some_and(|p| {
                p.matched >= close_enough
                    && p.matched > 0
                    && p.admitted
                    && p.last_heard.is_some_and(|at| at >= heard_since)
            })
        });
        if let Some(id) = caught_up {
            let promoted =
                config.apply(&MembershipChange::Promote { id }).expect("a learner can be promoted");
            self.append_own(Payload::Config(promoted));
        }
    }

    /// After anything that may have changed the configuration in force (an entry appended or
    /// truncated, a snapshot installed): a leader replicates to the new members and forgets the
    /// old ones, and observers hear of it.
    pub(super) fn membership_may_have_changed(&mut self) {
        if *self.log.config() == self.membership {
            return;
        }
        let config = self.log.config().clone();
        if !self.admitted && config.learners.contains(&self.id) {
            // Added as a learner: from now on this disk holds what it promises. (A server
            // that finds itself a *voter* without having been a learner is one restarted on
            // an empty disk: it stays unadmitted, and no leader counts it.)
            self.admitted = true;
            self.hard_state_dirty = true;
            self.emit(Event::Admitted);
        }
        if self.role == Role::Leader {
            assert!(config.voters.contains(&self.id), "a leader never leaves its own configuration");
            let next = self.log.last_index() + 1;
            for id in config.members().filter(|id| *id != self.id) {
                self.progress.entry(id).or_insert_with(|| super::Progress::new(next));
            }
            self.progress.retain(|id, _| config.is_member(*id));
            if self.transfer.is_some_and(|(to, _)| !config.voters.contains(&to)) {
                let (to, _) = self.transfer.take().expect("checked above");
                self.emit(Event::TransferAborted { to });
            }
        }
        let ids = |set: &BTreeSet<NodeId>| set.iter().copied().collect::<Vec<_>>();
        self.emit(Event::MembershipChanged {
            voters: ids(&config.voters),
            learners: ids(&config.learners),
            index: self.log.config_index(),
        });
        self.membership = config;
    }
}
