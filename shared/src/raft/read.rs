//! Linearizable reads without writing to the log: ReadIndex (§6.4).
//!
//! A leader records its commit index when a read arrives, then proves it is still the leader by
//! hearing from a majority in a heartbeat round that started after the read arrived. Once its
//! state machine has applied that index, the read reflects every write acknowledged before the
//! read began. A follower asks the leader for such an index and waits until it has applied it,
//! which is how reads from followers can be correct (the original project's were not).

use std::collections::{BTreeMap, VecDeque};

use super::{Body, Bug, Index, Millis, NodeId, Raft, ReadError, ReadId, ReadOutcome, Role, Term};
use crate::event::Event;

#[derive(Debug, Default)]
pub(crate) struct ReadState {
    /// The latest heartbeat round; every AppendEntries carries it and followers echo it.
    round: u64,
    /// A round started that has not been sent to followers yet.
    broadcast_pending: bool,
    /// Reads waiting for a majority to acknowledge their round, oldest first.
    pending: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term: until then it does
    /// not know the commit index. With the time they give up.
    waiting_for_commit: Vec<(ReadId, NodeId, Millis)>,
    /// On a follower: reads it asked a leader about, whom and in which term it asked (only
    /// that leader's answer in that term may complete the read), and when it stops waiting (a
    /// request or answer lost on the way would otherwise be waited for forever).
    forwarded: BTreeMap<ReadId, Forwarded>,
}

#[derive(Debug, Clone, Copy)]
struct Forwarded {
    leader: NodeId,
    term: Term,
    deadline: Millis,
}

#[derive(Debug)]
struct PendingRead {
    id: ReadId,
    requester: NodeId,
    index: Index,
    round: u64,
    deadline: Millis,
}

impl ReadState {
    pub fn round(&self) -> u64 {
        self.round
    }

    pub fn needs_broadcast(&self) -> bool {
        self.broadcast_pending
    }

    pub fn broadcast_done(&mut self) {
        self.broadcast_pending = false;
    }

    /// Reads arriving before the round is sent share it.
    fn start_round(&mut self) -> u64 {
        if !self.broadcast_pending {
            self.round += 1;
            self.broadcast_pending = true;
        }
        self.round
    }
}

impl Raft {
    /// Asks for a linearizable read. The outcome arrives in a later `Ready::reads`.
    pub fn read_index(&mut self, now: Millis, id: ReadId) {
        self.set_now(now);
        if self.cfg.bugs.has(Bug::StaleRead) {
            // The defect: answer from whatever this server has applied, asking nobody.
            let index = self.applied;
            return self.read_ready(id, index);
        }
        match (self.role, self.leader) {
            (Role::Leader, _) => self.leader_read(id, self.id),
            (_, Some(leader)) => {
                let asked = Forwarded { leader, term: self.term, deadline: self.read_deadline() };
                assert!(self.reads.forwarded.insert(id, asked).is_none(), "read id {id} is already in use");
                self.send(leader, Body::ReadIndexRequest { read_id: id });
            }
            (_, None) => self.read_failed(id, ReadError::NoLeader),
        }
    }

    /// How long a read may wait for confirmation: two election timeouts, after which the
    /// leadership it waits on is in doubt anyway.
    fn read_deadline(&self) -> Millis {
        self.now + 2 * self.cfg.election_timeout
    }

    fn leader_read(&mut self, id: ReadId, requester: NodeId) {
        let deadline = self.read_deadline();
        if !self.committed_in_term() {
            self.reads.waiting_for_commit.push((id, requester, deadline));
            return;
        }
        if self.quorum() <= 1 {
            let index = self.commit;
            return self.complete_read(id, requester, index);
        }
        let round = self.reads.start_round();
        let index = self.commit;
        self.reads.pending.push_back(PendingRead { id, requester, index, round, deadline });
    }

    pub(super) fn release_reads_waiting_for_commit(&mut self) {
        for (id, requester, _) in std::mem::take(&mut self.reads.waiting_for_commit) {
            self.leader_read(id, requester);
        }
    }

    /// Completes every read whose round a majority (the leader included) has acknowledged.
    pub(super) fn confirm_reads(&mut self) {
        let voters = &self.log.config().voters;
        let mut acked: Vec<u64> = self
            .progress
            .iter()
            .filter(|(id, _)| voters.contains(id))
            .map(|(_, p)| p.read_round_acked)
            .collect();
        acked.push(u64::MAX);
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let confirmed = acked[self.quorum() - 1];
        while self.reads.pending.front().is_some_and(|r| r.round <= confirmed) {
            let read = self.reads.pending.pop_front().expect("front exists");
            self.complete_read(read.id, read.requester, read.index);
        }
    }

    fn complete_read(&mut self, id: ReadId, requester: NodeId, index: Index) {
        if requester == self.id {
            self.read_ready(id, index);
        } else {
            if let Some(pr) = self.progress.get_mut(&requester) {
                pr.commit_wanted = pr.commit_wanted.max(index);
            }
            self.send(requester, Body::ReadIndexResponse { read_id: id, index: Some(index) });
        }
    }

    pub(super) fn on_read_index_request(&mut self, from: NodeId, id: ReadId) {
        if self.role == Role::Leader {
            self.leader_read(id, from);
        } else {
            self.send(from, Body::ReadIndexResponse { read_id: id, index: None });
        }
    }

    /// An answer counts only from the leader asked, in the term it was asked: any other (a
    /// reply meant for an earlier read with the same id, say) could carry a stale index.
    pub(super) fn on_read_index_response(
        &mut self,
        from: NodeId,
        term: Term,
        id: ReadId,
        index: Option<Index>,
    ) {
        match self.reads.forwarded.get(&id) {
            Some(asked) if asked.leader == from && asked.term == term => {}
            _ => return,
        }
        self.reads.forwarded.remove(&id);
        match index {
            Some(index) => self.read_ready(id, index),
            None => self.read_failed(id, ReadError::LeadershipLost),
        }
    }

    /// A leader stepping down answers every read it was holding: none of them can be confirmed.
    pub(super) fn fail_leader_reads(&mut self) {
        let reads = std::mem::take(&mut self.reads);
        let held = reads
            .pending
            .into_iter()
            .map(|r| (r.id, r.requester))
            .chain(reads.waiting_for_commit.into_iter().map(|(id, r, _)| (id, r)));
        for (id, requester) in held.collect::<Vec<_>>() {
            self.refuse_read(id, requester, ReadError::LeadershipLost);
        }
    }

    fn refuse_read(&mut self, id: ReadId, requester: NodeId, error: ReadError) {
        if requester == self.id {
            self.read_failed(id, error);
        } else {
            self.send(requester, Body::ReadIndexResponse { read_id: id, index: None });
        }
    }

    /// Gives up on reads that waited too long for confirmation.
    pub(super) fn expire_reads(&mut self) {
        let now = self.now;
        let expired: Vec<ReadId> =
            self.reads.forwarded.iter().filter(|(_, f)| f.deadline <= now).map(|(id, _)| *id).collect();
        for id in expired {
            self.reads.forwarded.remove(&id);
            self.read_failed(id, ReadError::Unconfirmed);
        }
        let (late, kept): (Vec<PendingRead>, Vec<PendingRead>) =
            std::mem::take(&mut self.reads.pending).into_iter().partition(|r| r.deadline <= now);
        self.reads.pending = kept.into();
        let (late_waiting, waiting): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.reads.waiting_for_commit).into_iter().partition(|(_, _, d)| *d <= now);
        self.reads.waiting_for_commit = waiting;
        for (id, requester) in
            late.iter().map(|r| (r.id, r.requester)).chain(late_waiting.iter().map(|(id, r, _)| (*id, *r)))
        {
            self.refuse_read(id, requester, ReadError::Unconfirmed);
        }
    }

    /// The earliest time a read gives up, if any read is waiting: a deadline for the driver.
    pub(super) fn next_read_deadline(&self) -> Option<Millis> {
        let forwarded = self.reads.forwarded.values().map(|f| f.deadline);
        let pending = self.reads.pending.iter().map(|r| r.deadline);
        let waiting = self.reads.waiting_for_commit.iter().map(|(_, _, d)| *d);
        forwarded.chain(pending).chain(waiting).min()
    }

    /// A follower whose leader changed will never hear back about reads it forwarded.
    pub(super) fn fail_forwarded_reads(&mut self) {
        for (id, _) in std::mem::take(&mut self.reads.forwarded) {
            self.read_failed(id, ReadError::LeadershipLost);
        }
    }

    fn read_ready(&mut self, id: ReadId, index: Index) {
        self.emit(Event::ReadIndexReady { read_id: id, index });
        self.out.reads.push(ReadOutcome { id, result: Ok(index) });
    }

    fn read_failed(&mut self, id: ReadId, error: ReadError) {
        self.emit(Event::ReadIndexFailed { read_id: id, reason: error.to_string() });
        self.out.reads.push(ReadOutcome { id, result: Err(error) });
    }
}
