//! Log replication (§5.3), commitment (§5.4.2) and snapshots (§7).
//!
//! The leader keeps a [`Progress`](super::progress::Progress) per follower: it probes one
//! message at a time until it finds where the logs agree, then streams batches with a bounded
//! number in flight. Rejections carry a conflict hint so that the leader skips a whole term of
//! divergent entries per round trip instead of one entry.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::progress::OutgoingSnapshot;

/// Bytes of one snapshot transfer on their way at once, at most.
const SNAPSHOT_WINDOW_BYTES: usize = 4 << 20;
use super::{
    Body, Bug, ConflictHint, Entry, Index, Message, NodeId, ProgressState, Raft, Role, Snapshot,
    SnapshotMeta, summarize,
};
use crate::event::{Event, RoleReason};

impl Raft {
    pub(super) fn on_append_entries(&mut self, msg: Message) {
        let Body::AppendEntries { prev_log_index, prev_log_term, entries, leader_commit, read_round } =
            msg.body
        else {
            unreachable!()
        };
        if !self.accept_leader(msg.from) {
            return;
        }
        let (mut prev, mut prev_term, mut entries) = (prev_log_index, prev_log_term, entries);
        // Everything up to our commit index already matches the leader (Leader Completeness):
        // skip it, and answer at once if nothing new remains.
        if prev < self.commit {
            let skip = (self.commit - prev) as usize;
            if skip >= entries.len() {
                let index = self.commit;
                return self.reply_append(msg.from, true, index, None, read_round);
            }
            prev_term = entries[skip - 1].term;
            prev = self.commit;
            entries.drain(..skip);
        }
        match self.log.term_at(prev) {
            None => {
                let hint = ConflictHint { term: None, index: self.log.last_index() + 1 };
                self.refuse_append(msg.from, prev, prev_term, hint, read_round);
            }
            Some(term) if term != prev_term => {
                let hint = ConflictHint {
                    term: Some(term),
                    index: self.log.first_index_of_term_at(prev, self.commit + 1),
                };
                self.refuse_append(msg.from, prev, prev_term, hint, read_round);
            }
            Some(_) => {
                let last_new = prev + entries.len() as Index;
                self.append_from_leader(entries);
                if leader_commit > self.commit {
                    self.advance_commit(leader_commit.min(last_new));
                }
                self.reply_append(msg.from, true, last_new, None, read_round);
            }
        }
    }

    /// A message from the leader of the current term: follow it and restart the election timer.
    /// Returns false if this server is itself the leader of the term (which Raft rules out).
    fn accept_leader(&mut self, leader: NodeId) -> bool {
        // A leader replicates to us: whatever a leader once said about our removal is past.
        self.removed = false;
        match self.role {
            Role::Leader => return false,
            Role::Candidate | Role::PreCandidate => {
                self.become_follower(self.term, Some(leader), RoleReason::LeaderDiscovered { leader });
            }
            Role::Follower if self.leader != Some(leader) => {
                self.become_follower(self.term, Some(leader), RoleReason::LeaderDiscovered { leader });
            }
            Role::Follower => self.reset_election_timer(),
        }
        self.leader_contact = Some(self.now);
        true
    }

    /// Appends the leader's entries after a matching `prev`, removing a conflicting suffix.
    fn append_from_leader(&mut self, entries: Vec<Entry>) {
        let mut appended = Vec::new();
        for entry in entries {
            match self.log.term_at(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    // §5.3: a conflicting entry and everything after it go. Never a committed one:
                    // the leader agrees with us up to our commit index.
                    debug_assert!(entry.index > self.commit || !self.cfg.bugs.is_empty());
                    self.log.truncate(entry.index);
                    self.emit(Event::LogTruncated { from: entry.index });
                }
                None => {}
            }
            appended.push(summarize(&entry));
            self.log.append(entry);
        }
        if !appended.is_empty() {
            self.emit(Event::EntriesAppended { entries: appended });
        }
        self.membership_may_have_changed();
    }

    fn refuse_append(
        &mut self,
        leader: NodeId,
        prev: Index,
        prev_term: super::Term,
        hint: ConflictHint,
        round: u64,
    ) {
        self.emit(Event::AppendRefused { leader, prev_log_index: prev, prev_log_term: prev_term, hint });
        self.reply_append(leader, false, prev, Some(hint), round);
    }

    fn reply_append(
        &mut self,
        to: NodeId,
        success: bool,
        index: Index,
        conflict: Option<ConflictHint>,
        round: u64,
    ) {
        let last_log_index = self.log.last_index();
        let admitted = self.admitted;
        let body =
            Body::AppendResponse { success, index, conflict, last_log_index, read_round: round, admitted };
        self.send(to, body);
    }

    /// A leader notes an answer from `peer` and whether its disk is admitted. Returns false
    /// when there is nothing more to do with it (not a leader, not a member). An unadmitted
    /// voter's answers promise nothing: they neither keep the leader's lease nor confirm reads
    /// nor count towards commitment (`maybe_commit`), and the leader says once that the
    /// server lost its disk.
    fn heard_from(&mut self, peer: NodeId, admitted: bool) -> bool {
        if self.role != Role::Leader {
            return false;
        }
        let is_voter = self.log.config().contains(peer);
        let now = self.now;
        let Some(pr) = self.progress.get_mut(&peer) else { return false };
        pr.last_heard = Some(now);
        let lost = is_voter && pr.admitted && !admitted;
        pr.admitted = admitted;
        if admitted || !is_voter {
            pr.recent_active = true;
        }
        if lost {
            self.emit(Event::DiskLost { node: peer });
        }
        true
    }

    pub(super) fn advance_commit(&mut self, to: Index) {
        if to <= self.commit {
            return;
        }
        assert!(to <= self.log.last_index(), "commit {to} beyond the log's end {}", self.log.last_index());
        self.emit(Event::CommitAdvanced { from: self.commit, to, term: self.term });
        self.commit = to;
    }

    pub(super) fn on_append_response(&mut self, msg: Message) {
        let Body::AppendResponse { success, index, conflict, read_round, admitted, .. } = msg.body else {
            unreachable!()
        };
        if !self.heard_from(msg.from, admitted) {
            return;
        }
        let pr = self.progress.get_mut(&msg.from).expect("heard_from checked it");
        if admitted && read_round > pr.read_round_acked {
            pr.read_round_acked = read_round;
            self.confirm_reads();
        }
        let pr = self.progress.get_mut(&msg.from).expect("checked above");
        if success {
            let next_before = pr.next;
            let moved = pr.acknowledge(index);
            match pr.state {
                // The probe found the point of agreement: start streaming.
                ProgressState::Probe if index + 1 >= next_before => pr.become_replicate(),
                ProgressState::Snapshot if pr.matched + 1 >= pr.next => pr.become_probe(),
                _ => {}
            }
            if moved {
                let (match_index, next_index) = (pr.matched, pr.next);
                self.emit(Event::AppendAccepted { follower: msg.from, match_index, next_index });
                self.maybe_commit();
                self.maybe_finish_transfer(msg.from);
                self.maybe_promote_learner();
            }
        } else {
            // `index` is the prev_log_index that was refused; older refusals are stale.
            let stale = index < pr.matched
                || (pr.state == ProgressState::Probe && index + 1 != pr.next)
                || pr.state == ProgressState::Snapshot;
            if stale {
                return;
            }
            let next = match conflict {
                Some(ConflictHint { term: Some(term), index: first }) => {
                    self.log.last_index_of_term(term).map_or(first, |last| last + 1)
                }
                Some(ConflictHint { term: None, index: first }) => first,
                None => index,
            };
            let no_backtrack = self.cfg.bugs.has(Bug::NoBacktrack);
            let pr = self.progress.get_mut(&msg.from).expect("checked above");
            pr.next =
                if no_backtrack { index + 1 } else { next.clamp(pr.matched + 1, index.max(pr.matched + 1)) };
            pr.become_probe();
            let next_index = pr.next;
            self.emit(Event::AppendRejected { follower: msg.from, next_index });
        }
    }

    /// A chunk of a snapshot. Chunks are taken only in order; anything else is answered with
    /// how much this follower has, so the leader resends from there.
    pub(super) fn on_install_snapshot(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Vec<u8>,
        done: bool,
    ) {
        if !self.accept_leader(from) {
            return;
        }
        let index = meta.index;
        if index <= self.commit {
            self.incoming_snapshot = None;
            let commit = self.commit;
            return self.answer_snapshot(from, commit, 0, true);
        }
        if offset == 0 && self.incoming_snapshot.as_ref().is_none_or(|(m, _)| *m != meta) {
            self.incoming_snapshot = Some((meta.clone(), Vec::new()));
        }
        let received = match &mut self.incoming_snapshot {
            Some((m, bytes)) if *m == meta && bytes.len() as u64 == offset => {
                bytes.extend_from_slice(&data);
                bytes.len() as u64
            }
            // Not the next chunk (lost, duplicated or reordered): say where to resume.
            Some((m, bytes)) if *m == meta => bytes.len() as u64,
            _ => 0,
        };
        if received != offset + data.len() as u64 || !done {
            return self.answer_snapshot(from, index, received, false);
        }
        let (meta, bytes) = self.incoming_snapshot.take().expect("the chunks were just gathered");
        let data = match serde_json::from_slice(&bytes) {
            Ok(data) => data,
            // A leader's snapshot always parses; a damaged one is asked for again from the start.
            Err(_) => return self.answer_snapshot(from, index, 0, false),
        };
        let snapshot = Snapshot { meta, data };
        let term = snapshot.meta.term;
        self.log.install(snapshot.meta.clone());
        self.membership_may_have_changed();
        self.emit(Event::CommitAdvanced { from: self.commit, to: index, term: self.term });
        self.commit = index;
        self.applied = index;
        self.snapshot = Some(snapshot.clone());
        self.outgoing_snapshot = Some(Arc::new(OutgoingSnapshot { meta: snapshot.meta.clone(), bytes }));
        self.out.snapshot = Some(snapshot);
        self.emit(Event::SnapshotInstalled { index, term, leader: from });
        self.answer_snapshot(from, index, received, true);
    }

    fn answer_snapshot(&mut self, leader: NodeId, index: Index, received: u64, done: bool) {
        let admitted = self.admitted;
        self.send(leader, Body::SnapshotResponse { index, received, done, admitted });
    }

    pub(super) fn on_snapshot_response(
        &mut self,
        from: NodeId,
        index: Index,
        received: u64,
        done: bool,
        admitted: bool,
    ) {
        if !self.heard_from(from, admitted) {
            return;
        }
        let pr = self.progress.get_mut(&from).expect("heard_from checked it");
        if !done {
            // Progress on the snapshot being sent, or a request to start over (0). An older
            // acknowledgement (a smaller nonzero count) changes nothing.
            let current = pr.state == ProgressState::Snapshot && pr.snapshot_index() == index;
            if !current {
                return;
            }
            pr.snapshot_reported = Some(received);
            if received > pr.snapshot_offset {
                pr.snapshot_offset = received;
                pr.snapshot_sent = pr.snapshot_sent.max(received);
            } else if received == 0 && pr.snapshot_offset > 0 {
                // The follower started over (it restarted, or the snapshot did not parse).
                pr.snapshot_offset = 0;
                pr.snapshot_sent = 0;
                pr.snapshot_resent_from = None;
            } else if received == pr.snapshot_offset
                && pr.snapshot_sent > received
                && pr.snapshot_resent_from != Some(received)
            {
                // The follower still waits for the chunk at `received`: it was lost, or a later
                // one overtook it. Send that one chunk again — once for this gap (a lost resend
                // is covered by the heartbeat's timeout, which starts again from the offset).
                pr.snapshot_resent_from = Some(received);
                self.send_snapshot_chunk_at(from, received);
            }
            self.send_snapshot_chunks(from);
            return;
        }
        let moved = pr.acknowledge(index);
        pr.become_probe();
        if moved {
            let (match_index, next_index) = (pr.matched, pr.next);
            self.emit(Event::AppendAccepted { follower: from, match_index, next_index });
            self.maybe_commit();
            self.maybe_promote_learner();
        }
    }

    /// §5.3–5.4.2: the highest index stored on a majority is committed, but only if its entry
    /// is of the current term; earlier entries commit with it (Figure 8 shows why).
    pub(super) fn maybe_commit(&mut self) {
        let config = self.log.config();
        let mut matched: Vec<Index> = config
            .voters
            .iter()
            .map(|id| {
                if *id == self.id {
                    self.log.stable_index()
                } else {
                    // A voter restarted on an empty disk stores what it acknowledges now, but
                    // forgot what it acknowledged before: counting it could commit an entry
                    // that a majority does not hold (`HardState::admitted`).
                    self.progress.get(id).filter(|p| p.admitted).map_or(0, |p| p.matched)
                }
            })
            .collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[config.quorum() - 1];
        if candidate <= self.commit {
            return;
        }
        let of_current_term = self.log.term_at(candidate) == Some(self.term);
        if of_current_term || self.cfg.bugs.has(Bug::CommitOldTerm) {
            let first_of_term = !self.committed_in_term();
            self.advance_commit(candidate);
            if first_of_term && self.committed_in_term() {
                self.release_reads_waiting_for_commit();
            }
            // A committed change lets the next one start.
            self.maybe_promote_learner();
        }
    }

    /// Whether the leader has committed an entry of its own term (and so knows the true commit
    /// index, §6.4).
    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.term)
    }

    fn maybe_finish_transfer(&mut self, peer: NodeId) {
        if let Some((to, _)) = self.transfer {
            if to == peer && self.progress[&peer].matched == self.log.last_index() {
                self.send(to, Body::TimeoutNow);
            }
        }
    }

    /// Heartbeats to everyone (they also confirm pending reads), and recovery of followers whose
    /// replication stalled because a message was lost.
    pub(super) fn on_heartbeat_timer(&mut self) {
        let last = self.log.last_index();
        let now = self.now;
        let resend_snapshot_after = self.cfg.election_timeout;
        for pr in self.progress.values_mut() {
            match pr.state {
                ProgressState::Probe => pr.probe_sent = false,
                ProgressState::Replicate => {
                    if pr.matched == pr.matched_at_heartbeat && pr.matched < last && !pr.inflight.is_empty() {
                        pr.next = pr.matched + 1;
                        pr.become_probe();
                    }
                }
                ProgressState::Snapshot => {
                    // A lost chunk: probe again; the transfer resumes where it stopped.
                    if now >= pr.snapshot_sent_at + resend_snapshot_after {
                        pr.snapshot_resent_from = None;
                        pr.snapshot_sent = pr.snapshot_offset;
                        pr.next = pr.matched + 1;
                        pr.become_probe();
                    }
                }
            }
            pr.matched_at_heartbeat = pr.matched;
        }
        for peer in self.peers() {
            self.send_heartbeat(peer);
        }
    }

    /// An empty AppendEntries anchored at what the follower is known to have, so that it never
    /// fails: it resets the follower's timer, carries the commit index and confirms reads.
    fn send_heartbeat(&mut self, peer: NodeId) {
        let matched = self.progress.get(&peer).map_or(0, |p| p.matched);
        let (prev, prev_term) = match self.log.term_at(matched) {
            Some(term) => (matched, term),
            None => (0, 0),
        };
        let body = Body::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries: Vec::new(),
            leader_commit: self.commit,
            read_round: self.reads.round(),
        };
        // Counted as told even when `matched` was compacted away (prev 0): such a follower learns
        // the commit index from the snapshot it needs anyway.
        let told = self.commit.min(matched);
        if let Some(pr) = self.progress.get_mut(&peer) {
            pr.commit_sent = pr.commit_sent.max(told);
        }
        self.send(peer, body);
    }

    /// Whether `peer` waits to hear of a commit it could be told at once: it stores entries
    /// the leader has committed without having been told so, and a read it forwarded waits on
    /// them (it serves the read once it has applied the read index, §6.4). Other followers
    /// learn the commit index with the next AppendEntries or heartbeat, as in §5.3: telling
    /// every follower of every commit at once doubled the messages of each write.
    fn commit_awaited_by(&self, pr: &super::Progress) -> bool {
        self.commit.min(pr.matched).min(pr.commit_wanted) > pr.commit_sent
    }

    /// Whether `flush_replication` would send anything.
    pub(super) fn replication_pending(&self) -> bool {
        self.reads.needs_broadcast()
            || self.progress.values().any(|pr| self.can_send_append(pr) || self.commit_awaited_by(pr))
    }

    fn can_send_append(&self, pr: &super::Progress) -> bool {
        match pr.state {
            ProgressState::Snapshot => false,
            ProgressState::Probe => !pr.probe_sent,
            ProgressState::Replicate => {
                pr.inflight.len() < self.cfg.max_inflight_messages && pr.next <= self.log.last_index()
            }
        }
    }

    /// Sends what each follower can take now, batching every entry appended since the last
    /// flush. Called once per `ready`, so that proposals arriving together share messages.
    pub(super) fn flush_replication(&mut self) {
        let mut sent = BTreeSet::new();
        for peer in self.peers() {
            while self.progress.get(&peer).is_some_and(|pr| self.can_send_append(pr)) {
                self.send_append(peer);
                sent.insert(peer);
            }
        }
        // A follower's read waiting on a commit learns of it without waiting for the next
        // heartbeat, and pending reads need a round that reaches everyone.
        for peer in self.peers() {
            let behind = self.progress.get(&peer).is_some_and(|pr| self.commit_awaited_by(pr));
            if behind || (self.reads.needs_broadcast() && !sent.contains(&peer)) {
                self.send_heartbeat(peer);
            }
        }
        self.reads.broadcast_done();
    }

    fn send_append(&mut self, peer: NodeId) {
        let max = self.cfg.max_entries_per_message;
        let pr = &self.progress[&peer];
        let prev = pr.next - 1;
        let Some(prev_term) = self.log.term_at(prev) else {
            return self.send_snapshot(peer);
        };
        let entries = self.log.slice_within(pr.next, max, self.cfg.max_bytes_per_message);
        let count = entries.len() as Index;
        let told = self.commit.min(prev + count);
        let body = Body::AppendEntries {
            prev_log_index: prev,
            prev_log_term: prev_term,
            entries,
            leader_commit: self.commit,
            read_round: self.reads.round(),
        };
        let pr = self.progress.get_mut(&peer).expect("peer has progress");
        pr.commit_sent = pr.commit_sent.max(told);
        match pr.state {
            ProgressState::Probe => pr.probe_sent = true,
            ProgressState::Replicate => {
                assert!(count > 0, "replicate sends only when entries are waiting");
                pr.inflight.push_back(prev + count);
                pr.next = prev + count + 1;
            }
            ProgressState::Snapshot => unreachable!("no appends while a snapshot is in flight"),
        }
        self.send(peer, body);
    }

    fn send_snapshot(&mut self, peer: NodeId) {
        let outgoing = self.outgoing_snapshot();
        let index = outgoing.meta.index;
        let pr = self.progress.get_mut(&peer).expect("peer has progress");
        pr.state = ProgressState::Snapshot;
        pr.inflight.clear();
        if pr.snapshot_index() != index {
            // A new transfer: it keeps these bytes until it ends, whatever compacts meanwhile.
            pr.snapshot = Some(outgoing);
            pr.snapshot_offset = 0;
            pr.snapshot_reported = None;
        }
        // From what the follower is known to have — as it last said: an answer from before it
        // restarted, arriving late, may have raised the offset past what it holds now.
        if let Some(reported) = pr.snapshot_reported {
            pr.snapshot_offset = pr.snapshot_offset.min(reported);
        }
        pr.snapshot_sent = pr.snapshot_offset;
        if pr.snapshot_offset == 0 {
            self.emit(Event::SnapshotSent { to: peer, index });
        }
        self.send_snapshot_chunks(peer);
    }

    /// Whether compacting up to `index` would take entries a live follower still needs: one
    /// heard from within an election timeout that lacks them (it is catching up, or receiving a
    /// snapshot). Compacting them away would send it a newer snapshot, and under steady writes
    /// it might never catch up (see `Replica`'s compaction, which waits for such followers).
    pub fn needed_by_live_follower(&self, index: Index) -> bool {
        let recent = self.now.saturating_sub(self.cfg.election_timeout);
        self.role == Role::Leader
            && self
                .progress
                .values()
                .any(|p| p.matched < index && p.last_heard.is_some_and(|at| at >= recent))
    }

    /// The latest snapshot, encoded for the wire once and shared by every transfer of it.
    fn outgoing_snapshot(&mut self) -> Arc<OutgoingSnapshot> {
        let snapshot = self.snapshot.as_ref().expect("entries before the log's start are in a snapshot");
        match &self.outgoing_snapshot {
            Some(outgoing) if outgoing.meta == snapshot.meta => outgoing.clone(),
            _ => {
                let bytes = serde_json::to_vec(&snapshot.data).expect("the store serializes");
                let outgoing = Arc::new(OutgoingSnapshot { meta: snapshot.meta.clone(), bytes });
                self.outgoing_snapshot = Some(outgoing.clone());
                outgoing
            }
        }
    }

    /// Sends the transfer's next chunks, from what was sent so far, keeping a few on their way
    /// at once (`SNAPSHOT_WINDOW_BYTES`, and no more chunks than AppendEntries in flight).
    /// Chunks are bytes: where one ends says nothing about the text inside.
    fn send_snapshot_chunks(&mut self, peer: NodeId) {
        let now = self.now;
        let max = self.cfg.max_bytes_per_message.max(1) as u64;
        let window =
            (SNAPSHOT_WINDOW_BYTES as u64 / max).clamp(1, self.cfg.max_inflight_messages as u64) * max;
        let pr = self.progress.get_mut(&peer).expect("peer has progress");
        let outgoing = pr.snapshot.clone().expect("a transfer holds the snapshot it sends");
        let total = outgoing.bytes.len() as u64;
        let mut chunks = Vec::new();
        if total == 0 {
            chunks.push((0, 0));
        }
        while pr.snapshot_sent < total && pr.snapshot_sent - pr.snapshot_offset.min(pr.snapshot_sent) < window
        {
            let start = pr.snapshot_sent;
            let end = (start + max).min(total);
            chunks.push((start, end));
            pr.snapshot_sent = end;
        }
        debug_assert!(
            pr.snapshot_offset <= pr.snapshot_sent.max(pr.snapshot_offset) && pr.snapshot_sent <= total
        );
        if !chunks.is_empty() {
            pr.snapshot_sent_at = now;
        }
        for (start, end) in chunks {
            self.send(peer, chunk(&outgoing, start, end));
        }
    }

    /// Sends again the one chunk of the transfer that starts at `start`.
    fn send_snapshot_chunk_at(&mut self, peer: NodeId, start: u64) {
        let max = self.cfg.max_bytes_per_message.max(1) as u64;
        let pr = self.progress.get_mut(&peer).expect("peer has progress");
        let outgoing = pr.snapshot.clone().expect("a transfer holds the snapshot it sends");
        let total = outgoing.bytes.len() as u64;
        let start = start.min(total);
        self.send(peer, chunk(&outgoing, start, (start + max).min(total)));
    }
}

/// The InstallSnapshot carrying bytes `start..end` of a snapshot.
fn chunk(outgoing: &OutgoingSnapshot, start: u64, end: u64) -> Body {
    Body::InstallSnapshot {
        meta: outgoing.meta.clone(),
        offset: start,
        data: outgoing.bytes[start as usize..end as usize].to_vec(),
        done: end == outgoing.bytes.len() as u64,
    }
}
