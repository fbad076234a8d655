//! Durable state of one server: a write-ahead log and a snapshot file in its data directory.
//!
//! `wal.log` is a sequence of records, each `[len: u32][crc32c: u32][kind: u8][payload]`
//! (little-endian; the checksum covers kind and payload; the payload is JSON). Records are
//! hard states and log entries; an entry at an index already present replaces it and
//! everything after (§5.3), exactly as the `Ready` contract says. One `persist` call writes
//! all its records with one `write` and one `fdatasync`, so concurrent client writes share
//! a disk flush (group commit).
//!
//! `snapshot.json` holds the latest snapshot behind a header line with its length and
//! checksum. It is replaced atomically (write, fsync, rename, fsync the directory), and the
//! log is then rewritten to hold only what follows it.
//!
//! Recovery distinguishes two kinds of damage. A record cut short or garbled at the very end
//! of the log — nothing valid after it — is a write torn by a crash: it was never made durable,
//! so never acknowledged, and is cut off. A bad record followed by valid ones is corruption of
//! acknowledged data: the server refuses to start and names the file and offset, because
//! serving from a log with a hole could contradict what the cluster committed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shared::raft::{Entry, HardState, Index, Persisted, Snapshot};
use shared::replica::Persist;

pub(crate) const HEADER: usize = 9;
pub(crate) const KIND_HARD_STATE: u8 = 1;
pub(crate) const KIND_ENTRY: u8 = 2;
/// A record longer than this is certainly a garbled length field.
const MAX_RECORD: usize = 64 << 20;
const SNAPSHOT_MAGIC: &str = "consenso-snapshot v1";

pub struct Storage {
    dir: PathBuf,
    wal: File,
    hard_state: HardState,
    /// Whether to flush to disk before returning (always, except in tests of other things).
    fsync: bool,
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
        crate::secret::private_dir(dir)?;
        let snapshot = read_snapshot(&dir.join("snapshot.json"))?;
        let wal_path = dir.join("wal.log");
        let created = !wal_path.exists();
        let mut wal = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&wal_path)
            .with_context(|| format!("cannot open {}", wal_path.display()))?;
        fs::set_permissions(&wal_path, fs::Permissions::from_mode(0o600))?;
        if created {
            // The new file's name must survive a crash too, not only its contents.
            File::open(dir)?.sync_all()?;
        }
        let mut bytes = Vec::new();
        wal.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", wal_path.display()))?;
        let log = decode_wal(&bytes, snapshot.as_ref(), &wal_path)?;
        let recovery = Recovery {
            torn_bytes: (bytes.len() - log.valid_len) as u64,
            records: log.records.max(log.entries.len() as u64),
        };
        if recovery.torn_bytes > 0 {
            tracing::warn!(
                "{}: cutting off a torn record of {} bytes at offset {} (an unfinished write)",
                wal_path.display(),
                recovery.torn_bytes,
                log.valid_len
            );
            wal.set_len(log.valid_len as u64)?;
            wal.sync_all()?;
        }
        let hard_state = log.hard_state;
        let storage = Storage { dir: dir.to_path_buf(), wal, hard_state, fsync: true };
        Ok((storage, Persisted { hard_state, snapshot, entries: log.entries }, recovery))
    }

    /// Makes a round's state durable before anything that depends on it is sent.
    pub fn persist(&mut self, persist: &Persist) -> anyhow::Result<()> {
        if let Some(hs) = persist.hard_state {
            self.hard_state = hs;
        }
        if let Some(snapshot) = &persist.snapshot {
            // A snapshot from the leader replaces the whole log.
            self.write_snapshot(snapshot)?;
            return self.rewrite_wal(&persist.entries);
        }
        let mut buffer = Vec::new();
        if let Some(hs) = persist.hard_state {
            encode_record(&mut buffer, KIND_HARD_STATE, &hs);
        }
        for entry in &persist.entries {
            encode_record(&mut buffer, KIND_ENTRY, entry);
        }
        if buffer.is_empty() {
            return Ok(());
        }
        self.wal.write_all(&buffer).context("cannot append to the log")?;
        if self.fsync {
            self.wal.sync_data().context("cannot flush the log to disk")?;
        }
        Ok(())
    }

    /// Stores a snapshot taken here and drops the log entries it covers. `entries_after` are
    /// the log entries following the snapshot, which the rewritten log keeps.
    pub fn compact(&mut self, snapshot: &Snapshot, entries_after: &[Entry]) -> anyhow::Result<()> {
        self.write_snapshot(snapshot)?;
        self.rewrite_wal(entries_after)
    }

    fn write_snapshot(&self, snapshot: &Snapshot) -> anyhow::Result<()> {
        let body = serde_json::to_vec(snapshot)?;
        self.replace_file("snapshot.json", &snapshot_file(&body))
    }

    fn rewrite_wal(&mut self, entries: &[Entry]) -> anyhow::Result<()> {
        let mut buffer = Vec::new();
        encode_record(&mut buffer, KIND_HARD_STATE, &self.hard_state);
        for entry in entries {
            encode_record(&mut buffer, KIND_ENTRY, entry);
        }
        self.replace_file("wal.log", &buffer)?;
        self.wal = OpenOptions::new().append(true).open(self.dir.join("wal.log"))?;
        Ok(())
    }

    /// Write to a temporary file, flush it, rename it over `name`, flush the directory: the
    /// file is either entirely old or entirely new after a crash.
    fn replace_file(&self, name: &str, content: &[u8]) -> anyhow::Result<()> {
        let tmp = self.dir.join(format!("{name}.tmp"));
        let target = self.dir.join(name);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        file.write_all(content)?;
        if self.fsync {
            file.sync_all()?;
        }
        fs::rename(&tmp, &target).with_context(|| format!("cannot replace {}", target.display()))?;
        if self.fsync {
            File::open(&self.dir)?.sync_all()?;
        }
        Ok(())
    }
}

pub(crate) fn encode_record<T: serde::Serialize>(buffer: &mut Vec<u8>, kind: u8, value: &T) {
    let payload = serde_json::to_vec(value).expect("log records serialize");
    frame_record(buffer, kind, &payload);
}

/// Appends one record around a payload, whatever the payload holds (the fuzzer frames
/// garbled JSON with a correct checksum, so that it reaches the JSON decoder).
pub(crate) fn frame_record(buffer: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    let mut crc = crc32c::crc32c(&[kind]);
    crc = crc32c::crc32c_append(crc, payload);
    buffer.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buffer.extend_from_slice(&crc.to_le_bytes());
    buffer.push(kind);
    buffer.extend_from_slice(payload);
}

/// A well-formed record at `offset`: (kind, payload, end).
fn record_at(bytes: &[u8], offset: usize) -> Option<(u8, &[u8], usize)> {
    let header = bytes.get(offset..offset + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let kind = header[8];
    if len > MAX_RECORD || !(kind == KIND_HARD_STATE || kind == KIND_ENTRY) {
        return None;
    }
    let payload = bytes.get(offset + HEADER..offset + HEADER + len)?;
    let actual = crc32c::crc32c_append(crc32c::crc32c(&[kind]), payload);
    (actual == crc).then_some((kind, payload, offset + HEADER + len))
}

/// A record found in the log: its kind, its payload and the offset where it starts.
type Record<'a> = (u8, &'a [u8], usize);

/// Whether what follows `offset` can be the unfinished last write of a crash: a header cut
/// short, a whole header promising more payload than there is, or bytes never written (zeros).
/// A complete record with a wrong checksum cannot: that is damage.
fn torn_tail(bytes: &[u8], offset: usize) -> bool {
    let rest = &bytes[offset..];
    if rest.len() < HEADER || rest.iter().all(|b| *b == 0) {
        return true;
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let kind = rest[8];
    let plausible = len <= MAX_RECORD && (kind == KIND_HARD_STATE || kind == KIND_ENTRY);
    plausible && rest.len() < HEADER + len
}

/// What an operator reads when a data directory is damaged.
const DAMAGED: &str = "acknowledged data is damaged; refusing to start. Keep the directory for inspection. \
    Do not empty it or copy another server's into it: either could make this server forget a vote or an \
    entry it promised to keep. The safe way out is to replace this server with a new member of the cluster \
    (a membership change): `consenso client remove-server <this id>`, then `consenso client add-server` \
    (a new id, on an empty disk)";

/// Splits the log into records. Returns them and the length of the valid prefix. Only a torn
/// tail (see `torn_tail`) is cut; any other bad record is corruption, and fails.
fn scan<'a>(bytes: &'a [u8], path: &Path) -> anyhow::Result<(Vec<Record<'a>>, usize)> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match record_at(bytes, offset) {
            Some((kind, payload, end)) => {
                records.push((kind, payload, offset));
                offset = end;
            }
            None => {
                if let Some(next) = (offset + 1..bytes.len()).find(|o| record_at(bytes, *o).is_some()) {
                    bail!(
                        "{}: corrupted record at offset {offset} (checksum or header mismatch) followed by a valid \
                         record at offset {next}: {DAMAGED}.",
                        path.display()
                    );
                }
                if !torn_tail(bytes, offset) {
                    bail!(
                        "{}: the last record, at offset {offset}, is complete but its checksum or header does not \
                         match (not an unfinished write): {DAMAGED}.",
                        path.display()
                    );
                }
                break;
            }
        }
    }
    Ok((records, offset))
}

/// What the log's bytes hold, decoded without touching the disk.
#[derive(Debug)]
pub(crate) struct DecodedWal {
    pub hard_state: HardState,
    /// Log entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
    /// Well-formed records read.
    pub records: u64,
    /// Length of the valid prefix; what follows is a torn tail, to be cut off.
    pub valid_len: usize,
}

/// Decodes a whole log (as `open` reads it) against the snapshot it follows: the records up
/// to a torn tail, replayed. Corruption and a log that contradicts itself are errors naming
/// `path`.
pub(crate) fn decode_wal(
    bytes: &[u8],
    snapshot: Option<&Snapshot>,
    path: &Path,
) -> anyhow::Result<DecodedWal> {
    let (records, valid_len) = scan(bytes, path)?;
    let count = records.len() as u64;
    let (hard_state, entries) = replay(records, snapshot, path)?;
    Ok(DecodedWal { hard_state, entries, records: count, valid_len })
}

fn replay(
    records: Vec<Record<'_>>,
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
            anyhow::anyhow!("{}: record at offset {offset} is unreadable: {e}", path.display())
        };
        match kind {
            KIND_HARD_STATE => hard_state = serde_json::from_slice(payload).map_err(bad)?,
            _ => {
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
                        "{}: entry {} at offset {offset} leaves a gap after entry {}",
                        path.display(),
                        entry.index,
                        expected - 1
                    );
                }
                entries.truncate((entry.index - base - 1) as usize);
                entries.push(entry);
            }
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

    #[test]
    fn what_is_persisted_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, p) = open(dir.path());
        assert_eq!(p.entries.len(), 0);
        let hs = HardState { term: 3, voted_for: Some(2) };
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
    fn a_torn_tail_is_cut_off_and_the_rest_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1), entry(2, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let good = fs::metadata(&wal).unwrap().len();
        // Half a record: a header promising more bytes than were written.
        let mut f = OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, KIND_ENTRY, b'{', b'"']).unwrap();
        drop(f);
        let (_, p, recovery) = Storage::open(dir.path()).unwrap();
        assert_eq!(p.entries.len(), 2);
        assert_eq!(recovery.torn_bytes, 11);
        assert_eq!(fs::metadata(&wal).unwrap().len(), good, "the torn bytes are gone");
    }

    #[test]
    fn a_complete_last_record_with_a_bad_checksum_is_damage_not_a_torn_write() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(Some(HardState { term: 2, voted_for: Some(3) }), vec![entry(1, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let mut bytes = fs::read(&wal).unwrap();
        let last = bytes.len() - 2;
        bytes[last] ^= 0xff;
        fs::write(&wal, &bytes).unwrap();
        let error = Storage::open(dir.path()).err().expect("refuses").to_string();
        assert!(error.contains("complete") && error.contains("refusing to start"), "{error}");
        assert!(error.contains("new member"), "the way out is named: {error}");
    }

    #[test]
    fn zeros_never_written_after_the_last_record_are_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let mut f = OpenOptions::new().append(true).open(&wal).unwrap();
        f.write_all(&[0; 40]).unwrap();
        drop(f);
        let (_, p, recovery) = Storage::open(dir.path()).unwrap();
        assert_eq!((p.entries.len(), recovery.torn_bytes), (1, 40));
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
    fn corruption_before_valid_records_refuses_to_start_and_names_the_place() {
        let dir = tempfile::tempdir().unwrap();
        let (mut s, _) = open(dir.path());
        s.persist(&persist(None, vec![entry(1, 1), entry(2, 1), entry(3, 1)])).unwrap();
        drop(s);
        let wal = dir.path().join("wal.log");
        let mut bytes = fs::read(&wal).unwrap();
        let second = record_at(&bytes, 0).unwrap().2;
        bytes[second + HEADER + 3] ^= 0x01;
        fs::write(&wal, &bytes).unwrap();
        let error = Storage::open(dir.path()).err().expect("refuses").to_string();
        assert!(error.contains("wal.log"), "{error}");
        assert!(error.contains(&format!("offset {second}")), "{error}");
        assert!(error.contains("refusing to start"), "{error}");
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
            Some(HardState { term: 2, voted_for: None }),
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
        s.write_snapshot(&snapshot(3, 2)).unwrap();
        let (_, p) = open(dir.path());
        assert!(p.entries.is_empty(), "entries after a disagreeing index 3 are another history");
    }

    #[test]
    fn a_damaged_snapshot_refuses_to_start() {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = open(dir.path());
        s.write_snapshot(&snapshot(3, 2)).unwrap();
        let path = dir.path().join("snapshot.json");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0x20;
        fs::write(&path, &bytes).unwrap();
        let error = Storage::open(dir.path()).err().expect("refuses").to_string();
        assert!(error.contains("snapshot.json") && error.contains("refusing to start"), "{error}");
    }
}
