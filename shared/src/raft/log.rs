//! The in-memory view of a server's log: a snapshot prefix followed by entries, plus the
//! bookkeeping of what has been handed to storage.

use crate::types::{Configuration, Entry, Index, Payload, SnapshotMeta, Term};

#[derive(Debug, Clone)]
pub(crate) struct RaftLog {
    /// The compacted prefix: everything up to `snapshot.index` is in the snapshot.
    snapshot: SnapshotMeta,
    /// `entries[i].index == snapshot.index + 1 + i`.
    entries: Vec<Entry>,
    /// First index whose entry changed since the last `Ready` (appended or overwritten).
    /// Everything from here on must be handed to storage.
    persist_from: Index,
    /// Configuration entries present in `entries`, in index order, so that the configuration
    /// in force never needs a scan of the log.
    configs: Vec<(Index, Configuration)>,
}

impl RaftLog {
    pub fn new(snapshot: SnapshotMeta, entries: Vec<Entry>) -> RaftLog {
        let mut log = RaftLog { snapshot, entries: Vec::new(), persist_from: 0, configs: Vec::new() };
        for (offset, entry) in entries.iter().enumerate() {
            assert_eq!(entry.index, log.snapshot.index + 1 + offset as Index, "restored log has a gap");
        }
        log.entries = entries;
        log.rebuild_configs();
        log.persist_from = log.last_index() + 1;
        log
    }

    fn rebuild_configs(&mut self) {
        self.configs = self
            .entries
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Config(c) => Some((e.index, c.clone())),
                _ => None,
            })
            .collect();
    }

    pub fn snapshot_meta(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    pub fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.last().map_or(self.snapshot.term, |e| e.term)
    }

    /// The term of the entry at `index`: known for the snapshot's last entry and for entries in
    /// the log; `None` before the snapshot (compacted) or past the end.
    pub fn term_at(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        if index <= self.snapshot.index {
            return None;
        }
        self.entries.get((index - self.snapshot.index - 1) as usize)
    }

    /// Up to `max` entries starting at `from` (which must be in the log).
    pub fn slice(&self, from: Index, max: usize) -> Vec<Entry> {
        self.slice_within(from, max, usize::MAX)
    }

    /// Up to `max` entries starting at `from`, and no more than about `max_bytes` of them —
    /// but always at least one, however large.
    pub fn slice_within(&self, from: Index, max: usize, max_bytes: usize) -> Vec<Entry> {
        if from > self.last_index() {
            return Vec::new();
        }
        assert!(from > self.snapshot.index, "slice from {from} reaches into the snapshot");
        let start = (from - self.snapshot.index - 1) as usize;
        let end = start.saturating_add(max).min(self.entries.len());
        let mut bytes = 0;
        let taken = self.entries[start..end]
            .iter()
            .take_while(|e| {
                let first = bytes == 0;
                bytes += e.payload.approx_bytes();
                first || bytes <= max_bytes
            })
            .count();
        self.entries[start..start + taken].to_vec()
    }

    /// §5.4.1: a candidate's log is at least as up-to-date as this one if its last term is
    /// higher, or equal with an index at least as high.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        last_term > self.last_term() || (last_term == self.last_term() && last_index >= self.last_index())
    }

    /// First index of the run of entries of term `term` that contains `index`, never below
    /// `floor`. Used to tell a leader where a conflicting term starts.
    pub fn first_index_of_term_at(&self, index: Index, floor: Index) -> Index {
        let term = self.term_at(index);
        let mut i = index;
        while i > floor.max(self.first_index()) && self.term_at(i - 1) == term {
            i -= 1;
        }
        i
    }

    /// Last index holding an entry of `term`, if the log has one.
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        if self.snapshot.term == term && self.entries.first().is_none_or(|e| e.term != term) {
            return Some(self.snapshot.index);
        }
        // Terms are non-decreasing along the log, so a binary search finds the run.
        let pos = self.entries.partition_point(|e| e.term <= term);
        if pos > 0 && self.entries[pos - 1].term == term { Some(self.entries[pos - 1].index) } else { None }
    }

    /// Appends entries that extend the log exactly (leader proposals).
    pub fn append(&mut self, entry: Entry) {
        assert_eq!(entry.index, self.last_index() + 1, "append must extend the log");
        assert!(entry.term >= self.last_term(), "terms never decrease along the log");
        if let Payload::Config(c) = &entry.payload {
            self.configs.push((entry.index, c.clone()));
        }
        self.persist_from = self.persist_from.min(entry.index);
        self.entries.push(entry);
    }

    /// Removes the entries from `from` on. Returns how many went.
    pub fn truncate(&mut self, from: Index) -> usize {
        assert!(from > self.snapshot.index, "cannot truncate into the snapshot");
        let keep = (from - self.snapshot.index - 1) as usize;
        let removed = self.entries.len().saturating_sub(keep);
        self.entries.truncate(keep);
        self.configs.retain(|(i, _)| *i < from);
        self.persist_from = self.persist_from.min(from);
        removed
    }

    /// The configuration in force: the latest in the log, committed or not (dissertation §4.1).
    pub fn config(&self) -> &Configuration {
        self.configs.last().map_or(&self.snapshot.config, |(_, c)| c)
    }

    /// Index of the entry (or snapshot) that holds the configuration in force.
    pub fn config_index(&self) -> Index {
        self.configs.last().map_or(self.snapshot.index, |(i, _)| *i)
    }

    /// The configuration in force as of `index`, for a snapshot taken there.
    pub fn config_at(&self, index: Index) -> Configuration {
        self.configs.iter().rev().find(|(i, _)| *i <= index).map_or(&self.snapshot.config, |(_, c)| c).clone()
    }

    /// Drops entries up to `index`, which become a snapshot with this metadata.
    pub fn compact(&mut self, meta: SnapshotMeta) {
        assert!(meta.index > self.snapshot.index && meta.index <= self.last_index(), "compact out of range");
        assert_eq!(self.term_at(meta.index), Some(meta.term), "snapshot term must match the log");
        let drop = (meta.index - self.snapshot.index) as usize;
        self.entries.drain(..drop);
        self.snapshot = meta;
        self.rebuild_configs();
    }

    /// Replaces the log by a snapshot received from the leader. Entries after the snapshot are
    /// kept if the log agrees with it at its last index (§7); everything is handed to storage
    /// again, which resets its log to the snapshot first.
    pub fn install(&mut self, meta: SnapshotMeta) {
        let keep_suffix = self.term_at(meta.index) == Some(meta.term);
        let suffix: Vec<Entry> = if keep_suffix {
            self.entries.iter().filter(|e| e.index > meta.index).cloned().collect()
        } else {
            Vec::new()
        };
        self.snapshot = meta;
        self.entries = suffix;
        self.rebuild_configs();
        self.persist_from = self.snapshot.index + 1;
    }

    /// Entries storage has not seen yet (or must overwrite).
    pub fn unpersisted(&self) -> Vec<Entry> {
        if self.persist_from > self.last_index() {
            return Vec::new();
        }
        self.slice(self.persist_from.max(self.first_index()), usize::MAX)
    }

    pub fn has_unpersisted(&self) -> bool {
        self.persist_from <= self.last_index()
    }

    /// Last index known to be durable: everything before the first change not yet persisted.
    pub fn stable_index(&self) -> Index {
        (self.persist_from - 1).min(self.last_index())
    }

    /// Everything handed out is now durable.
    pub fn mark_persisted(&mut self) {
        self.persist_from = self.last_index() + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(index: Index, term: Term) -> Entry {
        Entry { index, term, payload: Payload::Noop }
    }

    fn log(terms: &[Term]) -> RaftLog {
        RaftLog::new(
            SnapshotMeta::default(),
            terms.iter().enumerate().map(|(i, t)| e(i as Index + 1, *t)).collect(),
        )
    }

    #[test]
    fn indices_and_terms() {
        let l = log(&[1, 1, 2, 3]);
        assert_eq!((l.first_index(), l.last_index(), l.last_term()), (1, 4, 3));
        assert_eq!(l.term_at(0), Some(0));
        assert_eq!(l.term_at(3), Some(2));
        assert_eq!(l.term_at(5), None);
    }

    #[test]
    fn a_slice_stops_at_its_byte_budget_but_always_carries_one_entry() {
        let l = log(&[1; 10]);
        let per_entry = Payload::Noop.approx_bytes();
        assert_eq!(l.slice_within(1, 100, 3 * per_entry + 1).len(), 3);
        assert_eq!(l.slice_within(1, 2, usize::MAX).len(), 2, "the entry count is a limit too");
        let one = l.slice_within(4, 100, 1);
        assert_eq!(
            one.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![4],
            "an oversized entry still moves"
        );
        assert!(l.slice_within(11, 100, usize::MAX).is_empty());
    }

    #[test]
    fn up_to_date_rule() {
        let l = log(&[1, 2, 2]);
        assert!(l.is_up_to_date(1, 3), "higher last term wins even with a shorter log");
        assert!(l.is_up_to_date(3, 2));
        assert!(!l.is_up_to_date(2, 2), "same term, shorter log");
        assert!(!l.is_up_to_date(9, 1), "lower last term loses even with a longer log");
    }

    #[test]
    fn conflict_term_lookup() {
        let l = log(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(l.first_index_of_term_at(5, 0), 3);
        assert_eq!(l.last_index_of_term(2), Some(5));
        assert_eq!(l.last_index_of_term(3), None);
        assert_eq!(l.last_index_of_term(0), Some(0));
    }

    #[test]
    fn truncate_then_persist_tracking() {
        let mut l = log(&[1, 1, 1]);
        assert!(!l.has_unpersisted());
        l.truncate(2);
        l.append(e(2, 2));
        assert_eq!(l.unpersisted(), vec![e(2, 2)]);
        l.mark_persisted();
        assert!(!l.has_unpersisted());
    }

    #[test]
    fn compaction_keeps_terms_reachable() {
        let mut l = log(&[1, 1, 2, 2]);
        l.compact(SnapshotMeta { index: 3, term: 2, config: Configuration::default() });
        assert_eq!(l.first_index(), 4);
        assert_eq!(l.term_at(3), Some(2));
        assert_eq!(l.term_at(2), None);
        assert_eq!(l.slice(4, 10), vec![e(4, 2)]);
    }

    #[test]
    fn install_keeps_a_matching_suffix() {
        let mut l = log(&[1, 1, 2, 2]);
        l.install(SnapshotMeta { index: 2, term: 1, config: Configuration::default() });
        assert_eq!(l.last_index(), 4);
        let mut l = log(&[1, 1, 2, 2]);
        l.install(SnapshotMeta { index: 2, term: 3, config: Configuration::default() });
        assert_eq!(l.last_index(), 2);
    }

    #[test]
    fn configuration_is_the_latest_in_the_log() {
        let mut l = log(&[1]);
        l.append(Entry { index: 2, term: 1, payload: Payload::Config(Configuration::new([1, 2])) });
        assert_eq!(l.config(), &Configuration::new([1, 2]));
        l.truncate(2);
        assert_eq!(l.config(), &Configuration::default());
    }
}
