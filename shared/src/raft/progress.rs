//! What a leader knows about each follower's log, and how fast it may send to it.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::types::{Index, Millis, NodeId, SnapshotMeta};

/// A snapshot as it travels: its place in the log and its state machine, encoded once. A
/// transfer keeps the one it started with to the end, whatever the leader compacts meanwhile,
/// so that every chunk it sends is cut from the same bytes (§7, Figure 13's `offset`).
#[derive(Debug)]
pub(crate) struct OutgoingSnapshot {
    pub meta: SnapshotMeta,
    pub bytes: Vec<u8>,
}

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
    /// The snapshot being sent and how many of its bytes the follower has: a transfer
    /// interrupted by a lost chunk resumes there. Kept after the transfer ends, so that a
    /// follower asking again for the same snapshot resumes instead of starting over.
    pub snapshot: Option<Arc<OutgoingSnapshot>>,
    pub snapshot_offset: u64,
    /// Bytes of that snapshot sent so far: chunks from `snapshot_offset` up to here are on
    /// their way (a few travel at once, so that small chunks do not take a round trip each).
    pub snapshot_sent: u64,
    /// The offset from which chunks were last sent again after the follower said it still
    /// waited there: once per gap, or every late answer would resend the whole window.
    pub snapshot_resent_from: Option<u64>,
    /// What the follower said it has, in its latest answer on this transfer. Usually what
    /// `snapshot_offset` says; lower when an answer from before the follower restarted came
    /// late and raised the offset past what it now holds — the transfer resumes from here when
    /// it stalls.
    pub snapshot_reported: Option<u64>,
    /// Heard from since the last check-quorum round (an unadmitted voter is not heard: its
    /// answers promise nothing).
    pub recent_active: bool,
    /// When the follower last answered, whatever it said.
    pub last_heard: Option<Millis>,
    /// The follower's last answer said its disk is admitted (`HardState::admitted`). A voter
    /// that is not is a server restarted on an empty disk: its acknowledgements do not count.
    pub admitted: bool,
    /// Highest read round this follower acknowledged (§6.4).
    pub read_round_acked: u64,
    /// The highest commit index this follower has been sent for entries it is known to have;
    /// when the leader's commit passes it, the follower is told.
    pub commit_sent: Index,
    /// The highest read index this follower was given for a read it forwarded: it serves the
    /// read once it knows that index committed, so the leader tells it without delay.
    pub commit_wanted: Index,
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
            snapshot: None,
            snapshot_offset: 0,
            snapshot_sent: 0,
            snapshot_resent_from: None,
            snapshot_reported: None,
            recent_active: true,
            last_heard: None,
            admitted: false,
            read_round_acked: 0,
            matched_at_heartbeat: 0,
            commit_sent: 0,
            commit_wanted: 0,
        }
    }

    /// The index of the snapshot being (or last) sent, 0 if none.
    pub fn snapshot_index(&self) -> Index {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    pub fn become_probe(&mut self) {
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.inflight.clear();
        self.next = self.next.max(self.matched + 1);
        debug_assert!(self.matched < self.next, "a probe starts past what the follower has");
    }

    pub fn become_replicate(&mut self) {
        self.state = ProgressState::Replicate;
        self.inflight.clear();
        self.next = self.matched + 1;
    }

    /// Records an acknowledgement. Returns true if `matched` moved.
    pub fn acknowledge(&mut self, index: Index) -> bool {
        let before = self.matched;
        while self.inflight.front().is_some_and(|i| *i <= index) {
            self.inflight.pop_front();
        }
        let moved = index > self.matched;
        if moved {
            self.matched = index;
            self.next = self.next.max(index + 1);
        }
        // What a follower acknowledged it stores: the leader's knowledge of it only grows.
        debug_assert!(
            self.matched >= before && self.matched < self.next,
            "matched {} next {}",
            self.matched,
            self.next
        );
        debug_assert!(
            self.inflight.iter().zip(self.inflight.iter().skip(1)).all(|(a, b)| a < b),
            "appends in flight end at increasing indices"
        );
        moved
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
    /// See `Progress::admitted`: false for a voter means it lost its disk.
    #[serde(default = "yes")]
    pub admitted: bool,
}

fn yes() -> bool {
    true
}
