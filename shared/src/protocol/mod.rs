//! The JSON protocol spoken over WebSockets. Every frame is one JSON object with a `"type"`
//! field; `docs/protocol.md` documents each with examples.
//!
//! Three conversations:
//!
//! - **Clients and pages ↔ proxy** (`ClientFrame` / `ProxyFrame`): writes, reads, status, admin
//!   commands, and for pages the live observation stream.
//! - **Proxies and peers ↔ server** (`ServerInbound` / `ServerOutbound`): Raft messages between
//!   servers; client requests, fault commands and the observation stream between a proxy and a
//!   server.
//! - **Proxies ↔ cluster supervisor** (`SupervisorInbound` / `SupervisorOutbound`): crash,
//!   restart, pause and resume real processes.
//!
//! Every conversation opens with a `hello` carrying the protocol version and, where required,
//! the shared token.
//!
//! # Layout
//!
//! - `client`: clients and pages ↔ proxy;
//! - `server`: proxies and peers ↔ server;
//! - `supervisor`: proxies ↔ supervisor;
//! - `status`: the cluster's status as proxies report it;
//! - `lessons`: a lesson's state and controls, as frames carry them;
//! - `errors`: the errors every conversation shares;
//! - this file: versions, limits, parsing and encoding.

mod client;
mod errors;
mod lessons;
mod server;
mod status;
mod supervisor;

pub use crate::transit::{HELD_LISTED, HeldMessage};
pub use client::*;
pub use errors::*;
pub use lessons::*;
pub use server::*;
pub use status::*;
pub use supervisor::*;

use serde::{Deserialize, Serialize};

use crate::event::{Alarm, Consistency, EntrySummary, LogMirror, Observed};
use crate::kv::{ClientId, WriteResult};
use crate::raft::{Bug, Index, Message, MessageId, Millis, NodeId, Term};
use crate::replica::{ReplicaStatus, Reply, Request};

/// Bumped on any incompatible change; peers with another version are refused with a clear error.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame accepted, in bytes. Snapshots of the demo store fit well within it.
pub const MAX_FRAME_BYTES: usize = 8 << 20;

/// Largest write (its command as JSON): it must fit in one frame between nodes with room for
/// the message around it. The same limit holds a read's key: no longer key can be stored.
pub const MAX_WRITE_BYTES: usize = MAX_FRAME_BYTES - (64 << 10);

/// What a command's session numbers add to its operation, as JSON, at most.
const SESSION_JSON_BYTES: usize = 128;

/// Why an operation cannot fit in a frame between nodes, if it cannot: `bytes` is its size as
/// JSON with the session around it. Checked before a write takes a sequence number (a write
/// refused here never reaches the log) and for a read's key.
pub fn too_large(op: &crate::kv::WriteOp) -> Option<ApiError> {
    let bytes = serde_json::to_vec(op).map_or(usize::MAX, |json| json.len()) + SESSION_JSON_BYTES;
    (bytes > MAX_WRITE_BYTES).then(|| {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "the write takes {bytes} bytes; one write may take at most {MAX_WRITE_BYTES} (it must fit in one \
                 frame between nodes)"
            ),
        )
    })
}

/// As `too_large`, for a read of `key`.
pub fn key_too_large(key: &str) -> Option<ApiError> {
    (key.len() + SESSION_JSON_BYTES > MAX_WRITE_BYTES).then(|| {
        ApiError::new(
            ErrorKind::TooLarge,
            format!(
                "the key takes {} bytes; keys and values may take at most {MAX_WRITE_BYTES} together, so no such \
                 key is stored",
                key.len()
            ),
        )
    })
}

/// Longest injected delay, latency or jitter, in ms of cluster time.
pub const MAX_DELAY_MS: u64 = 10_000;

/// Parses a frame, turning every failure into the protocol's own error.
pub fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, ApiError> {
    if text.len() > MAX_FRAME_BYTES {
        return Err(ApiError::new(
            ErrorKind::FrameTooLarge,
            format!("frame of {} bytes exceeds {MAX_FRAME_BYTES}", text.len()),
        ));
    }
    serde_json::from_str(text).map_err(|e| {
        let what = if e.is_syntax() || e.is_eof() { "malformed JSON" } else { "unexpected frame" };
        ApiError::new(ErrorKind::BadRequest, format!("{what}: {e}"))
    })
}

/// `parse` for the frames a server sends. serde reads an internally tagged enum such as
/// `ServerOutbound` by first copying the whole frame into a generic tree, then reading the
/// variant from that: for a frame of events — most of what a proxy reads — that was 14 % of
/// the proxy's CPU under load. Such a frame is read straight into its variant; any other (or
/// one that does not read) goes through `parse`, which also words the errors.
pub fn parse_server(text: &str) -> Result<ServerOutbound, ApiError> {
    #[derive(Deserialize)]
    struct EventsFrame {
        events: Vec<Observed>,
        #[serde(default)]
        seq: u64,
    }
    if text.len() <= MAX_FRAME_BYTES && text.starts_with(r#"{"type":"events","#) {
        if let Ok(EventsFrame { events, seq }) = serde_json::from_str(text) {
            return Ok(ServerOutbound::Events { events, seq });
        }
    }
    parse(text)
}

/// Serializes a frame. Our frames contain no maps with non-string keys, so this cannot fail.
pub fn encode<T: Serialize>(frame: &T) -> String {
    serde_json::to_string(frame).expect("protocol frames always serialize")
}

/// Parses `A,B/C` (groups separated by `/`, members by `,`) into groups of node ids. One group
/// alone (`3`) is cut off from all the others, as the `partition` command does with unlisted
/// servers.
pub fn parse_partition(spec: &str) -> Result<Vec<Vec<NodeId>>, String> {
    let groups: Result<Vec<Vec<NodeId>>, String> = spec
        .split('/')
        .map(|group| {
            group
                .split(',')
                .map(|n| {
                    n.trim().parse::<NodeId>().map_err(|_| format!("'{n}' is not a node id in '{spec}'"))
                })
                .collect()
        })
        .collect();
    groups
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_events_frame_reads_the_same_by_the_short_way_and_bad_ones_get_the_usual_errors() {
        use crate::event::{Event, Observed};
        let frame = super::ServerOutbound::Events {
            events: vec![Observed { node: 2, at: 7, event: Event::Applied { index: 3 } }],
            seq: 4,
        };
        let text = super::encode(&frame);
        assert!(text.starts_with(r#"{"type":"events","#), "{text}");
        assert_eq!(super::parse_server(&text).unwrap(), frame);
        let bad = r#"{"type":"events","events":[{"node":2}]}"#;
        assert_eq!(
            super::parse_server(bad).unwrap_err().to_string(),
            super::parse::<super::ServerOutbound>(bad).unwrap_err().to_string()
        );
        let other = r#"{"type":"welcome","version":1,"node":3}"#;
        assert!(matches!(super::parse_server(other), Ok(super::ServerOutbound::Welcome { node: 3, .. })));
    }

    use super::*;

    #[test]
    fn frames_round_trip_as_tagged_json() {
        let frame = ClientFrame::Put { id: 1, key: "k".into(), value: "v".into(), session: None };
        let text = encode(&frame);
        assert_eq!(text, r#"{"type":"put","id":1,"key":"k","value":"v","session":null}"#);
        assert_eq!(parse::<ClientFrame>(&text), Ok(frame));
    }

    #[test]
    fn omitted_optional_fields_take_defaults() {
        let frame: ClientFrame = parse(r#"{"type":"get","id":3,"key":"x"}"#).unwrap();
        assert_eq!(
            frame,
            ClientFrame::Get { id: 3, key: "x".into(), consistency: Consistency::Linearizable }
        );
    }

    #[test]
    fn malformed_unknown_and_oversized_frames_are_typed_errors() {
        assert_eq!(parse::<ClientFrame>("{not json").unwrap_err().kind, ErrorKind::BadRequest);
        let unknown = parse::<ClientFrame>(r#"{"type":"launch_missiles","id":1}"#).unwrap_err();
        assert_eq!(unknown.kind, ErrorKind::BadRequest);
        assert!(unknown.message.contains("launch_missiles"), "{}", unknown.message);
        let big = format!(r#"{{"type":"put","id":1,"key":"k","value":"{}"}}"#, "x".repeat(MAX_FRAME_BYTES));
        assert_eq!(parse::<ClientFrame>(&big).unwrap_err().kind, ErrorKind::FrameTooLarge);
    }

    #[test]
    fn partition_specs() {
        assert_eq!(parse_partition("1,2/3"), Ok(vec![vec![1, 2], vec![3]]));
        assert_eq!(parse_partition("3"), Ok(vec![vec![3]]));
        assert!(parse_partition("1,x/3").is_err());
    }
}

#[cfg(test)]
mod snapshot_frame_tests {
    use super::*;
    use crate::kv::{Command, KvStore, WriteOp};
    use crate::raft::{Body, Configuration, SnapshotMeta};

    #[test]
    fn a_snapshot_with_sessions_crosses_the_wire() {
        let mut kv = KvStore::new();
        kv.apply(
            1,
            &Command {
                client: 7,
                seq: 1,
                op: WriteOp::Put { key: "k".into(), value: "v".into() },
                answered_below: 0,
            },
        );
        let meta = SnapshotMeta { index: 1, term: 1, config: Configuration::new([1, 2, 3]) };
        let data = serde_json::to_vec(&kv).unwrap();
        let frame = ServerInbound::Raft {
            messages: vec![Message {
                id: 0,
                from: 1,
                to: 2,
                term: 1,
                body: Body::InstallSnapshot { meta, offset: 0, data: data.clone(), done: true },
            }],
        };
        let text = encode(&frame);
        assert_eq!(parse::<ServerInbound>(&text), Ok(frame), "{text}");
        // The chunks put together give back the store, sessions included.
        let back: KvStore = serde_json::from_slice(&data).unwrap();
        assert_eq!(back, kv);
    }
}
