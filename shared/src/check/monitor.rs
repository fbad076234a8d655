//! The live invariant monitor: Raft's safety properties checked on a real cluster, from the
//! observation stream alone.
//!
//! The simulator's checker sees inside every server; a proxy sees only what servers report —
//! their events (roles, appended and truncated entries, commits) and, after a reconnect, their
//! whole log. That is enough to catch a broken property as it happens on real processes:
//!
//! - **Election Safety**: two servers say they lead the same term.
//! - **Log Matching**: two logs hold an entry of the same index and term, but differ before it.
//! - **Leader Completeness**: a server becomes leader of a term without an entry that was
//!   committed in an earlier term.
//! - **State Machine Safety**: two servers commit different entries at the same index; a
//!   server removes an entry it had committed, or (a student's node) its commit index goes
//!   back.
//!
//! Only positive evidence raises an alarm: an entry the monitor has not seen (events lost under
//! load, a compacted prefix) proves nothing, so a missing entry is never reported, only a
//! different one. A server whose events had a gap is not judged until its next full log.

use std::collections::{BTreeMap, BTreeSet};

use crate::event::{Alarm, EntrySummary, Event, LogMirror, Observed};
use crate::raft::{Index, NodeId, Role, Term};

use super::Property;

/// Committed indices remembered, newest first; older ones were long since compared.
const COMMITTED_KEPT: usize = 20_000;
/// Entries compared per pair of logs for Log Matching.
const MATCHING_DEPTH: usize = 2_000;
/// Alarms kept.
const ALARMS_KEPT: usize = 20;

#[derive(Debug, Clone)]
struct Committed {
    term: Term,
    text: std::sync::Arc<str>,
    /// The committing server's term when it committed (the entry was committed in this term
    /// or earlier).
    in_term: Term,
    node: NodeId,
}

#[derive(Debug, Default)]
struct Server {
    log: LogMirror,
    commit: Index,
    /// Events were missed: wait for a full log before judging this server.
    unsure: bool,
}

#[derive(Debug, Default)]
pub struct Monitor {
    servers: BTreeMap<NodeId, Server>,
    leaders: BTreeMap<Term, NodeId>,
    committed: BTreeMap<Index, Committed>,
    alarms: Vec<Alarm>,
    raised: BTreeSet<(Property, Term, Option<Index>)>,
    /// Logs changed since the last Log Matching pass.
    dirty: bool,
}

impl Monitor {
    pub fn new() -> Monitor {
        Monitor::default()
    }

    /// Forgets everything (the cluster was reset onto empty disks).
    pub fn reset(&mut self) {
        *self = Monitor::default();
    }

    pub fn alarms(&self) -> &[Alarm] {
        &self.alarms
    }

    /// A server's whole log (after a (re)connection or a gap).
    pub fn log(&mut self, node: NodeId, log: LogMirror) {
        let server = self.servers.entry(node).or_default();
        server.log = log;
        server.unsure = false;
        server.commit = server.commit.min(server.log.last_index());
        self.dirty = true;
    }

    /// Events from a server were lost: do not judge it until its next full log.
    pub fn gap(&mut self, node: NodeId) {
        self.servers.entry(node).or_default().unsure = true;
    }

    /// A server restarted: its commit index starts again from its snapshot.
    pub fn restarted(&mut self, node: NodeId) {
        self.servers.entry(node).or_default().commit = 0;
    }

    /// Follows one server's events, in the order it emitted them. Returns the new alarms.
    pub fn observe(&mut self, observed: &Observed) -> Vec<Alarm> {
        let before = self.alarms.len();
        let node = observed.node;
        let server = self.servers.entry(node).or_default();
        match &observed.event {
            Event::LogTruncated { from } if !server.unsure && *from <= server.commit => {
                // A committed entry removed: it was applied, and is gone (§5.4).
                let (from, commit) = (*from, server.commit);
                let term = server.log.get(from).map_or(0, |e| e.term);
                server.log.apply(&observed.event);
                self.dirty = true;
                self.raise(
                    Property::StateMachineSafety,
                    vec![node],
                    term,
                    Some(from),
                    (
                        format!("node {node} removed its entries from {from} on, though it had committed up to {commit}"),
                        format!(
                            "el nodo {node} borró sus entradas desde la {from}, aunque había confirmado hasta la {commit}"
                        ),
                    ),
                );
            }
            Event::EntriesAppended { .. } | Event::LogTruncated { .. } | Event::SnapshotTaken { .. } => {
                server.log.apply(&observed.event);
                self.dirty = true;
            }
            Event::CommitAdvanced { from, to, term } if to < from => {
                // Only a student's node can say this (`crate::hosted`): what it committed is
                // committed for ever, whatever it restarts with.
                let (from, to, term) = (*from, *to, *term);
                self.raise(
                    Property::StateMachineSafety,
                    vec![node],
                    term,
                    Some(to),
                    (
                        format!("node {node}'s commit index went back from {from} to {to}"),
                        format!("el índice de confirmación del nodo {node} retrocedió de {from} a {to}"),
                    ),
                );
            }
            Event::SnapshotInstalled { index, .. } => {
                server.log.apply(&observed.event);
                server.commit = server.commit.max(*index);
                self.dirty = true;
            }
            Event::Recovered { snapshot_index, .. } => {
                server.commit = *snapshot_index;
            }
            Event::CommitAdvanced { from, to, term } => {
                let (from, to, term) = (*from, *to, *term);
                server.commit = server.commit.max(to);
                if !server.unsure {
                    self.committed_on(node, from, to, term);
                }
            }
            Event::RoleChanged { role: Role::Leader, term, .. } => {
                let term = *term;
                self.elected(node, term);
            }
            _ => {}
        }
        self.alarms[before..].to_vec()
    }

    fn committed_on(&mut self, node: NodeId, from: Index, to: Index, in_term: Term) {
        let entries: Vec<EntrySummary> = {
            let log = &self.servers[&node].log;
            (from + 1..=to).filter_map(|i| log.get(i).cloned()).collect()
        };
        for entry in entries {
            match self.committed.get(&entry.index) {
                Some(seen) if seen.term != entry.term => {
                    let (other, seen_term) = (seen.node, seen.term);
                    self.raise(
                        Property::StateMachineSafety,
                        vec![other, node],
                        in_term,
                        Some(entry.index),
                        (
                            format!(
                                "index {} was committed as an entry of term {seen_term} on node {other} and as one \
                                 of term {} (\"{}\") on node {node}",
                                entry.index, entry.term, entry.text
                            ),
                            format!(
                                "la posición {} se confirmó como una entrada del término {seen_term} en el nodo \
                                 {other} y como una del término {} («{}») en el nodo {node}",
                                entry.index, entry.term, entry.text
                            ),
                        ),
                    );
                }
                Some(_) => {}
                None => {
                    self.committed
                        .insert(entry.index, Committed { term: entry.term, text: entry.text, in_term, node });
                }
            }
        }
        while self.committed.len() > COMMITTED_KEPT {
            self.committed.pop_first();
        }
    }

    fn elected(&mut self, node: NodeId, term: Term) {
        match self.leaders.get(&term) {
            Some(other) if *other != node => {
                let other = *other;
                self.raise(
                    Property::ElectionSafety,
                    vec![other, node],
                    term,
                    None,
                    (
                        format!("nodes {other} and {node} both became leader of term {term}"),
                        format!("los nodos {other} y {node} fueron ambos líderes del término {term}"),
                    ),
                );
            }
            Some(_) => {}
            None => {
                self.leaders.insert(term, node);
            }
        }
        let server = &self.servers[&node];
        if server.unsure {
            return;
        }
        let missing =
            self.committed.iter().rev().filter(|(_, c)| c.in_term < term).find_map(|(index, c)| match server
                .log
                .get(*index)
            {
                Some(mine) if mine.term != c.term => Some((*index, c.clone(), mine.term)),
                _ => None,
            });
        if let Some((index, c, mine)) = missing {
            self.raise(
                Property::LeaderCompleteness,
                vec![node, c.node],
                term,
                Some(index),
                (
                    format!(
                        "node {node} became leader of term {term} with an entry of term {mine} at index {index}, \
                         where node {} had committed \"{}\" of term {} in term {}",
                        c.node, c.text, c.term, c.in_term
                    ),
                    format!(
                        "el nodo {node} fue líder del término {term} con una entrada del término {mine} en la \
                         posición {index}, donde el nodo {} había confirmado «{}» del término {} en el término {}",
                        c.node, c.text, c.term, c.in_term
                    ),
                ),
            );
        }
    }

    /// Compares every pair of logs (call now and then; it costs O(servers² × depth)).
    pub fn check_logs(&mut self) -> Vec<Alarm> {
        if !self.dirty {
            return Vec::new();
        }
        self.dirty = false;
        let before = self.alarms.len();
        let ids: Vec<NodeId> = self.servers.iter().filter(|(_, s)| !s.unsure).map(|(id, _)| *id).collect();
        let mut found = Vec::new();
        for (i, a) in ids.iter().enumerate() {
            for b in &ids[i + 1..] {
                if let Some(problem) = mismatch(&self.servers[a].log, &self.servers[b].log) {
                    found.push((*a, *b, problem));
                }
            }
        }
        for (a, b, (index, term, differs)) in found {
            self.raise(
                Property::LogMatching,
                vec![a, b],
                term,
                Some(differs),
                (
                    format!(
                        "nodes {a} and {b} both hold an entry of term {term} at index {index}, but their entries at \
                         index {differs} differ"
                    ),
                    format!(
                        "los nodos {a} y {b} tienen una entrada del término {term} en la posición {index}, pero sus \
                         entradas en la posición {differs} difieren"
                    ),
                ),
            );
        }
        self.alarms[before..].to_vec()
    }

    fn raise(
        &mut self,
        property: Property,
        nodes: Vec<NodeId>,
        term: Term,
        index: Option<Index>,
        (detail, detail_es): (String, String),
    ) {
        if !self.raised.insert((property, term, index)) {
            return;
        }
        self.alarms.push(Alarm { property, nodes, term, index, detail, detail_es: Some(detail_es) });
        if self.alarms.len() > ALARMS_KEPT {
            self.alarms.remove(0);
        }
    }
}

/// The newest index where both logs hold an entry of the same term, and the first index below
/// it where they differ, if they do: (index, term, differing index).
fn mismatch(a: &LogMirror, b: &LogMirror) -> Option<(Index, Term, Index)> {
    let first = a.first_kept().max(b.first_kept());
    let last = a.last_index().min(b.last_index());
    if last < first {
        return None;
    }
    let anchor = (first..=last)
        .rev()
        .take(MATCHING_DEPTH)
        .find(|i| matches!((a.get(*i), b.get(*i)), (Some(x), Some(y)) if x.term == y.term))?;
    let term = a.get(anchor)?.term;
    (first..=anchor).rev().take(MATCHING_DEPTH).find_map(|i| match (a.get(i), b.get(i)) {
        (Some(x), Some(y)) if x.term != y.term || x.text != y.text => Some((anchor, term, i)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(node: NodeId, event: Event) -> Observed {
        Observed { node, at: 0, event }
    }

    fn append(node: NodeId, entries: &[(Index, Term, &str)]) -> Observed {
        seen(
            node,
            Event::EntriesAppended {
                entries: entries
                    .iter()
                    .map(|(index, term, text)| EntrySummary {
                        index: *index,
                        term: *term,
                        text: (*text).into(),
                    })
                    .collect(),
            },
        )
    }

    fn leads(node: NodeId, term: Term) -> Observed {
        seen(
            node,
            Event::RoleChanged {
                role: Role::Leader,
                term,
                leader: Some(node),
                reason: crate::event::RoleReason::ElectionWon { votes: 2 },
            },
        )
    }

    fn commit(node: NodeId, from: Index, to: Index, term: Term) -> Observed {
        seen(node, Event::CommitAdvanced { from, to, term })
    }

    #[test]
    fn a_node_that_removes_a_committed_entry_or_takes_back_its_commit_index_raises_an_alarm() {
        let mut m = Monitor::new();
        assert!(m.observe(&append(1, &[(1, 1, "a"), (2, 1, "b"), (3, 1, "c")])).is_empty());
        assert!(m.observe(&commit(1, 0, 2, 1)).is_empty());
        // Removing the uncommitted entry 3 is the log repair of §5.3: nothing wrong.
        assert!(m.observe(&seen(1, Event::LogTruncated { from: 3 })).is_empty());
        let alarms = m.observe(&seen(1, Event::LogTruncated { from: 2 }));
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!(alarms[0].detail.contains("committed up to 2"));
        let alarms = m.observe(&commit(2, 5, 3, 2));
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!(alarms[0].detail.contains("went back from 5 to 3"));
    }

    #[test]
    fn a_correct_history_raises_nothing() {
        let mut m = Monitor::new();
        for n in 1..=3 {
            assert!(m.observe(&append(n, &[(1, 1, "a"), (2, 1, "b")])).is_empty());
        }
        assert!(m.observe(&leads(1, 1)).is_empty());
        for n in 1..=3 {
            assert!(m.observe(&commit(n, 0, 2, 1)).is_empty());
        }
        // A later leader with the committed entries.
        assert!(m.observe(&leads(2, 2)).is_empty());
        assert!(m.check_logs().is_empty());
    }

    #[test]
    fn two_leaders_of_one_term_break_election_safety() {
        let mut m = Monitor::new();
        m.observe(&leads(1, 3));
        let alarms = m.observe(&leads(2, 3));
        assert_eq!(alarms.len(), 1);
        assert_eq!(alarms[0].property, Property::ElectionSafety);
        assert_eq!((alarms[0].term, alarms[0].nodes.clone()), (3, vec![1, 2]));
    }

    #[test]
    fn different_entries_committed_at_one_index_break_state_machine_safety() {
        let mut m = Monitor::new();
        m.observe(&append(1, &[(1, 1, "x")]));
        m.observe(&append(2, &[(1, 2, "y")]));
        assert!(m.observe(&commit(1, 0, 1, 3)).is_empty());
        let alarms = m.observe(&commit(2, 0, 1, 4));
        assert_eq!(alarms[0].property, Property::StateMachineSafety);
        assert_eq!(alarms[0].index, Some(1));
    }

    #[test]
    fn a_leader_without_a_committed_entry_breaks_leader_completeness() {
        let mut m = Monitor::new();
        m.observe(&append(1, &[(1, 1, "x")]));
        m.observe(&commit(1, 0, 1, 2));
        m.observe(&append(3, &[(1, 2, "y")]));
        let alarms = m.observe(&leads(3, 3));
        assert_eq!(alarms[0].property, Property::LeaderCompleteness);
        // A leader of the same term as the commit is not judged (it may have been elected first).
        let mut m = Monitor::new();
        m.observe(&append(1, &[(1, 1, "x")]));
        m.observe(&commit(1, 0, 1, 3));
        m.observe(&append(3, &[(1, 2, "y")]));
        assert!(m.observe(&leads(3, 3)).is_empty());
    }

    #[test]
    fn logs_that_agree_on_an_entry_but_not_before_it_break_log_matching() {
        let mut m = Monitor::new();
        m.observe(&append(1, &[(1, 1, "a"), (2, 2, "b")]));
        m.observe(&append(2, &[(1, 1, "other"), (2, 2, "b")]));
        let alarms = m.check_logs();
        assert_eq!(alarms.len(), 1);
        assert_eq!(alarms[0].property, Property::LogMatching);
        assert_eq!(alarms[0].index, Some(1));
    }

    #[test]
    fn a_server_with_missed_events_is_not_judged_until_its_full_log_arrives() {
        let mut m = Monitor::new();
        m.observe(&append(1, &[(1, 1, "x")]));
        m.observe(&commit(1, 0, 1, 2));
        m.gap(3);
        m.observe(&append(3, &[(1, 2, "stale view")]));
        assert!(m.observe(&leads(3, 3)).is_empty());
        assert!(m.check_logs().is_empty());
        m.log(3, LogMirror::window(0, 0, vec![EntrySummary { index: 1, term: 1, text: "x".into() }]));
        assert!(m.check_logs().is_empty());
    }
}
