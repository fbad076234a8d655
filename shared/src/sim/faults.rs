//! The fault schedule: random crashes, pauses, partitions and heals, plus crashes and isolations
//! at the moments that matter (FoundationDB's "buggify" idea).

use super::{SimEvent, Simulation};
use crate::event::Event;
use crate::raft::{Millis, NodeId, Role};
use crate::replica::Persist;

impl Simulation {
    pub(super) fn crash_node(&mut self, id: NodeId, restart_after: Millis) {
        if !self.node(id).is_up() {
            return;
        }
        self.maybe_tear_the_write_in_progress(id);
        self.node(id).crash();
        self.links_to(id, false);
        self.report.crashes += 1;
        self.note(format!("n{id} CRASHED (volatile state and unfinished disk writes lost)"));
        self.schedule(self.now + restart_after, SimEvent::Restart(id));
    }

    /// A crash in the middle of a disk write leaves a prefix of its records on disk (the hard
    /// state first, then entries in order, as the node writes them): never acknowledged, so
    /// Raft must be indifferent to whether it kept them. A snapshot's install is all or
    /// nothing (the node renames the file into place).
    fn maybe_tear_the_write_in_progress(&mut self, id: NodeId) {
        let step = self.step;
        let Some(work) = self.nodes[id as usize - 1].io.as_ref() else { return };
        let persist = &work.persist;
        if persist.snapshot.is_some() || persist.is_empty() {
            return;
        }
        let records = usize::from(persist.hard_state.is_some()) + persist.entries.len();
        let keep = self.rng.below(records as u64 + 1) as usize;
        if keep == 0 || keep == records {
            return;
        }
        let entries_kept = keep - usize::from(persist.hard_state.is_some());
        let torn = Persist {
            snapshot: None,
            hard_state: persist.hard_state,
            entries: persist.entries[..entries_kept].to_vec(),
        };
        self.node(id).disk.write(&torn);
        self.checker.on_persist(id, &torn, step);
        self.report.torn_writes += 1;
        self.note(format!("n{id}: a crash tore its disk write after {keep} of {records} records"));
    }

    /// The server's disk is lost and it comes back on an empty one (a wiped directory, a lost
    /// volume): within the run's budget. The rule it tests: such a server never votes or
    /// counts until it is added again, so the cluster loses no committed write.
    pub(super) fn wipe_node(&mut self, id: NodeId, restart_after: Millis) {
        if self.params.wipes == 0 || self.node(id).disk.is_empty() || self.calm() {
            return;
        }
        // A cluster whose admitted voters are no longer a majority cannot elect a leader ever
        // again (only an unsafe recovery could): that is data loss, not a fault to survive.
        if !self.majority_admitted_without(id) {
            return;
        }
        self.params.wipes -= 1;
        let was_up = self.node(id).is_up();
        if was_up {
            self.node(id).crash();
            self.links_to(id, false);
            self.report.crashes += 1;
        }
        self.node(id).disk.wipe();
        self.checker.on_wipe(id);
        self.report.disks_wiped += 1;
        self.note(format!("n{id} CRASHED and its DISK WAS WIPED: it restarts on an empty disk"));
        if was_up {
            self.schedule(self.now + restart_after, SimEvent::Restart(id));
        }
    }

    /// The moment a wiped disk hurts most: an entry just committed on a majority that
    /// includes `holder`, while some other voter still lacks it. Losing `holder`'s disk then
    /// leaves the entry on a minority.
    fn maybe_wipe_a_holder(&mut self, leader: NodeId, committed: crate::raft::Index) {
        if self.params.wipes == 0 || !self.rng.chance(150_000) {
            return;
        }
        let Some(raft) = self.node(leader).replica.as_ref().map(|r| r.raft()) else { return };
        let term = raft.term_at(committed);
        let voters = raft.voters();
        let holds = |sim: &Simulation, id: NodeId| {
            sim.nodes[id as usize - 1].replica.as_ref().is_some_and(|r| r.raft().term_at(committed) == term)
        };
        let lacking = voters.iter().any(|v| *v != leader && !holds(self, *v));
        let holders: Vec<NodeId> =
            voters.iter().copied().filter(|v| *v != leader && holds(self, *v)).collect();
        if lacking && !holders.is_empty() {
            let id = *self.rng.pick(&holders);
            let after = self.rng.range(1, 200);
            self.wipe_node(id, after);
        }
    }

    /// Random faults find little at random moments; some moments matter more. Like
    /// FoundationDB's "buggify", crash a server soon after it does something whose durability
    /// or follow-up the protocol depends on, and bring it back quickly.
    pub(super) fn maybe_crash_at_critical_point(&mut self, id: NodeId, event: &Event) {
        if !self.cfg.faults || self.calm() {
            return;
        }
        if let Event::SnapshotSent { .. } = event {
            // A compaction while the snapshot is on its way replaces the one being sent: the
            // transfer must finish with the snapshot it started (or start over), whatever it holds.
            if self.rng.chance(300_000) {
                let after = self.rng.range(0, 10);
                self.schedule(self.now + after, SimEvent::Compact(id));
            }
        }
        let is_leader = self.node(id).replica.as_ref().is_some_and(|r| r.raft().role() == Role::Leader);
        if let (Event::CommitAdvanced { to, .. }, true) = (event, is_leader) {
            self.maybe_wipe_a_holder(id, *to);
        }
        let (crash, isolate) = match event {
            Event::VoteGranted { pre_vote: false, .. } => (100_000, 0),
            Event::RoleChanged { role: Role::Leader, .. } => (100_000, 100_000),
            Event::CommitAdvanced { .. } => (30_000, 50_000),
            // A membership change left uncommitted by a leader that then fails is where
            // changing membership goes wrong (the 2015 bug): make it common.
            Event::EntriesAppended { entries }
                if is_leader && entries.iter().any(|e| e.text.starts_with("config")) =>
            {
                (300_000, 300_000)
            }
            Event::EntriesAppended { .. } if is_leader => (20_000, 20_000),
            _ => return,
        };
        if self.rng.chance(crash) {
            let incarnation = self.node(id).incarnation;
            let after = self.rng.range(0, 15);
            self.schedule(self.now + after, SimEvent::Crash { node: id, incarnation });
        } else if self.rng.chance(isolate) {
            let others: Vec<NodeId> = (1..=self.provisioned as NodeId).filter(|n| *n != id).collect();
            self.network.split(&[id], &others);
            self.report.partitions += 1;
            self.note(format!("PARTITION: n{id} isolated"));
            let heal_after = self.rng.range(50, 1_000);
            self.schedule(self.now + heal_after, SimEvent::Heal);
        }
    }

    pub(super) fn inject_fault(&mut self) {
        if self.calm() {
            return;
        }
        let n = self.provisioned as NodeId;
        let roll = self.rng.below(100);
        if roll < 3 && self.params.wipes > 0 {
            let id = self.rng.range(1, n);
            let restart_after = self.rng.range(10, 600);
            self.wipe_node(id, restart_after);
        } else if roll < 30 {
            let id = self.rng.range(1, n);
            let restart_after = self.rng.range(10, 600);
            self.crash_node(id, restart_after);
        } else if roll < 45 {
            let id = self.rng.range(1, n);
            if self.node(id).is_up() && !self.node(id).paused {
                self.node(id).paused = true;
                let delay = self.rng.range(50, 600);
                self.note(format!("n{id} PAUSED for {delay} ms"));
                self.schedule(self.now + delay, SimEvent::Resume(id));
            }
        } else if roll < 75 {
            let mut ids: Vec<NodeId> = (1..=n).collect();
            for i in (1..ids.len()).rev() {
                let j = self.rng.below(i as u64 + 1) as usize;
                ids.swap(i, j);
            }
            self.report.partitions += 1;
            if self.rng.chance(300_000) {
                let (a, b) = (ids[0], ids[1]);
                self.network.block(a, b);
                self.note(format!("one-way partition: n{a} → n{b} messages lost"));
            } else {
                let cut = self.rng.range(1, n - 1) as usize;
                let (a, b) = ids.split_at(cut);
                self.network.split(a, b);
                self.note(format!("PARTITION {a:?} | {b:?}"));
            }
            let heal_after = self.rng.range(100, 1_500);
            self.schedule(self.now + heal_after, SimEvent::Heal);
        } else if roll < 85 {
            self.schedule(self.now, SimEvent::Heal);
        } else if roll < 90 {
            let id = self.rng.range(1, n);
            self.schedule(self.now, SimEvent::Compact(id));
        } else if roll < 93 {
            let p = self.rng.below(self.proxies.len() as u64) as usize;
            let restart_after = self.rng.range(20, 800);
            self.crash_proxy(p, restart_after);
        } else {
            self.schedule(self.now, SimEvent::Transfer);
        }
        let next = self.rng.range(self.params.fault_interval / 2, self.params.fault_interval * 3 / 2);
        self.schedule(self.now + next, SimEvent::Fault);
    }
}

impl Simulation {
    /// A server compacts its log at its applied index now, as an admin's `snapshot` would.
    pub(super) fn compact(&mut self, id: NodeId) {
        let node = self.node(id);
        if node.io.is_some() || node.paused {
            // Between a round's disk write and its end the core takes no input; a stopped
            // process does nothing.
            return;
        }
        let Some(replica) = node.replica.as_mut() else { return };
        if let Some(snapshot) = replica.compact_now() {
            node.disk.compact(&snapshot);
            self.note(format!("n{id} compacted its log up to {}", snapshot.meta.index));
        }
        self.run_node(id);
    }

    /// The leader is asked to hand leadership to another voter (dissertation §3.10).
    pub(super) fn transfer(&mut self) {
        let leader = self
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.replica.as_ref().map(|r| (i as NodeId + 1, r)))
            .filter(|(_, r)| r.raft().role() == Role::Leader)
            .max_by_key(|(_, r)| r.raft().term())
            .map(|(id, r)| (id, r.raft().voters()));
        let Some((leader, voters)) = leader else { return };
        let others: Vec<NodeId> = voters.into_iter().filter(|v| *v != leader).collect();
        if others.is_empty() || self.node(leader).io.is_some() {
            return;
        }
        let to = *self.rng.pick(&others);
        let now = self.now;
        let replica = self.node(leader).replica.as_mut().expect("a leader is up");
        let _ = replica.transfer_leadership(now, to);
        self.note(format!("n{leader} asked to hand leadership to n{to}"));
        self.run_node(leader);
    }
}

impl Simulation {
    /// Whether every configuration a server may act on keeps a majority of voters whose disks
    /// are admitted once `lost` is not counted — the ones in force on servers, and the ones a
    /// removal the operator asked for would bring (its entry may be appended at any moment).
    pub(super) fn majority_admitted_without(&self, lost: NodeId) -> bool {
        let mut configs: Vec<crate::raft::Configuration> = self
            .nodes
            .iter()
            .filter_map(|n| n.replica.as_ref())
            .map(|r| r.raft().membership().clone())
            .collect();
        let asked: Vec<_> = configs
            .iter()
            .flat_map(|config| {
                self.removals_asked.iter().map(move |id| {
                    let mut after = config.clone();
                    after.voters.remove(id);
                    after
                })
            })
            .collect();
        configs.extend(asked.into_iter().filter(|c| !c.voters.is_empty()));
        configs.iter().all(|config| {
            let admitted = config
                .voters
                .iter()
                .filter(|v| **v != lost)
                .filter(|v| {
                    let node = &self.nodes[**v as usize - 1];
                    node.replica.as_ref().map_or(node.disk.admitted(), |r| r.raft().admitted())
                })
                .count();
            admitted >= config.quorum()
        })
    }
}
