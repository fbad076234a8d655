//! Durable state of one server, in its data directory:
//!
//! - `identity`: whose directory this is (node, cluster, first configuration) — written
//!   before anything else, see `identity`;
//! - `wal.log`: the write-ahead log, one checksummed batch per round, in a file grown 64 KiB at
//!   a time with zeros ahead of the log (`GROW_BY`) — see `wal` for the format and how a torn
//!   write is told from corruption;
//! - `snapshot.json`: the latest snapshot behind a header line with its length and checksum.
//!
//! Records are hard states and log entries; an entry at an index already present replaces it
//! and everything after (§5.3), exactly as the `Ready` contract says. A round's batch goes out
//! with one `write` and one `fdatasync` (`write`, then `sync` here or, on a leader, on another
//! thread), so concurrent client writes share a disk flush (group commit). Files that are
//! replaced (the snapshot, the identity, the log after a compaction) are written to a temporary
//! name, flushed, renamed over the old one, and the
//! directory flushed: after a crash each is entirely old or entirely new.
//!
//! Recovery cuts off a torn last batch (never acknowledged) and refuses to start on anything
//! else that is damaged, naming the file and offset: serving from a log with a hole could
//! contradict what the cluster committed.

mod identity;
mod wal;

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use shared::raft::{Entry, HardState, Index, Persisted, Snapshot};
use shared::replica::Persist;

pub use identity::Identity;
use wal::BatchWriter;
#[cfg(test)]
pub(crate) use wal::frame_batch;
pub(crate) use wal::{DAMAGED, KIND_ENTRY, KIND_HARD_STATE, MAGIC};
#[cfg(test)]
pub(crate) use wal::{frame_payload, split_payload};

const SNAPSHOT_MAGIC: &str = "consenso-snapshot v1";
const IDENTITY_FILE: &str = "identity";
/// A log rewritten after a compaction is cut into batches of about this many bytes.
const REWRITE_BATCH_BYTES: usize = 8 << 20;
/// A round's batch buffer is kept for the next round up to this size.
const KEPT_BUFFER_BYTES: usize = 4 << 20;
/// The log file grows by this much at a time, filled with zeros ahead of the log: a batch
/// written over zeros already on disk leaves the file's size alone, so `fdatasync` writes the
/// data and flushes, without also writing the inode (on ext4, 0.108 → 0.086 ms alone, 0.169 →
/// 0.141 ms with three servers on one disk; bench/RESULTS.md). A step costs ~0.3 ms
/// (a MiB at a time cost ~3.5 ms at once: it widened the tail at 64 clients).
const GROW_BY: u64 = 64 << 10;

pub struct Storage {
    dir: PathBuf,
    /// Shared with the thread that flushes a leader's log (`syncer`).
    wal: Arc<File>,
    /// Where the log ends in the file (the next batch goes there); zeros follow, up to
    /// `allocated`, the file's length.
    end: u64,
    allocated: u64,
    hard_state: HardState,
    identity: Option<Identity>,
    /// Whether to flush to disk before returning (always, except in tests of other things).
    fsync: bool,
    /// A round's batch is built here (kept to spare an allocation per round).
    buffer: Vec<u8>,
}

/// What recovery found, for the log and the page.
#[derive(Debug, Default)]
pub struct Recovery {
    pub torn_bytes: u64,
    pub records: u64,
}

impl Storage {
    /// Opens (creating if needed) the data directory and recovers what it holds.
    pub fn open(dir: &Path) -> anyhow::Result<(Storage, Persisted, Recovery)> {
        let created = !dir.exists();
        crate::secret::private_dir(dir)?;
        if created {
            // The directory's own name must survive a crash, not only what it will hold.
            sync_parent(dir)?;
        }
        let identity = read_identity(&dir.join(IDENTITY_FILE))?;
        let snapshot = read_snapshot(&dir.join("snapshot.json"))?;
        let wal_path = dir.join("wal.log");
        let mut wal = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&wal_path)
            .with_context(|| format!("cannot open {}", wal_path.display()))?;
        fs::set_permissions(&wal_path, fs::Permissions::from_mode(0o600))?;
        let mut bytes = Vec::new();
        wal.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", wal_path.display()))?;
        let log = decode_wal(&bytes, snapshot.as_ref(), &wal_path)?;
        // Zeros after the log are space made ahead of it (`GROW_BY`), not damage: what is torn
        // ends at the last byte that is not zero.
        let torn = bytes[log.valid_len..].iter().rposition(|b| *b != 0).map_or(0, |last| last + 1);
        let recovery =
            Recovery { torn_bytes: torn as u64, records: log.records.max(log.entries.len() as u64) };
        let mut allocated = bytes.len() as u64;
        if recovery.torn_bytes > 0 {
            tracing::warn!(
                "{}: cutting off a torn batch of {} bytes at offset {} (an unfinished write, never acknowledged)",
                wal_path.display(),
                recovery.torn_bytes,
                log.valid_len
            );
            wal.set_len(log.valid_len as u64)?;
            wal.sync_all()?;
            allocated = log.valid_len as u64;
        }
        let mut end = log.valid_len as u64;
        if log.valid_len == 0 {
            // A new log (or one whose header never became durable): its header first, and its
            // name made durable with it.
            wal.set_len(0)?;
            wal.write_all_at(MAGIC, 0)?;
            wal.sync_all()?;
            File::open(dir)?.sync_all()?;
            (end, allocated) = (MAGIC.len() as u64, MAGIC.len() as u64);
        }
        let hard_state = log.hard_state;
        let wal = Arc::new(wal);
        let storage = Storage {
            dir: dir.to_path_buf(),
            wal,
            end,
            allocated,
            hard_state,
            identity,
            fsync: true,
            buffer: Vec::new(),
        };
        Ok((storage, Persisted { hard_state, snapshot, entries: log.entries }, recovery))
    }

    /// Whose directory this is, if it says.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// Writes who this directory belongs to, durably, before anything depends on it.
    pub fn write_identity(&mut self, identity: Identity) -> anyhow::Result<()> {
        let text = serde_json::to_vec_pretty(&identity).expect("identities serialize");
        self.replace_file(IDENTITY_FILE, &text)?;
        self.identity = Some(identity);
        Ok(())
    }

    /// Makes a round's state durable before anything that depends on it is sent, in the order
    /// the server follows (`raft_loop::persist`, which stores a snapshot on the blocking pool and
    /// flushes a leader's log on a helper thread).
    #[cfg(test)]
    pub fn persist(&mut self, persist: &Persist) -> anyhow::Result<()> {
        if let Some(snapshot) = &persist.snapshot {
            self.snapshot_writer().store(snapshot)?;
        }
        if self.write(persist)? {
            self.sync()?;
        }
        Ok(())
    }

    /// Flushes what `write` wrote to the disk.
    pub fn sync(&self) -> anyhow::Result<()> {
        if self.fsync {
            self.wal.sync_data().context("cannot flush the log to disk")?;
        }
        Ok(())
    }

    /// The log's file, to flush it (`File::sync_data`) from another thread while this one goes
    /// on; `None` in tests that do not flush.
    pub fn syncer(&self) -> Option<Arc<File>> {
        self.fsync.then(|| self.wal.clone())
    }

    /// Writes a round's state; true if it still has to be flushed (`sync`). A snapshot from the
    /// leader must be stored first (`snapshot_writer`; the server does it on the blocking pool):
    /// here the log it replaces is rewritten.
    pub fn write(&mut self, persist: &Persist) -> anyhow::Result<bool> {
        assert!(
            persist.entries.windows(2).all(|w| w[1].index == w[0].index + 1 && w[1].term >= w[0].term),
            "a batch of entries is contiguous and its terms never go back"
        );
        if let Some(hs) = persist.hard_state {
            assert!(
                hs.term >= self.hard_state.term,
                "the term on disk never goes back ({} → {})",
                self.hard_state.term,
                hs.term
            );
            self.hard_state = hs;
        }
        if persist.snapshot.is_some() {
            // A snapshot from the leader replaces the whole log.
            self.rewrite_wal(&persist.entries)?;
            return Ok(false);
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let mut batch = BatchWriter::begin(&mut buffer);
        if let Some(hs) = persist.hard_state {
            batch.record(KIND_HARD_STATE, |out| encode_into(out, &hs));
        }
        for entry in &persist.entries {
            batch.record(KIND_ENTRY, |out| encode_into(out, entry));
        }
        let any = batch.finish();
        let appended = if any { self.append(&buffer).context("cannot append to the log") } else { Ok(()) };
        // Kept for the next round, unless a rare big one (a large value) grew it.
        if buffer.capacity() <= KEPT_BUFFER_BYTES {
            self.buffer = buffer;
        }
        appended.map(|()| any)
    }

    /// Writes a batch where the log ends, growing the file first if the batch would pass its
    /// end (the zeros and the batch become durable with the same `fdatasync`).
    fn append(&mut self, batch: &[u8]) -> std::io::Result<()> {
        let end = self.end + batch.len() as u64;
        if end > self.allocated {
            let grown = end.next_multiple_of(GROW_BY);
            // Less than one step: `grown` is the next multiple of `GROW_BY` past `end`.
            static ZEROS: [u8; GROW_BY as usize] = [0; GROW_BY as usize];
            self.wal.write_all_at(&ZEROS[..(grown - end) as usize], end)?;
            self.allocated = grown;
        }
        self.wal.write_all_at(batch, self.end)?;
        self.end = end;
        Ok(())
    }

    /// Stores a snapshot taken here and drops the log entries it covers. `entries_after` are
    /// the log entries following the snapshot, which the rewritten log keeps.
    #[cfg(test)]
    pub fn compact(&mut self, snapshot: &Snapshot, entries_after: &[Entry]) -> anyhow::Result<()> {
        self.snapshot_writer().store(snapshot)?;
        self.compacted(snapshot.meta.index, entries_after)
    }

    /// Drops the log entries that a snapshot up to `snapshot_index`, stored already
    /// (`SnapshotWriter::store`), covers. `entries_after` are the log entries following it,
    /// which the rewritten log keeps.
    pub fn compacted(&mut self, snapshot_index: u64, entries_after: &[Entry]) -> anyhow::Result<()> {
        assert!(
            entries_after.first().is_none_or(|e| e.index == snapshot_index + 1),
            "the entries kept follow the snapshot"
        );
        self.rewrite_wal(entries_after)
    }

    /// What writes `snapshot.json`, movable to another thread: encoding and flushing a large
    /// store takes a while, and the server's network tasks share its thread.
    pub fn snapshot_writer(&self) -> SnapshotWriter {
        SnapshotWriter { dir: self.dir.clone(), fsync: self.fsync }
    }

    fn rewrite_wal(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        let mut buffer = MAGIC.to_vec();
        let hard_state = self.hard_state;
        let mut batch = BatchWriter::begin(&mut buffer);
        batch.record(KIND_HARD_STATE, |out| encode_into(out, &hard_state));
        for entry in entries {
            batch.record(KIND_ENTRY, |out| encode_into(out, entry));
            if batch.payload_len() >= REWRITE_BATCH_BYTES {
                batch.finish();
                batch = BatchWriter::begin(&mut buffer);
            }
        }
        batch.finish();
        self.replace_file("wal.log", &buffer)?;
        self.wal = Arc::new(OpenOptions::new().write(true).open(self.dir.join("wal.log"))?);
        (self.end, self.allocated) = (buffer.len() as u64, buffer.len() as u64);
        Ok(())
    }

    fn replace_file(&self, name: &str, content: &[u8]) -> anyhow::Result<()> {
        replace_file(&self.dir, self.fsync, name, content)
    }
}

/// Writes a snapshot file (see `Storage::snapshot_writer`).
pub struct SnapshotWriter {
    dir: PathBuf,
    fsync: bool,
}

impl SnapshotWriter {
    /// Replaces `snapshot.json` with `snapshot`, durably.
    pub fn store(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let body = serde_json::to_vec(snapshot)?;
        replace_file(&self.dir, self.fsync, "snapshot.json", &snapshot_file(&body))
    }
}

/// Write to a temporary file, flush it, rename it over `name`, flush the directory: the file is
/// either entirely old or entirely new after a crash.
fn replace_file(dir: &Path, fsync: bool, name: &str, content: &[u8]) -> anyhow::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(content)?;
    if fsync {
        file.sync_all()?;
    }
    fs::rename(&tmp, &target).with_context(|| format!("cannot replace {}", target.display()))?;
    if fsync {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn encode_into<T: serde::Serialize>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("log records serialize");
}

/// Flushes the directory that holds `dir`, so that a directory just created survives a crash.
fn sync_parent(dir: &Path) -> anyhow::Result<()> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    File::open(parent)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot flush directory {}", parent.display()))
}

fn read_identity(path: &Path) -> anyhow::Result<Option<Identity>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let identity: Identity = serde_json::from_slice(&bytes)
        .with_context(|| format!("{}: unreadable identity: {DAMAGED}", path.display()))?;
    if identity.format != identity::FORMAT {
        bail!(
            "{}: data directory format {} (this Consenso reads format {}); start this server on a new \
             directory (`consenso client remove-server {}`, then `consenso client add-server`)",
            path.display(),
            identity.format,
            identity::FORMAT,
            identity.node
        );
    }
    Ok(Some(identity))
}

/// What the log's bytes hold, decoded without touching the disk.
#[derive(Debug)]
pub(crate) struct DecodedWal {
    pub hard_state: HardState,
    /// Log entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// Well-formed records read.
    pub records: u64,
    /// Length of the valid prefix; what follows is a torn batch, to be cut off.
    pub valid_len: usize,
}

/// Decodes a whole log (as `open` reads it) against the snapshot it follows: the batches up
/// to a torn one, replayed. Corruption and a log that contradicts itself are errors naming
/// `path`.
pub(crate) fn decode_wal(
    bytes: &[u8],
    snapshot: Option<&Snapshot>,
    path: &Path,
) -> anyhow::Result<DecodedWal> {
    let (records, valid_len) = wal::scan(bytes, path)?;
    let count = records.len() as u64;
    let (hard_state, entries) = replay(records, snapshot, path)?;
    Ok(DecodedWal { hard_state, entries, records: count, valid_len })
}

fn replay(
    records: Vec<wal::Record<'_>>,
    snapshot: Option<&Snapshot>,
    path: &Path,
) -> anyhow::Result<(HardState, Vec<Entry>)> {
    let base = snapshot.map_or(0, |s| s.meta.index);
    let mut hard_state = HardState::default();
    let mut entries: Vec<Entry> = Vec::new();
    // The log's own entry at the snapshot index, if it has one: it must agree with the snapshot
    // for the entries after it to belong to the same history (§7).
    let mut term_at_base: Option<u64> = None;
    for (kind, payload, offset) in records {
        let bad = |e: serde_json::Error| {
            anyhow::anyhow!(
                "{}: a record of the batch at offset {offset} is unreadable: {e}: {DAMAGED}",
                path.display()
            )
        };
        match kind {
            KIND_HARD_STATE => hard_state = serde_json::from_slice(payload).map_err(bad)?,
            KIND_ENTRY => {
                let entry: Entry = serde_json::from_slice(payload).map_err(bad)?;
                if entry.index <= base {
                    if entry.index == base {
                        term_at_base = Some(entry.term);
                    }
                    continue;
                }
                let expected = base + entries.len() as Index + 1;
                if entry.index > expected {
                    bail!(
                        "{}: entry {} in the batch at offset {offset} leaves a gap after entry {}",
                        path.display(),
                        entry.index,
                        expected - 1
                    );
                }
                entries.truncate((entry.index - base - 1) as usize);
                entries.push(entry);
            }
            other => bail!(
                "{}: unknown record kind {other} in the batch at offset {offset}: {DAMAGED}",
                path.display()
            ),
        }
    }
    if let (Some(snapshot), Some(term)) = (snapshot, term_at_base) {
        if term != snapshot.meta.term {
            // Interrupted install of a leader's snapshot: the old entries are another history.
            entries.clear();
        }
    }
    Ok((hard_state, entries))
}

fn read_snapshot(path: &Path) -> anyhow::Result<Option<Snapshot>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    decode_snapshot(&bytes, path).map(Some)
}

/// A snapshot file's content: the header line (magic, length, checksum), then the JSON body.
pub(crate) fn snapshot_file(body: &[u8]) -> Vec<u8> {
    let header = format!("{SNAPSHOT_MAGIC} len={} crc={:08x}\n", body.len(), crc32c::crc32c(body));
    let mut content = header.into_bytes();
    content.extend_from_slice(body);
    content
}

/// Decodes a snapshot file's bytes; a damaged or unreadable one is an error naming `path`.
pub(crate) fn decode_snapshot(bytes: &[u8], path: &Path) -> anyhow::Result<Snapshot> {
    let newline =
        bytes.iter().position(|b| *b == b'\n').with_context(|| format!("{}: no header", path.display()))?;
    let header = std::str::from_utf8(&bytes[..newline]).unwrap_or("");
    let body = &bytes[newline + 1..];
    let parse = || -> Option<(usize, u32)> {
        let rest = header.strip_prefix(SNAPSHOT_MAGIC)?.trim();
        let mut len = None;
        let mut crc = None;
        for field in rest.split_whitespace() {
            if let Some(v) = field.strip_prefix("len=") {
                len = v.parse().ok();
            }
            if let Some(v) = field.strip_prefix("crc=") {
                crc = u32::from_str_radix(v, 16).ok();
            }
        }
        Some((len?, crc?))
    };
    let Some((len, crc)) = parse() else {
        bail!("{}: unrecognised snapshot header '{header}'", path.display())
    };
    if body.len() != len || crc32c::crc32c(body) != crc {
        bail!("{}: snapshot is damaged (length or checksum mismatch): {DAMAGED}.", path.display());
    }
    serde_json::from_slice(body).with_context(|| format!("{}: unreadable snapshot", path.display()))
}

#[cfg(test)]
impl Storage {
    fn without_fsync(mut self) -> Storage {
        self.fsync = false;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::kv::KvStore;
    use shared::raft::{Configuration, Payload, SnapshotMeta};

    fn entry(index: Index, term: u64) -> Entry {
        Entry { index, term, payload: Payload::Noop }
    }

    fn persist(hs: Option<HardState>, entries: Vec<Entry>) -> Persist {
        Persist { snapshot: None, hard_state: hs, entries }
    }

    fn open(dir: &Path) -> (Storage, Persisted) {
        let (s, p, _) = Storage::open(dir).expect("opens");
        (s.without_fsync(), p)
    }

    /// Where the log in `wal` ends (zeros made ahead of it follow, to the file's end).
    fn log_end(wal: &Path) -> usize {
        wal::scan(&fs::read(wal).unwrap(), wal).unwrap().1
    }

    /// Writes `bytes` where the log ends, as a write of the server's own would.
    fn write_at_end(wal: &Path, bytes: &[u8]) {
        let f = OpenOptions::new().write(true).open(wal).unwrap();
        f.write_all_at(bytes, log_end(wal) as u64).unwrap();
    }

    #[test]
    fn what_is_persisted_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, p) = open(dir.path());
        assert_eq!(p.entries.len(), 0);
        let hs = HardState { term: 3, voted_for: Some(2), admitted: true };
        s.persist(&persist(Some(hs), vec![entry(1, 1), entry(2, 3)])).unwrap();
        drop(s);
        let (_, p) = open(dir.path());
        assert_eq!(p.hard_state, hs);
        assert_eq!(p.entries, vec![entry(1, 1), entry(2, 3)]);
    }

    #[test]
    fn a_rewritten_index_replaces_the_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1), entry(2, 1), entry(3, 1)])).unwrap();
        s.persist(&persist(None, vec![entry(2, 2)])).unwrap();
        let (_, p) = open(dir.path());
        assert_eq!(p.entries, vec![entry(1, 1), entry(2, 2)]);
    }

    #[test]
    fn a_torn_batch_is_cut_off_and_the_rest_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1), entry(2, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let good = log_end(&wal) as u64;
        // A power loss inside a batch of a vote and three entries: only part of it is there.
        let mut batch = Vec::new();
        let (hs, entries) = (
            serde_json::to_vec(&HardState { term: 5, voted_for: Some(2), admitted: true }).unwrap(),
            serde_json::to_vec(&entry(3, 5)).unwrap(),
        );
        frame_batch(&mut batch, &[(KIND_HARD_STATE, &hs), (KIND_ENTRY, &entries), (KIND_ENTRY, &entries)]);
        let torn = batch.len() / 2;
        write_at_end(&wal, &batch[..torn]);
        let (mut s, p, recovery) = Storage::open(dir.path()).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(p.hard_state.term, 0, "none of the torn batch counts, not even its first record");
        // The torn write, up to its last byte that is not zero (zeros are the space ahead).
        let written = batch[..torn].iter().rposition(|b| *b != 0).unwrap() + 1;
        assert_eq!(recovery.torn_bytes, written as u64, "{recovery:?}");
        assert_eq!(fs::metadata(&wal).unwrap().len(), good, "the torn bytes are gone");
        s.persist(&persist(None, vec![entry(3, 1)])).unwrap();
        drop(s);
        assert_eq!(open(dir.path()).1.entries.len(), 3, "the log goes on where the torn batch was");
    }

    #[test]
    fn a_complete_last_record_with_a_bad_checksum_is_damage_not_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(
            Some(HardState { term: 2, voted_for: Some(3), admitted: true }),
            vec![entry(1, 1)],
        ))
        .unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let mut bytes = fs::read(&wal).unwrap();
        let last = log_end(&wal) - 2;
        bytes[last] ^= 0xff;
        fs::write(&wal, &bytes).unwrap();
        let error = Storage::open(dir.path()).err().expect("refuses").to_string();
        assert!(error.contains("complete") && error.contains("refusing to start"), "{error}");
        assert!(error.contains("new member"), "the way out is named: {error}");
    }

    #[test]
    fn zeros_after_the_last_batch_are_space_made_ahead_and_the_log_goes_on_over_them() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let file_len = fs::metadata(&wal).unwrap().len();
        assert_eq!(file_len, GROW_BY, "the file grew ahead of the log");
        let (mut s, p, recovery) = Storage::open(dir.path()).unwrap();
        assert_eq!((p.entries.len(), recovery.torn_bytes), (1, 0), "nothing torn, nothing cut");
        assert_eq!(fs::metadata(&wal).unwrap().len(), file_len);
        // Past the space made ahead: the file grows again, and everything reads back.
        let big = Entry { index: 2, term: 1, payload: Payload::Noop };
        let many: Vec<Entry> = (2..=30_000).map(|i| Entry { index: i, ..big.clone() }).collect();
        s.persist(&persist(None, many)).unwrap();
        drop(s);
        assert!(fs::metadata(&wal).unwrap().len() > file_len);
        assert_eq!(open(dir.path()).1.entries.len(), 30_000);
    }

    #[test]
    fn the_data_directory_and_its_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("node-1");
        let (mut s, _) = open(&data);
        s.persist(&persist(None, vec![entry(1, 1)])).unwrap();
        s.compact(&snapshot(1, 1), &[]).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&data.join("wal.log")), 0o600);
        assert_eq!(mode(&data.join("snapshot.json")), 0o600);
    }

    #[test]
    fn corruption_before_valid_batches_refuses_to_start_and_names_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1)])).unwrap();
        let second = s.end as usize;
        s.persist(&persist(None, vec![entry(2, 1)])).unwrap();
        s.persist(&persist(None, vec![entry(3, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let mut bytes = fs::read(&wal).unwrap();
        bytes[second + wal::BATCH_HEADER + 8] ^= 0x01;
        fs::write(&wal, &bytes).unwrap();
        let error = Storage::open(dir.path()).err().expect("refuses").to_string();
        assert!(error.contains("wal.log"), "{error}");
        assert!(error.contains(&format!("offset {second}")), "{error}");
        assert!(error.contains("refusing to start"), "{error}");
    }

    #[test]
    fn the_identity_is_written_durably_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        assert!(s.identity().is_none(), "a new directory belongs to nobody");
        let identity =
            Identity { cluster: Some("c-1".into()), first_voters: vec![1, 2, 3], ..Identity::unclaimed(2) };
        s.write_identity(identity.clone()).unwrap();
        drop(s);
        let (s, _) = open(dir.path());
        assert_eq!(s.identity(), Some(&identity));
    }

    fn snapshot(index: Index, term: u64) -> Snapshot {
        Snapshot {
            meta: SnapshotMeta { index, term, config: Configuration::new([1, 2, 3]) },
            data: KvStore::new(),
        }
    }

    #[test]
    fn compaction_keeps_what_follows_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(
            Some(HardState { term: 2, voted_for: None, admitted: true }),
            (1..=5).map(|i| entry(i, 2)).collect(),
        ))
        .unwrap();
        s.compact(&snapshot(3, 2), &[entry(4, 2), entry(5, 2)]).unwrap();
        s.persist(&persist(None, vec![entry(6, 2)])).unwrap();
        let (_, p) = open(dir.path());
        assert_eq!(p.snapshot.unwrap().meta.index, 3);
        assert_eq!(p.entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![4, 5, 6]);
        assert_eq!(p.hard_state.term, 2);
    }

    #[test]
    fn an_installed_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, (1..=5).map(|i| entry(i, 1)).collect())).unwrap();
        s.persist(&Persist { snapshot: Some(snapshot(8, 3)), hard_state: None, entries: vec![entry(9, 3)] })
            .unwrap();
        let (_, p) = open(dir.path());
        assert_eq!(p.snapshot.unwrap().meta.index, 8);
        assert_eq!(p.entries, vec![entry(9, 3)]);
    }

    #[test]
    fn an_interrupted_install_drops_the_old_history() {
        // The snapshot file was replaced but the crash came before the log was rewritten.
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, (1..=5).map(|i| entry(i, 1)).collect())).unwrap();
        s.snapshot_writer().store(&snapshot(3, 2)).unwrap();
        let (_, p) = open(dir.path());
        assert!(p.entries.is_empty(), "entries after a disagreeing index 3 are another history");
    }

    #[test]
    fn a_damaged_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        s.snapshot_writer().store(&snapshot(3, 2)).unwrap();
        let path = dir.path().join("snapshot.json");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let error = Storage::open(dir.path()).err().expect("refuses").to_string();
        assert!(error.contains("snapshot.json") && error.contains("refusing to start"), "{error}");
    }
}
