//! The fault schedule: random crashes, pauses, partitions and heals, plus crashes and isolations
//! at the moments that matter (FoundationDB's "buggify" idea).

use super::{SimEvent, Simulation};
use crate::event::Event;
use crate::raft::{Millis, NodeId, Role};

impl Simulation {
    pub(super) fn crash_node(&mut self, id: NodeId, restart_after: Millis) {
        if !self.node(id).is_up() {
            return;
        }
        self.node(id).crash();
        self.report.crashes += 1;
        self.note(format!("n{id} CRASHED (volatile state and unfinished disk writes lost)"));
        self.schedule(self.now + restart_after, SimEvent::Restart(id));
    }

    /// Random faults find little at random moments; some moments matter more. Like
    /// FoundationDB's "buggify", crash a server soon after it does something whose durability
    /// or follow-up the protocol depends on, and bring it back quickly.
    pub(super) fn maybe_crash_at_critical_point(&mut self, id: NodeId, event: &Event) {
        if !self.cfg.faults {
            return;
        }
        let is_leader = self.node(id).replica.as_ref().is_some_and(|r| r.raft().role() == Role::Leader);
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
        let n = self.provisioned as NodeId;
        let roll = self.rng.below(100);
        if roll < 30 {
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
        } else {
            self.schedule(self.now, SimEvent::Heal);
        }
        let next = self.rng.range(self.params.fault_interval / 2, self.params.fault_interval * 3 / 2);
        self.schedule(self.now + next, SimEvent::Fault);
    }
}
