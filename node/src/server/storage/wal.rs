//! The write-ahead log's format: a file header, then one *batch* per round of the Raft loop
//! that had something to keep, each a header and a payload of records.
//!
//! ```text
//! "consenso-wal 2\n"                                       file header (format 2)
//! batch:  [len: u32][payload crc32c: u32][header crc32c: u32]   12 bytes, little-endian;
//!                                                          the header checksum covers the 8
//!                                                          bytes before it (length included)
//!         payload: record*, record = [kind: u8][len: u32][body]  (body: JSON)
//! ```
//!
//! A batch is written (with the zeros that grow the file, when it must grow) and made durable
//! with one `fdatasync` before the next is written, so only the last batch of a file can be
//! unfinished. The file grows 64 KiB at a
//! time, zeros written ahead of the log, so the log ends before the file does: zeros after
//! the last batch are that space. Recovery tells the two kinds of damage apart:
//!
//! - **torn** — the crash came during the last write, which was never acknowledged: the file
//!   ends inside the last batch (its header or payload cut short), or what follows the last
//!   good batch was never written (zeros, as a file system returns for space it allocated
//!   but did not write), or the last batch's payload ends in zeros, or a sector of it reads as
//!   zeros (its header's included: a crash may keep a write's later sectors and lose its
//!   first). It is cut off.
//! - **corrupt** — anything else: a complete header whose checksum fails, a complete payload
//!   with a non-zero end whose checksum fails, a batch whose records do not add up, and any bad
//!   batch followed by a good one (a later batch is written only after the earlier one was
//!   durable). Acknowledged data is damaged: the server refuses to start.
//!
//! A flipped bit in a length can no longer pass for a short write: the header's own checksum
//! covers it.

use std::path::Path;

use anyhow::bail;

pub(crate) const MAGIC: &[u8] = b"consenso-wal 2\n";
pub(crate) const BATCH_HEADER: usize = 12;
pub(crate) const RECORD_HEADER: usize = 5;
pub(crate) const KIND_HARD_STATE: u8 = 1;
pub(crate) const KIND_ENTRY: u8 = 2;
/// A batch longer than this is certainly not one we wrote (one round's entries are bounded
/// far below it).
const MAX_BATCH: usize = 256 << 20;

/// What an operator reads when a data directory is damaged.
pub(crate) const DAMAGED: &str = "acknowledged data is damaged; refusing to start. Keep the directory for inspection. \
    Do not empty it or copy another server's into it: either could make this server forget a vote or an \
    entry it promised to keep. The safe way out is to replace this server with a new member of the cluster \
    (a membership change): `consenso client remove-server <this id>`, then `consenso client add-server` \
    (a new id, on an empty disk)";

/// Appends one batch holding `records` (kind, body) to `out` (for tests and the fuzzer).
#[cfg(test)]
pub(crate) fn frame_batch(out: &mut Vec<u8>, records: &[(u8, &[u8])]) {
    let mut batch = BatchWriter::begin(out);
    for (kind, body) in records {
        batch.record(*kind, |out| out.extend_from_slice(body));
    }
    batch.finish();
}

/// Builds one batch at the end of a buffer, each record's body written straight into place
/// (no copy per record), the header filled in at the end. A batch with no record is taken back.
pub(crate) struct BatchWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

impl<'a> BatchWriter<'a> {
    pub fn begin(out: &'a mut Vec<u8>) -> BatchWriter<'a> {
        let start = out.len();
        out.extend_from_slice(&[0; BATCH_HEADER]);
        BatchWriter { out, start }
    }

    /// Appends a record of `kind` whose body `write` appends.
    pub fn record(&mut self, kind: u8, write: impl FnOnce(&mut Vec<u8>)) {
        self.out.push(kind);
        let len_at = self.out.len();
        self.out.extend_from_slice(&[0; 4]);
        write(self.out);
        let len = (self.out.len() - len_at - 4) as u32;
        self.out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    }

    /// The bytes of this batch's records so far.
    pub fn payload_len(&self) -> usize {
        self.out.len() - self.start - BATCH_HEADER
    }

    /// Fills in the header; false (and nothing appended) if the batch holds no record.
    pub fn finish(self) -> bool {
        let payload_at = self.start + BATCH_HEADER;
        if self.out.len() == payload_at {
            self.out.truncate(self.start);
            return false;
        }
        let header = header_for(&self.out[payload_at..]);
        self.out[self.start..payload_at].copy_from_slice(&header);
        true
    }
}

/// The header of a batch around `payload`.
fn header_for(payload: &[u8]) -> [u8; BATCH_HEADER] {
    let len = (payload.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c(payload).to_le_bytes();
    let header_crc = crc32c::crc32c_append(crc32c::crc32c(&len), &crc).to_le_bytes();
    let mut header = [0; BATCH_HEADER];
    header[0..4].copy_from_slice(&len);
    header[4..8].copy_from_slice(&crc);
    header[8..12].copy_from_slice(&header_crc);
    header
}

/// Appends a batch around a payload, whatever it holds (the fuzzer frames garbled records
/// with correct checksums, so that they reach the decoders behind them).
#[cfg(test)]
pub(crate) fn frame_payload(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&header_for(payload));
    out.extend_from_slice(payload);
}

/// The batch header at `offset`, if its checksum holds: the payload's length and checksum.
fn header_at(bytes: &[u8], offset: usize) -> Option<(usize, u32)> {
    let header = bytes.get(offset..offset + BATCH_HEADER)?;
    let field = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    let expected = crc32c::crc32c_append(crc32c::crc32c(&header[0..4]), &header[4..8]);
    (field(8) == expected).then_some((field(0) as usize, field(4)))
}

/// A whole, intact batch at `offset`: its payload and where it ends.
fn batch_at(bytes: &[u8], offset: usize) -> Option<(&[u8], usize)> {
    let (len, crc) = header_at(bytes, offset)?;
    if len > MAX_BATCH {
        return None;
    }
    let start = offset + BATCH_HEADER;
    let payload = bytes.get(start..start + len)?;
    (crc32c::crc32c(payload) == crc).then_some((payload, start + len))
}

/// The records of a batch's payload, or `None` if they do not add up to it.
pub(crate) fn split_payload(payload: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let kind = *payload.get(at)?;
        let len = u32::from_le_bytes(payload.get(at + 1..at + RECORD_HEADER)?.try_into().ok()?) as usize;
        let body = payload.get(at + RECORD_HEADER..(at + RECORD_HEADER).checked_add(len)?)?;
        records.push((kind, body));
        at += RECORD_HEADER + len;
    }
    Some(records)
}

/// A record as found in the log: its kind, its body, and the offset of its batch.
pub(crate) type Record<'a> = (u8, &'a [u8], usize);

/// Splits a whole log file into records. Returns them and the length of the valid prefix
/// (what follows it is a torn write, to be cut). Corruption is an error naming `path`.
pub(crate) fn scan<'a>(bytes: &'a [u8], path: &Path) -> anyhow::Result<(Vec<Record<'a>>, usize)> {
    if !bytes.starts_with(MAGIC) {
        if MAGIC.starts_with(bytes) {
            // Created and cut short before its header was durable: nothing was ever in it.
            return Ok((Vec::new(), 0));
        }
        bail!(
            "{}: not a format-2 log (written by an earlier Consenso, or not a log at all). This version \
             cannot read it; start this server on a new data directory (`consenso client remove-server <id>`, \
             then `consenso client add-server`)",
            path.display()
        );
    }
    let mut records = Vec::new();
    let mut offset = MAGIC.len();
    while offset < bytes.len() {
        if let Some((payload, end)) = batch_at(bytes, offset) {
            let Some(inside) = split_payload(payload) else {
                bail!(
                    "{}: the batch at offset {offset} has records that do not add up: {DAMAGED}.",
                    path.display()
                );
            };
            records.extend(inside.into_iter().map(|(kind, body)| (kind, body, offset)));
            offset = end;
            continue;
        }
        if bytes[offset..].iter().all(|b| *b == 0) {
            break; // The space made ahead of the log, or a write that never reached the disk.
        }
        if let Some(next) = (offset + 1..bytes.len()).find(|o| batch_at(bytes, *o).is_some()) {
            bail!(
                "{}: damaged batch at offset {offset} followed by a valid batch at offset {next}: {DAMAGED}.",
                path.display()
            );
        }
        if !torn(bytes, offset) {
            bail!(
                "{}: the last batch, at offset {offset}, is complete but its checksum does not match (not an \
                 unfinished write): {DAMAGED}.",
                path.display()
            );
        }
        break;
    }
    Ok((records, offset))
}

/// What a disk writes whole: a write cut by a power loss keeps or loses each sector entire.
const SECTOR: usize = 512;

/// Whether the bad bytes from `offset` to the end can be the last write, torn by a crash (see
/// the module documentation).
fn torn(bytes: &[u8], offset: usize) -> bool {
    let rest = &bytes[offset..];
    if rest.len() < BATCH_HEADER {
        return true;
    }
    match header_at(bytes, offset) {
        // A sector holding the header never reached the disk (the log is written over zeros,
        // and a crash can keep a write's later sectors and lose its first).
        None if header_sector_unwritten(bytes, offset) => true,
        // A complete header that fails its own checksum was written whole and then damaged.
        None => false,
        // We never write an empty batch, nor one this long.
        Some((len, _)) if len == 0 || len > MAX_BATCH => false,
        Some((len, _)) => {
            let payload = &rest[BATCH_HEADER..];
            // Cut short, its end never written, or a whole sector of it never written (our
            // records never hold 512 zero bytes in a row: their bodies are JSON text).
            payload.len() < len
                || payload[len - 1] == 0
                || has_unwritten_sector(bytes, offset + BATCH_HEADER, len)
        }
    }
}

/// Whether a sector holding the batch header at `offset` reads as never written. A sector is
/// written whole, so a lost one reads as zeros from where the batch starts in it to its end
/// (the batch's bytes there — header, payload — are never all zeros). Zeros in the header alone,
/// with the payload beside them in the same sector, are damage.
fn header_sector_unwritten(bytes: &[u8], offset: usize) -> bool {
    let zeros = |range: &[u8]| range.iter().all(|b| *b == 0);
    let boundary = ((offset / SECTOR + 1) * SECTOR).min(bytes.len());
    if zeros(&bytes[offset..boundary]) {
        return true;
    }
    // A header across the boundary: the sector after it holds the header's end and the
    // payload's start.
    boundary < offset + BATCH_HEADER && zeros(&bytes[boundary..(boundary + SECTOR).min(bytes.len())])
}

/// Whether `bytes[start..start + len]` contains a whole 512-byte sector of zeros.
fn has_unwritten_sector(bytes: &[u8], start: usize, len: usize) -> bool {
    let first = start.div_ceil(SECTOR) * SECTOR;
    (first..start + len)
        .step_by(SECTOR)
        .take_while(|s| s + SECTOR <= start + len)
        .any(|s| bytes[s..s + SECTOR].iter().all(|b| *b == 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(batches: &[&[(u8, &[u8])]]) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for batch in batches {
            frame_batch(&mut bytes, batch);
        }
        bytes
    }

    fn kinds(bytes: &[u8]) -> anyhow::Result<(Vec<u8>, usize)> {
        let (records, valid) = scan(bytes, Path::new("wal.log"))?;
        Ok((records.iter().map(|r| r.0).collect(), valid))
    }

    #[test]
    fn batches_read_back_record_by_record() {
        let bytes = log(&[&[(KIND_HARD_STATE, b"{}"), (KIND_ENTRY, b"[1]")], &[(KIND_ENTRY, b"[2]")]]);
        assert_eq!(kinds(&bytes).unwrap(), (vec![KIND_HARD_STATE, KIND_ENTRY, KIND_ENTRY], bytes.len()));
    }

    #[test]
    fn a_batch_cut_anywhere_is_a_torn_write_and_goes_whole() {
        let first = log(&[&[(KIND_ENTRY, b"[1]")]]);
        let both =
            log(&[&[(KIND_ENTRY, b"[1]")], &[(KIND_HARD_STATE, b"{\"term\":2}"), (KIND_ENTRY, b"[2]")]]);
        for cut in first.len() + 1..both.len() {
            let (kinds, valid) = kinds(&both[..cut]).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!((kinds, valid), (vec![KIND_ENTRY], first.len()), "cut at {cut}");
        }
    }

    #[test]
    fn a_batch_whose_end_was_never_written_is_torn() {
        let mut bytes = log(&[&[(KIND_ENTRY, b"[1]")], &[(KIND_ENTRY, b"[2, 3, 4]")]]);
        let end = bytes.len();
        bytes[end - 4..].fill(0);
        assert_eq!(kinds(&bytes).unwrap().0, vec![KIND_ENTRY]);
        let mut zeros = log(&[&[(KIND_ENTRY, b"[1]")]]);
        zeros.extend([0; 40]);
        assert_eq!(kinds(&zeros).unwrap().0, vec![KIND_ENTRY]);
        // A sector in the middle of the last batch never reached the disk.
        let big = vec![b'x'; 4000];
        let mut middle = log(&[&[(KIND_ENTRY, b"[1]")], &[(KIND_ENTRY, &big)]]);
        middle[1024..1536].fill(0);
        assert_eq!(kinds(&middle).unwrap().0, vec![KIND_ENTRY]);
    }

    #[test]
    fn a_header_cut_by_a_sector_boundary_before_zeros_is_torn() {
        let mut bytes = log(&[&[(KIND_ENTRY, &[b'x'; 475])]]);
        let first_end = bytes.len();
        assert!(first_end < 512 && first_end + BATCH_HEADER > 512, "the next header spans offset 512");
        frame_batch(&mut bytes, &[(KIND_ENTRY, b"[2]")]);
        bytes[512..].fill(0);
        bytes.extend([0; 2048]);
        assert_eq!(kinds(&bytes).unwrap(), (vec![KIND_ENTRY], first_end));
        // The same cut with its second sector written is damage.
        bytes[512 + 2] = 1;
        assert!(kinds(&bytes).is_err());
    }

    #[test]
    fn a_last_batch_whose_header_sector_was_lost_and_later_sectors_kept_is_torn() {
        let big = vec![b'x'; 3000];
        let first = log(&[&[(KIND_ENTRY, b"[1]")]]);
        let mut whole = log(&[&[(KIND_ENTRY, b"[1]")], &[(KIND_ENTRY, &big)]]);
        whole.extend([0; 4096]);
        // The header within one sector, zeros; the payload's later sectors on disk.
        let mut lost = whole.clone();
        lost[first.len()..512].fill(0);
        assert_eq!(kinds(&lost).unwrap(), (vec![KIND_ENTRY], first.len()));
        // A header across a sector boundary, either part lost.
        let mut bytes = log(&[&[(KIND_ENTRY, &[b'x'; 475])]]);
        let first_end = bytes.len();
        frame_batch(&mut bytes, &[(KIND_ENTRY, &big)]);
        bytes.extend([0; 4096]);
        for lost_part in [first_end..512, 512..1024] {
            let mut torn = bytes.clone();
            torn[lost_part.clone()].fill(0);
            assert_eq!(kinds(&torn).unwrap(), (vec![KIND_ENTRY], first_end), "lost {lost_part:?}");
        }
        // Zeros in the header alone, its payload beside them in the same sector: the sector
        // was written, and then damaged.
        let mut zeroed = whole.clone();
        zeroed[first.len()..first.len() + BATCH_HEADER].fill(0);
        assert!(kinds(&zeroed).is_err());
        // A header written whole with a bit flipped is still damage.
        let mut flipped = whole;
        flipped[first.len() + 1] ^= 0x10;
        assert!(kinds(&flipped).is_err());
    }

    #[test]
    fn a_flipped_bit_in_the_last_batch_is_corruption_even_in_its_length() {
        let good = log(&[&[(KIND_ENTRY, b"[1]")], &[(KIND_HARD_STATE, b"{\"voted_for\":3}")]]);
        let last = log(&[&[(KIND_ENTRY, b"[1]")]]).len();
        for at in [last, last + 4, last + 8, good.len() - 2] {
            let mut bytes = good.clone();
            bytes[at] ^= 0x01;
            let error = kinds(&bytes).expect_err(&format!("bit flip at {at}")).to_string();
            assert!(error.contains("refusing to start"), "{error}");
        }
    }

    #[test]
    fn damage_before_a_valid_batch_is_corruption() {
        let mut bytes = log(&[&[(KIND_ENTRY, b"[1]")], &[(KIND_ENTRY, b"[2]")], &[(KIND_ENTRY, b"[3]")]]);
        let second = log(&[&[(KIND_ENTRY, b"[1]")]]).len();
        bytes[second + BATCH_HEADER + 1] ^= 0x40;
        let error = kinds(&bytes).unwrap_err().to_string();
        assert!(
            error.contains(&format!("offset {second}")) && error.contains("followed by a valid batch"),
            "{error}"
        );
    }

    #[test]
    fn a_log_of_an_earlier_format_is_refused_with_a_way_out() {
        let error = kinds(b"\x05\x00\x00\x00garbage").unwrap_err().to_string();
        assert!(error.contains("earlier Consenso") && error.contains("add-server"), "{error}");
        assert_eq!(kinds(b"conse").unwrap(), (vec![], 0), "a header cut short was never used");
    }
}
