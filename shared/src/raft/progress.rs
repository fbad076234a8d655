//! What a leader knows about each follower's log, and how fast it may send to it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::types::{Index, Millis, NodeId};

/// How the leader is sending to a follower (the same three states as etcd-io/raft).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressState {
    /// Looking for the point where the logs agree: one AppendEntries at a time.
    Probe,
    /// Logs agree up to `matched`: stream entries, several messages in flight.
    Replicate,
    /// The follower needs entries that were compacted away: a snapshot is on its way.
    Snapshot,
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    /// Next entry to send.
    pub next: Index,
    /// Highest entry known to be replicated on the follower.
    pub matched: Index,
    pub state: ProgressState,
    /// In `Probe`: a probe is outstanding; wait for its answer or the next heartbeat.
    pub probe_sent: bool,
    /// In `Replicate`: the last index of each AppendEntries in flight, oldest first.
    pub inflight: VecDeque<Index>,
    /// In `Snapshot`: when the last chunk was sent, to resend if it is lost.
    pub snapshot_sent_at: Millis,
    /// The snapshot being sent (its index) and how many of its bytes the follower has: a
    /// transfer interrupted by a lost chunk resumes there.
    pub snapshot_index: Index,
    pub snapshot_offset: u64,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// Highest read round this follower acknowledged (§6.4).
    pub read_round_acked: u64,
    /// The highest commit index this follower has been sent for entries it is known to have;
    /// when the leader's commit passes it, the follower is told.
    pub commit_sent: Index,
    /// `matched` at the previous heartbeat: unchanged while entries are outstanding means a
    /// message was lost, and the leader falls back to probing.
    pub matched_at_heartbeat: Index,
}

impl Progress {
    pub fn new(next: Index) -> Progress {
        Progress {
            next,
            matched: 0,
            state: ProgressState::Probe,
            probe_sent: false,
            inflight: VecDeque::new(),
            snapshot_sent_at: 0,
            snapshot_index: 0,
            snapshot_offset: 0,
            recent_active: true,
            read_round_acked: 0,
            matched_at_heartbeat: 0,
            commit_sent: 0,
        }
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.next = self.next.max(self.matched + 1);
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.inflight.clear();
        self.next = self.matched + 1;
    }

    /// Records an acknowledgement. Returns true if `matched` moved.
    pub fn acknowledge(&mut self, index: Index) -> bool {
        while self.inflight.front().is_some_and(|i| *i <= index) {
            self.inflight.pop_front();
        }
        if index > self.matched {
            self.matched = index;
            self.next = self.next.max(index + 1);
            true
        } else {
            false
        }
    }
}

/// A follower's progress as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProgress {
    pub id: NodeId,
    pub next_index: Index,
    pub match_index: Index,
    pub state: ProgressState,
    pub inflight: u32,
    pub recent_active: bool,
}
