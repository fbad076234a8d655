//! Fuzzing of every decoder that reads bytes from outside the process: the six kinds of
//! protocol frame (client, proxy, server in and out, supervisor in and out), the write-ahead
//! log and the snapshot file. Each must answer any input with a value or a clean error —
//! never a panic, which in a server would kill the connection's task or, in the Raft loop,
//! the server.
//!
//! Why our own fuzzer: cargo-fuzz and libFuzzer need a nightly compiler, and CI builds on
//! stable. This one is blind (no coverage feedback) but deterministic: a seeded `Rng` drives
//! every mutation, so a failure names the seed and the execution and replays exactly. What
//! it lacks in feedback it makes up in structure: it knows JSON (numbers, strings, members,
//! nesting) and it knows the disk formats, so it can garble a log record's JSON and then
//! give the record a correct checksum — otherwise the checksum would stop every mutation at
//! the door and the JSON decoders behind it would never be reached.
//!
//! `every_decoder_survives_a_million_inputs` is the long run recorded in bench/RESULTS.md.

use std::fmt::Debug;
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::protocol;
use shared::raft::Snapshot;
use shared::rng::Rng;

use crate::server::storage::{self, KIND_ENTRY, KIND_HARD_STATE, MAGIC};

mod seeds;

/// The stack a server's tasks run on (tokio's default worker stack): deep nesting must be
/// refused before it overflows this, since an overflow aborts the process, panic or not.
const SERVER_STACK: usize = 2 << 20;

/// One decoder under test.
struct Target {
    name: &'static str,
    shape: Shape,
    /// Valid inputs, which every mutation starts from.
    seeds: Vec<Vec<u8>>,
    /// Decodes an input, panicking only if the decoder breaks a promise (a panic inside it, or
    /// a decoded value that does not survive being written again). True if it was accepted.
    decode: Decoder,
}

type Decoder = Box<dyn Fn(&[u8]) -> bool + Send>;

/// What an input is, for the mutations that understand it.
#[derive(Clone, Copy)]
enum Shape {
    /// A JSON text frame.
    Json,
    /// A write-ahead log: a header, then batches `[len][crc][header crc]` of records
    /// `[kind][len][JSON]`.
    Wal,
    /// A snapshot file: a header line with length and checksum, then a JSON body.
    SnapshotFile,
}

fn targets() -> Vec<Target> {
    vec![
        frame_target::<protocol::ClientFrame>("client frame", seeds::client_frames()),
        frame_target::<protocol::ProxyFrame>("proxy frame", seeds::proxy_frames()),
        frame_target::<protocol::ServerInbound>("server inbound frame", seeds::server_inbound()),
        frame_target::<protocol::ServerOutbound>("server outbound frame", seeds::server_outbound()),
        frame_target::<protocol::SupervisorInbound>("supervisor inbound frame", seeds::supervisor_inbound()),
        frame_target::<protocol::SupervisorOutbound>(
            "supervisor outbound frame",
            seeds::supervisor_outbound(),
        ),
        wal_target(),
        snapshot_target(),
    ]
}

fn frame_target<T>(name: &'static str, frames: Vec<T>) -> Target
where
    T: Serialize + DeserializeOwned + PartialEq + Debug + 'static,
{
    let seeds = frames.iter().map(|f| protocol::encode(f).into_bytes()).collect();
    Target { name, shape: Shape::Json, seeds, decode: Box::new(decode_frame::<T>) }
}

/// A WebSocket text frame is UTF-8 by the time `parse` sees it (the transport refuses
/// anything else), so invalid bytes are rejected there, and the lossy text — replacement
/// characters and all — is what is left to decode.
fn decode_frame<T>(bytes: &[u8]) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    match std::str::from_utf8(bytes) {
        Ok(text) => round_trip::<T>(text),
        Err(_) => round_trip::<T>(&String::from_utf8_lossy(bytes)),
    }
}

/// A frame the decoder accepts must come back unchanged through `encode` and `parse`: a
/// proxy re-encodes what it forwards, and what it forwards must mean the same.
fn round_trip<T>(text: &str) -> bool
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let Ok(frame) = protocol::parse::<T>(text) else { return false };
    let encoded = protocol::encode(&frame);
    match protocol::parse::<T>(&encoded) {
        Ok(again) => {
            assert!(again == frame, "changed by re-encoding:\n  {frame:?}\n  {again:?}\n  via {encoded}")
        }
        Err(e) => panic!("accepted, but its own encoding is refused: {e}\n  via {encoded}"),
    }
    true
}

fn wal_target() -> Target {
    let snapshot = seeds::snapshot_at(3, 2);
    Target {
        name: "WAL replay",
        shape: Shape::Wal,
        seeds: seeds::wal_images(),
        // Each log alone and after a snapshot at index 3: replay treats entries at or below
        // the snapshot differently, and drops a log that disagrees with it.
        decode: Box::new(move |bytes| {
            let alone = replay_checked(bytes, None);
            let after_snapshot = replay_checked(bytes, Some(&snapshot));
            alone || after_snapshot
        }),
    }
}

/// Replays a log and checks what `Raft::new` relies on: entries contiguous from the snapshot.
fn replay_checked(bytes: &[u8], snapshot: Option<&Snapshot>) -> bool {
    let Ok(log) = storage::decode_wal(bytes, snapshot, Path::new("wal.log")) else { return false };
    assert!(log.valid_len <= bytes.len(), "valid prefix {} of {} bytes", log.valid_len, bytes.len());
    let base = snapshot.map_or(0, |s| s.meta.index);
    for (i, entry) in log.entries.iter().enumerate() {
        assert_eq!(base.checked_add(i as u64 + 1), Some(entry.index), "entries not contiguous from {base}");
    }
    true
}

fn snapshot_target() -> Target {
    let log = seeds::wal_images().swap_remove(0);
    Target {
        name: "snapshot file",
        shape: Shape::SnapshotFile,
        seeds: seeds::snapshot_files(),
        decode: Box::new(move |bytes| {
            let path = Path::new("snapshot.json");
            let Ok(snapshot) = storage::decode_snapshot(bytes, path) else { return false };
            let body = serde_json::to_vec(&snapshot).expect("snapshots serialize");
            let again = storage::decode_snapshot(&storage::snapshot_file(&body), path);
            assert_eq!(again.ok().as_ref(), Some(&snapshot), "a snapshot written again reads back the same");
            // Recovery goes on with the log, whatever index and term the snapshot claims.
            replay_checked(&log, Some(&snapshot));
            true
        }),
    }
}

/// What a run of one target did.
struct Tally {
    executions: u64,
    accepted: u64,
    elapsed: Duration,
}

/// Runs `executions` mutated inputs through the target; panics, naming the input, on the
/// first one the decoder panics on.
fn fuzz(target: &Target, seed: u64, executions: u64) -> Tally {
    for (i, input) in target.seeds.iter().enumerate() {
        let accepted = catch_unwind(AssertUnwindSafe(|| (target.decode)(input)));
        assert!(matches!(accepted, Ok(true)), "{}: seed input {i} is not accepted", target.name);
    }
    let mut mutator = Mutator::new(seed, &target.seeds, target.shape);
    let mut accepted = 0;
    let start = Instant::now();
    for execution in 0..executions {
        let input = mutator.input();
        match catch_unwind(AssertUnwindSafe(|| (target.decode)(&input))) {
            Ok(ok) => accepted += u64::from(ok),
            Err(panic) => panic!("{}", failure(target.name, seed, execution, panic.as_ref(), &input)),
        }
    }
    Tally { executions, accepted, elapsed: start.elapsed() }
}

fn failure(
    target: &str,
    seed: u64,
    execution: u64,
    panic: &(dyn std::any::Any + Send),
    input: &[u8],
) -> String {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "the {target} decoder panicked: {message}\n\
         replay: seed {seed:#x}, execution {execution} (FUZZ_SEED={seed:#x} reruns this stream)\n\
         input, {} bytes, hex: {hex}\n\
         input as text: {}",
        input.len(),
        String::from_utf8_lossy(input)
    )
}

/// The seed of a target's stream: `FUZZ_SEED` (to explore other streams) mixed with its name.
fn stream_seed(name: &str) -> u64 {
    let base = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0xC0_5E_25_0F);
    name.bytes().fold(base, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// Runs every target on a thread with a server's stack; returns the tallies by name.
fn run_all(executions: u64) -> Vec<(&'static str, Tally)> {
    std::thread::Builder::new()
        .name("fuzz".into())
        .stack_size(SERVER_STACK)
        .spawn(move || targets().iter().map(|t| (t.name, fuzz(t, stream_seed(t.name), executions))).collect())
        .expect("spawns")
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

// ---------------------------------------------------------------- mutations

const INTERESTING_BYTES: &[u8] = &[
    0, 0xff, b'"', b'{', b'}', b'[', b']', b'\\', b',', b':', b'0', b'1', b'9', b'-', b'.', b'e', b' ', 0x80,
    0xc3, 0xed,
];

/// Numbers at the edges of every integer and float type the frames use, and malformed ones.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-1",
    "255",
    "256",
    "4294967295",
    "4294967296",
    "9007199254740993",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551615",
    "18446744073709551616",
    "100000000000000000000000000000",
    "1e308",
    "1e309",
    "-1e309",
    "5e-324",
    "1e-400",
    "1.7976931348623157e308",
    "0.1",
    "1.5",
    "-0.0",
    "1E2",
    "00",
    "1.",
    ".5",
    "-",
    "1e",
    "1e+",
];

/// String contents (JSON text between the quotes): unicode, escapes, invalid escapes and bytes.
const STRINGS: &[&[u8]] = &[
    b"",
    "é漢字🦀".as_bytes(),
    br"\u0000",
    br"\ud83e\udd80",
    br"\ud800",
    br"\udc00x",
    br#"\n\t\"\\\/\b\f\r"#,
    br"\x41",
    br"\u12",
    b"\x01",
    b"\xff\xfe",
    b"\xc3",
    b"\xed\xa0\x80",
];

const VALUES: &[&str] =
    &["null", "true", "false", "[]", "{}", "\"\"", "0", "-1", "1.5", "[1,2,3]", "[null]", "[[]]"];

struct Mutator<'a> {
    rng: Rng,
    seeds: &'a [Vec<u8>],
    shape: Shape,
    /// Strings, members and values cut from the seeds' JSON: swapping in a `type` or a field
    /// of another frame reaches variants and fields that random bytes would not.
    strings: Vec<Vec<u8>>,
    members: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
}

impl<'a> Mutator<'a> {
    fn new(seed: u64, seeds: &'a [Vec<u8>], shape: Shape) -> Mutator<'a> {
        let mut m =
            Mutator { rng: Rng::new(seed), seeds, shape, strings: vec![], members: vec![], values: vec![] };
        for text in seeds.iter().flat_map(|s| json_of(s, shape)) {
            let spans = spans(&text);
            let cut =
                |ranges: &[Range<usize>]| ranges.iter().map(|r| text[r.clone()].to_vec()).collect::<Vec<_>>();
            m.strings.extend(cut(&spans.strings));
            m.members.extend(cut(&spans.members));
            m.values.extend(cut(&spans.values));
        }
        m
    }

    /// The next input: usually a seed with one to four stacked mutations, sometimes noise.
    fn input(&mut self) -> Vec<u8> {
        if self.rng.chance(20_000) {
            let len = self.rng.below(257) as usize;
            return (0..len).map(|_| self.rng.next_u64() as u8).collect();
        }
        if self.rng.chance(20_000) {
            const ALPHABET: &[u8] = br#"{}[]":,0123456789-.eE truefalsnl\u"#;
            let len = self.rng.below(129) as usize;
            return (0..len).map(|_| *self.rng.pick(ALPHABET)).collect();
        }
        let mut data = self.rng.pick(self.seeds).clone();
        for _ in 0..self.rng.range(1, 4) {
            match self.shape {
                Shape::Json if self.rng.below(3) > 0 => self.json_edit(&mut data),
                Shape::Json => self.byte_edit(&mut data),
                Shape::Wal => self.wal_edit(&mut data),
                Shape::SnapshotFile => self.snapshot_edit(&mut data),
            }
        }
        data
    }

    fn index(&mut self, len: usize) -> usize {
        self.rng.below(len as u64 + 1) as usize
    }

    /// A non-empty range inside `0..len` (which must be positive), at most 32 long.
    fn range(&mut self, len: usize) -> Range<usize> {
        let start = self.rng.below(len as u64) as usize;
        start..start + self.rng.range(1, (len - start).min(32) as u64) as usize
    }

    fn byte_edit(&mut self, data: &mut Vec<u8>) {
        if data.is_empty() {
            data.extend((0..self.rng.range(1, 8)).map(|_| *self.rng.pick(INTERESTING_BYTES)));
            return;
        }
        let at = self.rng.below(data.len() as u64) as usize;
        match self.rng.below(9) {
            0 => data[at] ^= 1 << self.rng.below(8),
            1 => data[at] = *self.rng.pick(INTERESTING_BYTES),
            2 => {
                let noise: Vec<u8> = (0..self.rng.range(1, 8)).map(|_| self.rng.next_u64() as u8).collect();
                data.splice(at..at, noise);
            }
            3 => {
                let run: Vec<u8> =
                    (0..self.rng.range(1, 8)).map(|_| *self.rng.pick(INTERESTING_BYTES)).collect();
                data.splice(at..at, run);
            }
            4 => {
                let cut = self.range(data.len());
                data.drain(cut);
            }
            5 => {
                let copy = data[self.range(data.len())].to_vec();
                let to = self.index(data.len());
                data.splice(to..to, copy);
            }
            6 => data.truncate(at),
            7 => {
                let other = self.rng.pick(self.seeds);
                let from = self.index(other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                for i in self.range(data.len()) {
                    data[i] = self.rng.next_u64() as u8;
                }
            }
        }
    }

    /// One edit that knows JSON; a byte edit when the text offers nothing to edit.
    fn json_edit(&mut self, text: &mut Vec<u8>) {
        let s = spans(text);
        let edited = match self.rng.below(8) {
            0 => self
                .pick(&s.numbers)
                .map(|r| (r, NUMBERS[self.rng.below(NUMBERS.len() as u64) as usize].into())),
            1 => self.pick(&s.strings).filter(|r| r.len() >= 2).map(|r| {
                let content = self.string_content();
                let mut quoted = b"\"".to_vec();
                quoted.extend_from_slice(&content);
                quoted.push(b'"');
                (r, quoted)
            }),
            2 => self.pick(&s.strings).map(|r| (r, self.rng.pick(&self.strings).clone())),
            3 => self.pick(&s.members).map(|r| (with_a_comma(text, r), Vec::new())),
            4 => self.pick(&s.members).map(|r| {
                let mut twice = text[r.clone()].to_vec();
                twice.push(b',');
                twice.extend_from_slice(&text[r.clone()]);
                (r, twice)
            }),
            5 => self.pick(&s.values).map(|r| {
                let value = if self.rng.below(2) == 0 {
                    VALUES[self.rng.below(VALUES.len() as u64) as usize].into()
                } else {
                    self.rng.pick(&self.values).clone()
                };
                (r, value)
            }),
            6 => self.pick(&s.values).map(|r| {
                // Deeper than serde_json's recursion limit (128) now and then.
                let depth = self.rng.range(1, 300) as usize;
                let (open, close): (&[u8], &[u8]) =
                    if self.rng.below(2) == 0 { (b"[", b"]") } else { (br#"{"a":"#, b"}") };
                let mut nested = open.repeat(depth);
                nested.extend_from_slice(&text[r.clone()]);
                nested.extend_from_slice(&close.repeat(depth));
                (r, nested)
            }),
            _ => self.pick(&s.objects).map(|at| {
                let mut member = self.rng.pick(&self.members).clone();
                member.push(b',');
                (at..at, member)
            }),
        };
        match edited {
            Some((range, replacement)) => drop(text.splice(range, replacement)),
            None => self.byte_edit(text),
        }
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        (!items.is_empty()).then(|| self.rng.pick(items).clone())
    }

    fn string_content(&mut self) -> Vec<u8> {
        match self.rng.below(4) {
            0 => b"a".repeat(*self.rng.pick(&[100_usize, 1000, 5000])),
            1 => br"\u00e9".repeat(*self.rng.pick(&[10_usize, 300])),
            _ => self.rng.pick(STRINGS).to_vec(),
        }
    }

    /// Edits a log: mostly inside records, which then get correct checksums (reaching the JSON
    /// decoders); sometimes the framing itself (lengths, torn batches, garbled checksums).
    fn wal_edit(&mut self, image: &mut Vec<u8>) {
        let Some(mut batches) = split_wal(image) else { return self.byte_edit(image) };
        let records: Vec<(usize, usize)> =
            batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.len()).map(move |r| (b, r))).collect();
        match self.rng.below(10) {
            0..=5 if !records.is_empty() => {
                let (b, r) = records[self.rng.below(records.len() as u64) as usize];
                let record = &mut batches[b][r];
                match self.rng.below(6) {
                    0..=3 => self.json_edit(&mut record.1),
                    4 => self.byte_edit(&mut record.1),
                    _ => record.0 = *self.rng.pick(&[0, KIND_HARD_STATE, KIND_ENTRY, 3, 0xff]),
                }
                *image = join_wal(&batches);
            }
            0..=6 => {
                // Records moved between logs and batches, batches added and removed.
                let other = split_wal(self.rng.pick(self.seeds).as_slice()).unwrap_or_default();
                if let Some(batch) = self.pick(&other) {
                    let at = self.index(batches.len());
                    batches.insert(at, batch);
                }
                if !batches.is_empty() && self.rng.below(2) == 0 {
                    let b = self.rng.below(batches.len() as u64) as usize;
                    if batches[b].len() > 1 && self.rng.below(2) == 0 {
                        let cut = self.index(batches[b].len());
                        let tail = batches[b].split_off(cut);
                        batches.insert(b + 1, tail);
                    } else {
                        batches.remove(b);
                    }
                }
                *image = join_wal(&batches);
            }
            7 if !batches.is_empty() => {
                // A length field that lies — a batch's (with or without a matching header
                // checksum) or a record's inside a batch whose checksums hold.
                let b = self.rng.below(batches.len() as u64) as usize;
                let lie = |real: u32, rng: &mut Rng| {
                    *rng.pick(&[
                        0,
                        1,
                        real.wrapping_add(1),
                        real.wrapping_sub(1),
                        64 << 20,
                        1 << 31,
                        u32::MAX,
                    ])
                };
                if self.rng.below(2) == 0 {
                    let start = batch_start(&batches, b);
                    let real = u32::from_le_bytes(image[start..start + 4].try_into().expect("4 bytes"));
                    let len = lie(real, &mut self.rng);
                    image[start..start + 4].copy_from_slice(&len.to_le_bytes());
                    if self.rng.below(2) == 0 {
                        let crc = crc32c::crc32c_append(
                            crc32c::crc32c(&image[start..start + 4]),
                            &image[start + 4..start + 8],
                        );
                        image[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
                    }
                } else if !batches[b].is_empty() {
                    let mut payload = record_payload(&batches[b]);
                    let r = self.rng.below(batches[b].len() as u64) as usize;
                    let at: usize = batches[b][..r].iter().map(|(_, body)| 5 + body.len()).sum::<usize>() + 1;
                    let real = batches[b][r].1.len() as u32;
                    payload[at..at + 4].copy_from_slice(&lie(real, &mut self.rng).to_le_bytes());
                    let mut rebuilt = MAGIC.to_vec();
                    for (i, batch) in batches.iter().enumerate() {
                        if i == b {
                            storage::frame_payload(&mut rebuilt, &payload);
                        } else {
                            storage::frame_payload(&mut rebuilt, &record_payload(batch));
                        }
                    }
                    *image = rebuilt;
                }
            }
            8 => {
                // A torn batch: a cut inside the last write, a tail of zeros never written, or
                // a sector of zeros inside the last batch.
                match self.rng.below(3) {
                    0 if !image.is_empty() => {
                        let keep = self.index(image.len() - 1);
                        image.truncate(keep);
                    }
                    1 if image.len() > MAGIC.len() + 16 => {
                        let from = self.rng.range(MAGIC.len() as u64, image.len() as u64 - 1) as usize;
                        let to = (from + 512).min(image.len());
                        image[from..to].fill(0);
                    }
                    _ => image.extend(std::iter::repeat_n(0, self.rng.range(1, 600) as usize)),
                }
            }
            _ => self.byte_edit(image),
        }
    }

    /// Edits a snapshot file: mostly its JSON body behind a correct header, sometimes the
    /// header's fields, sometimes raw bytes.
    fn snapshot_edit(&mut self, file: &mut Vec<u8>) {
        let Some(newline) = file.iter().position(|b| *b == b'\n') else { return self.byte_edit(file) };
        match self.rng.below(6) {
            0..=3 => {
                let mut body = file[newline + 1..].to_vec();
                if self.rng.below(4) == 0 {
                    self.byte_edit(&mut body)
                } else {
                    self.json_edit(&mut body)
                }
                *file = storage::snapshot_file(&body);
            }
            4 => {
                let header = String::from_utf8_lossy(&file[..newline]).into_owned();
                let mut fields: Vec<String> = header.split(' ').map(str::to_string).collect();
                let i = self.rng.below(fields.len() as u64) as usize;
                match self.rng.below(4) {
                    0 => fields[i] = format!("len={}", self.rng.pick(NUMBERS)),
                    1 => {
                        fields[i] =
                            format!("crc={}", self.rng.pick(&["ffffffff", "100000000", "-1", "", "zz"]))
                    }
                    2 => {
                        fields.remove(i);
                    }
                    _ => fields.insert(i, fields[i].clone()),
                }
                let mut edited = fields.join(" ").into_bytes();
                edited.extend_from_slice(&file[newline..]);
                *file = edited;
            }
            _ => self.byte_edit(file),
        }
    }
}

/// The JSON texts inside an input of this shape.
fn json_of(input: &[u8], shape: Shape) -> Vec<Vec<u8>> {
    match shape {
        Shape::Json => vec![input.to_vec()],
        Shape::Wal => {
            split_wal(input).unwrap_or_default().into_iter().flatten().map(|(_, body)| body).collect()
        }
        Shape::SnapshotFile => {
            input.iter().position(|b| *b == b'\n').map(|n| input[n + 1..].to_vec()).into_iter().collect()
        }
    }
}

/// A log batch as the fuzzer edits it: its records as `(kind, body)`.
type Batch = Vec<(u8, Vec<u8>)>;

/// The batches of a log, each a list of `(kind, body)` records, checksums ignored; `None` if
/// the header is missing or the lengths do not add up to the image (a framing edit came first).
fn split_wal(image: &[u8]) -> Option<Vec<Batch>> {
    let mut batches = Vec::new();
    let mut at = MAGIC.len();
    if !image.starts_with(MAGIC) {
        return None;
    }
    while at < image.len() {
        let len = u32::from_le_bytes(image.get(at..at + 4)?.try_into().ok()?) as usize;
        let payload = image.get(at + 12..(at + 12).checked_add(len)?)?;
        let records = storage::split_payload(payload)?;
        batches.push(records.into_iter().map(|(kind, body)| (kind, body.to_vec())).collect());
        at += 12 + len;
    }
    Some(batches)
}

fn record_payload(batch: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut payload = Vec::new();
    for (kind, body) in batch {
        payload.push(*kind);
        payload.extend_from_slice(&(body.len() as u32).to_le_bytes());
        payload.extend_from_slice(body);
    }
    payload
}

fn join_wal(batches: &[Batch]) -> Vec<u8> {
    let mut image = MAGIC.to_vec();
    for batch in batches {
        storage::frame_payload(&mut image, &record_payload(batch));
    }
    image
}

fn batch_start(batches: &[Batch], i: usize) -> usize {
    MAGIC.len() + batches[..i].iter().map(|b| 12 + record_payload(b).len()).sum::<usize>()
}

/// Where things are in a JSON text, found by a tolerant scan (the text may be garbled).
#[derive(Default)]
struct Spans {
    /// With their quotes.
    strings: Vec<Range<usize>>,
    numbers: Vec<Range<usize>>,
    /// `"key": value`.
    members: Vec<Range<usize>>,
    /// Values of members.
    values: Vec<Range<usize>>,
    /// Just inside each `{`.
    objects: Vec<usize>,
}

fn spans(text: &[u8]) -> Spans {
    let mut s = Spans::default();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b'"' => {
                let end = string_end(text, i);
                s.strings.push(i..end);
                let colon = skip_whitespace(text, end);
                if text.get(colon) == Some(&b':') {
                    let value = skip_whitespace(text, colon + 1);
                    if let Some(value_end) = value_end(text, value) {
                        s.members.push(i..value_end);
                        s.values.push(value..value_end);
                    }
                }
                i = end;
            }
            b'-' | b'0'..=b'9' => {
                let len = text[i..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                s.numbers.push(i..i + len);
                i += len;
            }
            b'{' => {
                s.objects.push(i + 1);
                i += 1;
            }
            _ => i += 1,
        }
    }
    s
}

/// Just past the string whose opening quote is at `start` (the text's end if unterminated).
fn string_end(text: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < text.len() {
        match text[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    text.len()
}

fn skip_whitespace(text: &[u8], from: usize) -> usize {
    from + text.get(from..).unwrap_or_default().iter().take_while(|b| b.is_ascii_whitespace()).count()
}

/// Just past the value starting at `start`, if it ends.
fn value_end(text: &[u8], start: usize) -> Option<usize> {
    match *text.get(start)? {
        b'"' => Some(string_end(text, start)),
        b'{' | b'[' => {
            let mut depth = 0;
            let mut i = start;
            while i < text.len() {
                match text[i] {
                    b'"' => {
                        i = string_end(text, i);
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let len = text[start..]
                .iter()
                .take_while(|b| !matches!(b, b',' | b'}' | b']') && !b.is_ascii_whitespace())
                .count();
            (len > 0).then_some(start + len)
        }
    }
}

/// A member's range with the comma that separates it from its neighbour, so that dropping it
/// leaves well-formed JSON (and the decoder sees a missing field, not only a syntax error).
fn with_a_comma(text: &[u8], member: Range<usize>) -> Range<usize> {
    let after = skip_whitespace(text, member.end);
    if text.get(after) == Some(&b',') {
        return member.start..after + 1;
    }
    let before = text[..member.start].iter().rposition(|b| !b.is_ascii_whitespace());
    match before {
        Some(comma) if text[comma] == b',' => comma..member.end,
        _ => member,
    }
}

// ---------------------------------------------------------------- the runs

fn print_table(tallies: &[(&str, Tally)]) {
    println!("| target | executions | accepted | time (s) | executions/s | panics |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, t) in tallies {
        let seconds = t.elapsed.as_secs_f64();
        println!(
            "| {name} | {} | {:.1}% | {seconds:.1} | {:.0} | 0 |",
            t.executions,
            100.0 * t.accepted as f64 / t.executions as f64,
            t.executions as f64 / seconds
        );
    }
}

#[test]
fn every_decoder_survives_a_short_fuzz_run() {
    let tallies = run_all(20_000);
    for (name, tally) in &tallies {
        // A fuzzer whose inputs are all refused at the first byte tests nothing.
        assert!(tally.accepted > tally.executions / 50, "{name}: only {} inputs accepted", tally.accepted);
    }
    print_table(&tallies);
}

#[test]
#[ignore = "a million inputs per decoder: run in release (see bench/RESULTS.md)"]
fn every_decoder_survives_a_million_inputs() {
    print_table(&run_all(1_000_000));
}

#[test]
fn the_mutations_are_the_same_for_the_same_seed() {
    let seeds = vec![br#"{"type":"put","id":1,"key":"k","value":"v"}"#.to_vec()];
    let stream = |seed| {
        let mut m = Mutator::new(seed, &seeds, Shape::Json);
        (0..200).map(|_| m.input()).collect::<Vec<_>>()
    };
    assert_eq!(stream(1), stream(1));
    assert_ne!(stream(1), stream(2));
}
