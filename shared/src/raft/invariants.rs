//! What must hold of a server's Raft state after every input, whatever the input was (as
//! TigerBeetle asserts its invariants rather than hoping): checked at every `ready` in debug
//! builds, and by the simulator after every input it gives, in every build. A failure is a bug
//! in this core, never a condition to handle: it panics with the state that broke it.

use super::progress::ProgressState;
use super::{Raft, Role};

impl Raft {
    /// Panics if the state breaks one of Raft's invariants.
    pub fn check_invariants(&self) {
        let (last, first) = (self.log.last_index(), self.log.first_index());
        let id = self.id;
        // The log and what is known committed and applied.
        assert!(
            self.applied <= self.commit,
            "node {id}: applied {} beyond commit {}",
            self.applied,
            self.commit
        );
        assert!(self.commit <= last, "node {id}: commit {} beyond the last entry {last}", self.commit);
        assert!(first >= 1 && first <= last + 1, "node {id}: the log starts at {first}, ends at {last}");
        let last_term = self.log.term_at(last).unwrap_or(0);
        assert!(last_term <= self.term, "node {id}: an entry of term {last_term} in term {}", self.term);
        // The configuration: nobody both votes and only learns.
        let config = self.log.config();
        assert!(
            config.voters.is_disjoint(&config.learners),
            "node {id}: {:?} are both voters and learners",
            config.voters.intersection(&config.learners).collect::<Vec<_>>()
        );
        match self.role {
            Role::Leader => self.check_leader(),
            Role::Candidate => {
                assert_eq!(self.voted_for, Some(id), "node {id}: a candidate votes for itself");
                assert_eq!(self.leader, None, "node {id}: a candidate knows no leader of its term");
            }
            Role::PreCandidate | Role::Follower => {
                assert_ne!(self.leader, Some(id), "node {id}: only a leader leads");
                assert!(self.progress.is_empty(), "node {id}: replication state outside leadership");
            }
        }
    }

    /// A leader leads its own term, tracks every other member, and what it believes each has
    /// is consistent with its own log.
    fn check_leader(&self) {
        let id = self.id;
        let last = self.log.last_index();
        assert_eq!(self.leader, Some(id), "node {id}: a leader knows itself as the leader");
        assert_eq!(self.voted_for, Some(id), "node {id}: a leader voted for itself in its term");
        for member in self.log.config().members().filter(|m| *m != id) {
            assert!(self.progress.contains_key(&member), "node {id}: leading without progress for {member}");
        }
        for (peer, pr) in &self.progress {
            assert!(pr.matched <= last, "node {id}: {peer} matched {} beyond {last}", pr.matched);
            assert!(
                pr.matched < pr.next,
                "node {id}: {peer} matched {} not below next {}",
                pr.matched,
                pr.next
            );
            assert!(pr.next <= last + 1, "node {id}: {peer} next {} beyond {}", pr.next, last + 1);
            if pr.state != ProgressState::Replicate {
                assert!(pr.inflight.is_empty(), "node {id}: appends in flight to {peer} outside replication");
            }
            if let Some(outgoing) = &pr.snapshot {
                let total = outgoing.bytes.len() as u64;
                assert!(pr.snapshot_sent <= total, "node {id}: sent past the end of the snapshot to {peer}");
            }
        }
    }
}
