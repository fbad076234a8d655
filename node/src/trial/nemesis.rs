//! The nemesis of `consenso test`: one fault at a time, chosen at random, held for a moment
//! and undone — partitions that cut the leader off, crashes of the leader and of a minority
//! (only of nodes that keep their state on disk), pauses, message loss and delay — each
//! written down with when it happened, so that a verdict can say what was going on.

use std::time::{Duration, Instant};

use shared::protocol::AdminCommand;
use shared::raft::NodeId;
use shared::rng::Rng;

use crate::bench::{admin, admin_leader};

/// One fault, as the summary tells it.
pub struct Fault {
    pub at_s: f64,
    pub what: String,
}

pub struct Nemesis {
    pub proxies: Vec<String>,
    pub token: String,
    pub nodes: Vec<NodeId>,
    /// The nodes keep their state across a crash: crashing them is a fair test.
    pub durable: bool,
    pub rng: Rng,
    pub start: Instant,
    /// Faults injected so far.
    pub turn: usize,
}

impl Nemesis {
    /// Faults until `end`; returns what it did.
    pub async fn run(mut self, end: Instant) -> Vec<Fault> {
        let mut faults = Vec::new();
        // Let the workload start on a healthy cluster.
        tokio::time::sleep(Duration::from_secs(2)).await;
        while Instant::now() + Duration::from_secs(3) < end {
            let leader = admin_leader(&self.proxies, &self.token).await;
            let (what, undo) = self.strike(leader).await;
            faults.push(Fault { at_s: self.start.elapsed().as_secs_f64(), what });
            tokio::time::sleep(Duration::from_millis(1_500 + self.rng.below(1_500))).await;
            for command in undo {
                let _ = admin(&self.proxies, &self.token, command).await;
            }
            tokio::time::sleep(Duration::from_millis(1_000 + self.rng.below(1_000))).await;
        }
        faults
    }

    /// Injects one fault; what it was, and the commands that undo it.
    async fn strike(&mut self, leader: Option<NodeId>) -> (String, Vec<AdminCommand>) {
        let n = self.nodes.len();
        let minority = (n - 1) / 2;
        let victim = leader.unwrap_or_else(|| self.nodes[self.rng.below(n as u64) as usize]);
        let others: Vec<NodeId> = self.nodes.iter().copied().filter(|id| *id != victim).collect();
        // Every kind in turn, the leader cut off first and every third time (the fault that
        // catches the most mistakes), crashes only of nodes that keep their state.
        let kinds: &[u64] = if self.durable { &[0, 4, 2, 3, 0, 5] } else { &[0, 2, 3] };
        let kind = kinds[self.turn % kinds.len()];
        self.turn += 1;
        let (what, command, undo) = match kind {
            0 => {
                // The leader with at most a minority beside it: the rest must elect another.
                let mut side = vec![victim];
                side.extend(others.iter().take(minority.saturating_sub(1)));
                let what = match leader {
                    Some(_) => format!("partition: {side:?} (the leader's side) cut off from the rest"),
                    None => format!("partition: {side:?} cut off from the rest"),
                };
                (what, AdminCommand::Partition { groups: vec![side] }, vec![AdminCommand::Heal])
            }
            2 => {
                let node = others[self.rng.below(others.len() as u64) as usize];
                (
                    format!("pause node {node}"),
                    AdminCommand::Pause { node },
                    vec![AdminCommand::Resume { node }],
                )
            }
            3 => {
                let rate = 0.2;
                let what = format!("lose {:.0}% of every message, delay each 30 ms", rate * 100.0);
                let _ = admin(&self.proxies, &self.token, AdminCommand::Delay { node: None, ms: 30 }).await;
                (what, AdminCommand::Drop { node: None, rate }, vec![AdminCommand::Heal])
            }
            4 => (
                format!("crash node {victim}{}", if leader.is_some() { " (the leader)" } else { "" }),
                AdminCommand::Crash { node: victim },
                vec![AdminCommand::Restart { node: victim }],
            ),
            _ => {
                let crashed: Vec<NodeId> = others.iter().copied().take(minority).collect();
                for node in crashed.iter().skip(1) {
                    let _ = admin(&self.proxies, &self.token, AdminCommand::Crash { node: *node }).await;
                }
                let first = crashed.first().copied().unwrap_or(victim);
                let undo = crashed.iter().map(|node| AdminCommand::Restart { node: *node }).collect();
                (format!("crash nodes {crashed:?} (a minority)"), AdminCommand::Crash { node: first }, undo)
            }
        };
        let _ = admin(&self.proxies, &self.token, command).await;
        (what, undo)
    }
}
