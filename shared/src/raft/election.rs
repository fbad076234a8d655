//! Elections: terms (§5.1), timeouts and votes (§5.2), the up-to-date rule (§5.4.1), pre-vote
//! and leader leases against disruptive servers (dissertation §9.6, §4.2.3), leadership
//! transfer (§3.10) and check-quorum (§6.2).

use std::cmp::Ordering;

use super::{Body, Bug, Message, Payload, Progress, Raft, Role, VoteRefusal};
use crate::event::{Event, RoleReason};

impl Raft {
    /// §5.1: a higher term makes this server a follower in it; a lower term marks the sender as
    /// out of date. Returns whether the message should be handled further.
    pub(super) fn update_term(&mut self, msg: &Message) -> bool {
        match msg.term.cmp(&self.term) {
            Ordering::Equal => true,
            Ordering::Greater => match &msg.body {
                Body::RequestVote { pre_vote, transfer, .. } => {
                    if self.removed_by_committed_config(msg.from) {
                        self.refuse_vote(msg, *pre_vote, VoteRefusal::NotAMember);
                        return false;
                    }
                    if self.in_lease() && !transfer {
                        // A server that can still hear a leader must not help depose it.
                        let leader = self.leader.unwrap_or(self.id);
                        self.refuse_vote(msg, *pre_vote, VoteRefusal::LeaderActive { leader });
                        return false;
                    }
                    if !pre_vote {
                        self.become_follower(msg.term, None, RoleReason::HigherTerm { from: msg.from });
                    }
                    true
                }
                // A granted pre-vote echoes the term the candidate asked about; nobody is in it yet.
                Body::VoteResponse { pre_vote: true, granted: true, .. } => true,
                Body::AppendEntries { .. } | Body::InstallSnapshot { .. } | Body::TimeoutNow => {
                    self.become_follower(msg.term, Some(msg.from), RoleReason::HigherTerm { from: msg.from });
                    true
                }
                _ => {
                    self.become_follower(msg.term, None, RoleReason::HigherTerm { from: msg.from });
                    true
                }
            },
            Ordering::Less => {
                match &msg.body {
                    Body::RequestVote { pre_vote, .. } => {
                        let refusal = VoteRefusal::StaleTerm { voter_term: self.term };
                        self.refuse_vote(msg, *pre_vote, refusal);
                    }
                    Body::AppendEntries { .. } | Body::InstallSnapshot { .. } => {
                        // A deposed leader: tell it the newer term so that it steps down.
                        let last_log_index = self.log.last_index();
                        let body = Body::AppendResponse {
                            success: false,
                            index: 0,
                            conflict: None,
                            last_log_index,
                            read_round: 0,
                            admitted: self.admitted,
                        };
                        self.send_with_term(msg.from, self.term, body);
                    }
                    _ => {}
                }
                false
            }
        }
    }

    /// Whether this server currently trusts a live leader (itself included), in which case it
    /// ignores candidates that did not come from a leadership transfer.
    fn in_lease(&self) -> bool {
        if !self.cfg.check_quorum {
            return false;
        }
        match self.role {
            Role::Leader => true,
            _ => {
                self.leader.is_some()
                    && self.leader_contact.is_some_and(|at| self.now < at + self.cfg.election_timeout)
            }
        }
    }

    /// A leader whose committed configuration no longer lists `candidate`: the candidate was
    /// removed and never heard (the leader stops replicating to a server as soon as it appends
    /// the change that removes it), so it is told, and stops campaigning.
    fn removed_by_committed_config(&self, candidate: super::NodeId) -> bool {
        self.role == Role::Leader
            && self.pending_membership_change().is_none()
            && !self.log.config().is_member(candidate)
    }

    fn refuse_vote(&mut self, msg: &Message, pre_vote: bool, refusal: VoteRefusal) {
        self.emit(Event::VoteRefused { candidate: msg.from, term: msg.term, pre_vote, refusal });
        let body = Body::VoteResponse { pre_vote, granted: false, refusal: Some(refusal) };
        self.send_with_term(msg.from, self.term, body);
    }

    pub(super) fn on_request_vote(&mut self, msg: Message) {
        let Body::RequestVote { pre_vote, last_log_index, last_log_term, .. } = msg.body else {
            unreachable!()
        };
        if self.removed_by_committed_config(msg.from) {
            return self.refuse_vote(&msg, pre_vote, VoteRefusal::NotAMember);
        }
        if !self.may_vote() {
            // A disk never admitted (empty after a loss): it may have voted in this very term
            // before, and its log may lack entries it acknowledged.
            return self.refuse_vote(&msg, pre_vote, VoteRefusal::NotAVoter);
        }
        let can_vote = self.voted_for == Some(msg.from)
            || (self.voted_for.is_none() && self.leader.is_none())
            || (pre_vote && msg.term > self.term);
        if !can_vote {
            let refusal = match (self.voted_for, self.leader) {
                (Some(voted_for), _) => VoteRefusal::AlreadyVoted { voted_for },
                (None, Some(leader)) => VoteRefusal::LeaderActive { leader },
                (None, None) => unreachable!("a server with no vote and no leader can vote"),
            };
            return self.refuse_vote(&msg, pre_vote, refusal);
        }
        let up_to_date = self.cfg.bugs.has(Bug::VoteWithoutLogCheck)
            || self.log.is_up_to_date(last_log_index, last_log_term);
        if !up_to_date {
            let refusal = VoteRefusal::LogNotUpToDate {
                voter_last_index: self.log.last_index(),
                voter_last_term: self.log.last_term(),
            };
            return self.refuse_vote(&msg, pre_vote, refusal);
        }
        self.emit(Event::VoteGranted { candidate: msg.from, term: msg.term, pre_vote });
        let body = Body::VoteResponse { pre_vote, granted: true, refusal: None };
        if pre_vote {
            self.send_with_term(msg.from, msg.term, body);
        } else {
            // The vote is part of the hard state: the driver persists it before this answer
            // leaves (Ready::messages is sent after the disk write).
            self.voted_for = Some(msg.from);
            self.hard_state_dirty = true;
            self.reset_election_timer();
            self.send_with_term(msg.from, self.term, body);
        }
    }

    pub(super) fn on_vote_response(&mut self, msg: Message) {
        let Body::VoteResponse { pre_vote, granted, refusal } = msg.body else { unreachable!() };
        if refusal == Some(VoteRefusal::NotAMember) {
            // Only a leader says so (its answer may also have raised our term just now).
            self.removed = true;
            if self.is_campaigning() {
                self.become_follower(self.term, None, RoleReason::Removed { leader: msg.from });
            }
            return;
        }
        let expected = if pre_vote { Role::PreCandidate } else { Role::Candidate };
        if self.role != expected {
            return;
        }
        self.votes.entry(msg.from).or_insert(granted);
        let granted_total = self.votes.values().filter(|g| **g).count();
        let refused_total = self.votes.len() - granted_total;
        let quorum = self.quorum();
        let term = if pre_vote { self.term + 1 } else { self.term };
        self.emit(Event::VoteCounted {
            voter: msg.from,
            term,
            pre_vote,
            granted,
            granted_total: granted_total as u32,
            needed: quorum as u32,
        });
        if granted_total >= quorum {
            if pre_vote {
                self.campaign(RoleReason::PreVoteWon, false);
            } else {
                self.become_leader(granted_total as u32);
            }
        } else if refused_total >= quorum {
            self.become_follower(self.term, None, RoleReason::ElectionLost);
        }
    }

    pub(super) fn on_election_timeout(&mut self) {
        if !self.may_campaign() || self.removed {
            self.reset_election_timer();
            return;
        }
        if self.cfg.pre_vote {
            self.become_pre_candidate();
        } else {
            self.campaign(RoleReason::ElectionTimeout, false);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.leader_contact = None;
        self.fail_forwarded_reads();
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.emit(Event::RoleChanged {
            role: Role::PreCandidate,
            term: self.term,
            leader: None,
            reason: RoleReason::ElectionTimeout,
        });
        self.reset_election_timer();
        if self.quorum() <= 1 {
            return self.campaign(RoleReason::PreVoteWon, false);
        }
        self.transfer_campaign = false;
        self.request_missing_votes();
    }

    /// Sends (again) a vote request to every peer that has not answered in this campaign.
    pub(super) fn request_missing_votes(&mut self) {
        self.vote_retry_deadline = self.now + self.cfg.heartbeat_interval;
        let (last_log_index, last_log_term) = (self.log.last_index(), self.log.last_term());
        let pre_vote = self.role == Role::PreCandidate;
        let transfer = self.transfer_campaign;
        for peer in self.voting_peers() {
            if !self.votes.contains_key(&peer) {
                self.send(peer, Body::RequestVote { pre_vote, last_log_index, last_log_term, transfer });
            }
        }
    }

    /// Starts a real election: a new term, a vote for itself, RequestVote to everyone.
    pub(super) fn campaign(&mut self, reason: RoleReason, transfer: bool) {
        self.term += 1;
        self.voted_for = Some(self.id);
        self.hard_state_dirty = true;
        self.role = Role::Candidate;
        self.leader = None;
        self.leader_contact = None;
        self.fail_forwarded_reads();
        self.votes.clear();
        self.votes.insert(self.id, true);
        self.emit(Event::RoleChanged { role: Role::Candidate, term: self.term, leader: None, reason });
        self.reset_election_timer();
        if self.quorum() <= 1 {
            return self.become_leader(1);
        }
        self.transfer_campaign = transfer;
        self.request_missing_votes();
    }

    fn become_leader(&mut self, votes: u32) {
        assert_eq!(self.role, Role::Candidate, "only a candidate can win an election");
        self.role = Role::Leader;
        self.leader = Some(self.id);
        self.votes.clear();
        self.emit(Event::RoleChanged {
            role: Role::Leader,
            term: self.term,
            leader: Some(self.id),
            reason: RoleReason::ElectionWon { votes },
        });
        let next = self.log.last_index() + 1;
        self.progress = self.peers().into_iter().map(|p| (p, Progress::new(next))).collect();
        self.heartbeat_deadline = self.now + self.cfg.heartbeat_interval;
        self.check_quorum_deadline = self.now + self.cfg.election_timeout;
        self.transfer = None;
        self.reads = Default::default();
        // §5.4.2 and §6.4: an entry of the new term lets the leader commit (and learn the commit
        // index of) everything before it.
        self.append_own(Payload::Noop);
    }

    pub(super) fn on_timeout_now(&mut self, from: super::NodeId) {
        if self.role == Role::Leader || self.leader != Some(from) || !self.may_campaign() {
            return;
        }
        self.campaign(RoleReason::TimeoutNow { from }, true);
    }

    /// §6.2: a leader that has not heard from a majority within an election timeout may be on
    /// the minority side of a partition, where it can commit nothing; it steps down.
    pub(super) fn on_check_quorum(&mut self) {
        if !self.cfg.check_quorum {
            return;
        }
        let voters = &self.log.config().voters;
        let active =
            1 + self.progress.iter().filter(|(id, p)| voters.contains(id) && p.recent_active).count();
        for p in self.progress.values_mut() {
            p.recent_active = false;
        }
        if active < self.quorum() {
            self.become_follower(self.term, None, RoleReason::CheckQuorumFailed);
        }
    }
}
