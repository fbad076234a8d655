//! Raft's safety properties (Figure 3 of the paper), checked after every simulator step, plus
//! exactly-once application of client writes.
//!
//! The checker watches what each server persists, commits and applies, and keeps a global
//! record: the leader of each term, the entry committed and applied at each index, and a hash
//! chain over every persisted log so that Log Matching costs O(1) per entry.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};

use serde::Serialize;

pub use crate::event::Property;

use crate::kv::ClientId;
use crate::raft::{Configuration, Index, NodeId, Payload, Raft, Role, Term};
use crate::replica::{AppliedEntry, Persist};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub property: Property,
    pub step: u64,
    pub detail: String,
}

/// A server's persisted log as hash chains: `chains[i]` covers index `base + 1 + i`, and the
/// configurations in it (which decide whom the server would ask for votes).
#[derive(Debug, Default)]
struct Mirror {
    base: Index,
    base_term: Term,
    base_chain: u64,
    chains: Vec<(Term, u64)>,
    base_config: Configuration,
    configs: Vec<(Index, Configuration)>,
    /// The disk is admitted (`HardState::admitted`): after a restart, this server votes.
    admitted: bool,
}

impl Mirror {
    /// The configuration in force for this log: its latest.
    fn config(&self) -> &Configuration {
        self.configs.last().map_or(&self.base_config, |(_, c)| c)
    }

    /// The last entry's (index, term), what the up-to-date rule compares.
    fn last(&self) -> (Index, Term) {
        match self.chains.last() {
            Some((term, _)) => (self.base + self.chains.len() as Index, *term),
            None => (self.base, self.base_term),
        }
    }

    /// Whether this log holds the committed entry (index, term, chain), or compacted it.
    fn holds(&self, index: Index, term: Term, chain: u64) -> bool {
        index <= self.base || self.at(index) == Some((term, chain))
    }

    fn at(&self, index: Index) -> Option<(Term, u64)> {
        if index <= self.base {
            return None;
        }
        self.chains.get((index - self.base - 1) as usize).copied()
    }

    fn chain_before(&self, index: Index) -> u64 {
        if index - 1 == self.base { self.base_chain } else { self.at(index - 1).map_or(0, |(_, c)| c) }
    }
}

#[derive(Debug, Default)]
pub struct SafetyChecker {
    leaders: BTreeMap<Term, NodeId>,
    /// Per committed index: the entry's term and chain, and the term in which it was first
    /// seen committed (the committing leader's term).
    committed: BTreeMap<Index, (Term, u64, Term)>,
    applied: BTreeMap<Index, (Term, u64, String)>,
    chain_of: HashMap<(Index, Term), u64>,
    mirrors: BTreeMap<NodeId, Mirror>,
    /// A leader's log end when last seen: (term, last index, last term).
    leading: BTreeMap<NodeId, (Term, Index, Term)>,
    commits: BTreeMap<NodeId, Index>,
    fresh_writes: BTreeMap<(ClientId, u64), Index>,
    /// With values unique to each write (the simulator's): where each value was first
    /// written, so that a write sent again under another session is seen taking effect twice.
    unique_values: Option<HashMap<String, Index>>,
    /// A digest of the store (data and sessions) at recent applied indices, and who had it.
    stores: BTreeMap<Index, (NodeId, u64)>,
    violations: Vec<Violation>,
}

/// Applied indices whose store digests are kept for comparison.
const STORES_KEPT: usize = 4_096;

fn digest(payload: &Payload) -> u64 {
    let mut h = DefaultHasher::new();
    payload.hash(&mut h);
    h.finish()
}

fn chain(previous: u64, term: Term, payload: &Payload) -> u64 {
    let mut h = DefaultHasher::new();
    (previous, term, digest(payload)).hash(&mut h);
    h.finish()
}

impl SafetyChecker {
    /// A checker for a cluster of these servers.
    /// Servers added later start with an empty log and no configuration.
    pub fn new(nodes: impl IntoIterator<Item = NodeId>) -> SafetyChecker {
        let nodes: Vec<NodeId> = nodes.into_iter().collect();
        let first = Configuration::new(nodes.iter().copied());
        let mirrors = nodes
            .into_iter()
            .map(|id| (id, Mirror { base_config: first.clone(), admitted: true, ..Mirror::default() }))
            .collect();
        SafetyChecker { mirrors, ..SafetyChecker::default() }
    }

    /// Every write's value is its own (as in the simulator): a value written at two indices is
    /// one write applied twice, whatever sessions it came with.
    pub fn with_unique_values(mut self) -> SafetyChecker {
        self.unique_values = Some(HashMap::new());
        self
    }

    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    fn violation(&mut self, property: Property, step: u64, detail: String) {
        self.violations.push(Violation { property, step, detail });
    }

    /// `node` made `persist` durable.
    pub fn on_persist(&mut self, node: NodeId, persist: &Persist, step: u64) {
        if let Some(snapshot) = &persist.snapshot {
            let (index, term) = (snapshot.meta.index, snapshot.meta.term);
            let base_chain = self
                .committed
                .get(&index)
                .filter(|(t, _, _)| *t == term)
                .map(|(_, c, _)| *c)
                .or_else(|| self.chain_of.get(&(index, term)).copied())
                .unwrap_or(0);
            let base_config = snapshot.meta.config.clone();
            let admitted = self.mirrors.get(&node).is_some_and(|m| m.admitted);
            self.mirrors.insert(
                node,
                Mirror {
                    base: index,
                    base_term: term,
                    base_chain,
                    base_config,
                    admitted,
                    ..Mirror::default()
                },
            );
        }
        if let Some(hard_state) = persist.hard_state {
            self.mirrors.entry(node).or_default().admitted = hard_state.admitted;
        }
        let Some(first) = persist.entries.first().map(|e| e.index) else { return };
        let mirror = self.mirrors.entry(node).or_default();
        assert!(first > mirror.base, "node {node} persisted entry {first} inside its snapshot");
        mirror.chains.truncate((first - mirror.base - 1) as usize);
        mirror.configs.retain(|(index, _)| *index < first);
        let mut found = Vec::new();
        for entry in &persist.entries {
            let c = chain(mirror.chain_before(entry.index), entry.term, &entry.payload);
            mirror.chains.push((entry.term, c));
            if let Payload::Config(config) = &entry.payload {
                mirror.configs.push((entry.index, config.clone()));
            }
            match self.chain_of.get(&(entry.index, entry.term)) {
                Some(existing) if *existing != c => found.push((entry.index, entry.term)),
                Some(_) => {}
                None => {
                    self.chain_of.insert((entry.index, entry.term), c);
                }
            }
        }
        for (index, term) in found {
            let detail = format!(
                "node {node}'s log differs from another server's up to index {index}, \
                 although both hold an entry of term {term} there"
            );
            self.violation(Property::LogMatching, step, detail);
        }
    }

    /// `node`'s disk was lost: it holds nothing, not even the first configuration.
    pub fn on_wipe(&mut self, node: NodeId) {
        self.mirrors.insert(node, Mirror::default());
    }

    /// `node` restarted from its disk: its volatile state is gone. It starts `admitted` or
    /// not, from `config` when its disk holds no log: a disk without the first configuration
    /// that still starts admitted (the `vote-on-empty-disk` defect) votes from now on, which
    /// may already make a committed entry losable.
    pub fn on_restart(
        &mut self,
        node: NodeId,
        snapshot_index: Index,
        admitted: bool,
        config: Configuration,
        step: u64,
    ) {
        self.commits.insert(node, snapshot_index);
        self.leading.remove(&node);
        let mirror = self.mirrors.entry(node).or_default();
        if mirror.base == 0 && mirror.chains.is_empty() {
            mirror.base_config = config;
        }
        let newly_admitted = admitted && !mirror.admitted;
        mirror.admitted = admitted;
        if newly_admitted {
            self.check_commit_is_durable(step);
        }
    }

    /// After `node` handled an input: who leads, and does a leader keep its log?
    pub fn after_input(&mut self, node: NodeId, raft: &Raft, step: u64) {
        if raft.role() != Role::Leader {
            self.leading.remove(&node);
            return;
        }
        let term = raft.term();
        match self.leaders.get(&term) {
            Some(other) if *other != node => {
                let detail = format!("nodes {other} and {node} were both leaders of term {term}");
                self.violation(Property::ElectionSafety, step, detail);
            }
            Some(_) => {}
            None => {
                self.leaders.insert(term, node);
                self.check_leader_completeness(node, raft, step);
            }
        }
        if let Some((t, last, last_term)) = self.leading.get(&node).copied() {
            if t == term {
                let kept = raft.last_index() >= last
                    && (last <= raft.snapshot_index() || raft.term_at(last) == Some(last_term));
                if !kept {
                    let detail = format!("leader {node} of term {term} lost or rewrote its entry {last}");
                    self.violation(Property::LeaderAppendOnly, step, detail);
                }
            }
        }
        let last = raft.last_index();
        self.leading.insert(node, (term, last, raft.term_at(last).unwrap_or(0)));
    }

    /// A leader of term T must hold every entry committed in a term before T. By Log Matching
    /// it suffices to look at the last such entry.
    fn check_leader_completeness(&mut self, node: NodeId, raft: &Raft, step: u64) {
        let leader_term = raft.term();
        let last_before =
            self.committed.iter().rev().find(|(_, (_, _, committed_in))| *committed_in < leader_term);
        let Some((&index, &(term, _, committed_in))) = last_before else { return };
        if index <= raft.snapshot_index() {
            return;
        }
        if raft.term_at(index) != Some(term) {
            let detail = format!(
                "node {node} became leader of term {leader_term} without entry {index} (term {term}), \
                 committed in term {committed_in}"
            );
            self.violation(Property::LeaderCompleteness, step, detail);
        }
    }

    /// Leader Completeness, looked at from the other side: once an entry is committed, no server
    /// lacking it may ever be able to win an election. A server can win if it is a voter of the
    /// configuration in its own log and its log is at least as up-to-date (§5.4.1) as the logs
    /// of a majority of that configuration, counting every server's durable log — crashed ones
    /// too, since they come back. Only admitted disks vote (`HardState::admitted`): a server
    /// restarted on an empty one votes for nobody, while an admitted learner or removed server
    /// does when a candidate counts it. If such a server
    /// exists, some schedule of crashes and messages elects it and loses the entry; this check
    /// reports it at once instead of waiting for the simulator to stumble on that schedule.
    fn check_commit_is_durable(&mut self, step: u64) {
        let Some((&index, &(term, chain, committed_in))) = self.committed.last_key_value() else { return };
        let mut lost = None;
        for (candidate, mirror) in &self.mirrors {
            let config = mirror.config();
            if mirror.holds(index, term, chain) || !mirror.admitted || !config.voters.contains(candidate) {
                continue;
            }
            let (last_index, last_term) = mirror.last();
            let voters: Vec<NodeId> = config
                .voters
                .iter()
                .copied()
                .filter(|v| {
                    self.mirrors.get(v).is_some_and(|m| {
                        let (i, t) = m.last();
                        m.admitted && (last_term, last_index) >= (t, i)
                    })
                })
                .collect();
            if voters.len() >= config.quorum() {
                lost = Some(format!(
                    "entry {index} (term {term}), committed in term {committed_in}, can be lost: node {candidate} \
                     lacks it, yet its log (last entry {last_index}, term {last_term}) is at least as \
                     up-to-date as those of nodes {voters:?}, a majority of its configuration that would elect it"
                ));
                break;
            }
        }
        if let Some(detail) = lost {
            self.violation(Property::LeaderCompleteness, step, detail);
        }
    }

    /// `node`'s store after a round, as a digest (`KvStore::digest`), at its applied index: two
    /// stores at the same applied index must be the same store — however each got there (by
    /// applying entries, or by restoring a snapshot).
    pub fn store_at(&mut self, node: NodeId, applied: Index, digest: u64, step: u64) {
        match self.stores.get(&applied) {
            Some((other, theirs)) if *theirs != digest => {
                let detail = format!(
                    "the stores of nodes {other} and {node} differ at applied index {applied} (a snapshot or \
                     an apply that does not rebuild the same state)"
                );
                self.violation(Property::StateMachineSafety, step, detail);
            }
            Some(_) => {}
            None => {
                self.stores.insert(applied, (node, digest));
                if self.stores.len() > STORES_KEPT {
                    self.stores.pop_first();
                }
            }
        }
    }

    /// After `node` finished a round: what it committed and applied.
    pub fn after_finish(&mut self, node: NodeId, raft: &Raft, applied: &[AppliedEntry], step: u64) {
        let commit = raft.commit_index();
        let previous = self.commits.get(&node).copied().unwrap_or(0);
        if commit > previous {
            let mirror = self.mirrors.get(&node);
            let mut found = Vec::new();
            for index in previous + 1..=commit {
                let Some(mine) = mirror.and_then(|m| m.at(index)) else { continue };
                match self.committed.get(&index) {
                    Some(&(term, chain, _)) if (term, chain) != mine => found.push((index, mine.0, term)),
                    Some(_) => {}
                    None => {
                        self.committed.insert(index, (mine.0, mine.1, raft.term()));
                    }
                }
            }
            for (index, mine, theirs) in found {
                let detail = format!(
                    "node {node} committed a different entry at index {index} (term {mine}) than was committed before (term {theirs})"
                );
                self.violation(Property::LeaderCompleteness, step, detail);
            }
        }
        self.commits.insert(node, commit);
        if commit > previous {
            self.check_commit_is_durable(step);
        }
        for entry in applied {
            let d = digest(&entry.payload);
            match self.applied.get(&entry.index) {
                Some((term, other, text)) if (*term, *other) != (entry.term, d) => {
                    let detail = format!(
                        "node {node} applied \"{}\" (term {}) at index {} where another server applied \"{text}\" (term {term})",
                        entry.payload.describe(),
                        entry.term,
                        entry.index
                    );
                    self.violation(Property::StateMachineSafety, step, detail);
                }
                Some(_) => {}
                None => {
                    self.applied.insert(entry.index, (entry.term, d, entry.payload.describe()));
                }
            }
            if let Payload::Command(command) = &entry.payload {
                if entry.duplicate {
                    continue;
                }
                let key = (command.client, command.seq);
                match self.fresh_writes.get(&key) {
                    Some(first) if *first != entry.index => {
                        let detail = format!(
                            "write {} (client {}, seq {}) took effect at index {first} and again at index {} on node {node}",
                            command.op, command.client, command.seq, entry.index
                        );
                        self.violation(Property::ExactlyOnce, step, detail);
                    }
                    Some(_) => {}
                    None => {
                        self.fresh_writes.insert(key, entry.index);
                    }
                }
                self.check_value_written_once(node, command, entry.index, step);
            }
        }
    }

    fn check_value_written_once(
        &mut self,
        node: NodeId,
        command: &crate::kv::Command,
        index: Index,
        step: u64,
    ) {
        let Some(values) = self.unique_values.as_mut() else { return };
        let value = match &command.op {
            crate::kv::WriteOp::Put { value, .. } => value,
            crate::kv::WriteOp::Cas { new, .. } => new,
            crate::kv::WriteOp::Delete { .. } => return,
        };
        match values.get(value) {
            Some(first) if *first != index => {
                let detail = format!(
                    "write {} took effect at index {first} and again at index {index} on node {node}, the second \
                     time as client {} seq {}: sent again on another session",
                    command.op, command.client, command.seq
                );
                self.violation(Property::ExactlyOnce, step, detail);
            }
            Some(_) => {}
            None => {
                values.insert(value.clone(), index);
            }
        }
    }
}
