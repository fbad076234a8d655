//! Valid inputs the fuzzer starts from: a few frames of every kind, built from the protocol's
//! own types so that they follow it as it changes, and logs and snapshot files as the server
//! writes them. Every variant with nested data (entries, statuses, events) appears at least
//! once, so mutations reach the decoders of what is nested.

use shared::event::{
    Alarm, Consistency, EntrySummary, Event, LossReason, MessageSummary, Observed, RoleReason,
};
use shared::kv::{Command, KvStore, WriteOp, WriteResult};
use shared::lesson::{LessonAction, LessonStatus, Outcome, say};
use shared::protocol::{
    AdminCommand, ApiError, Caller, ClientFrame, ClockStatus, ClusterStatus, ErrorKind, FaultSettings,
    HeldMessage, NodeAddress, NodeView, OpResult, PROTOCOL_VERSION, Picture, ProcessAction, ProcessInfo,
    ProcessState, ProxyFrame, RequestStats, ServerInbound, ServerOutbound, ServerStatus, Session,
    SupervisorInbound, SupervisorOutbound, TimeCommand, TimeReport, TimeStatus,
};
use shared::raft::{
    Body, Bug, Config, Configuration, ConflictHint, Entry, HardState, Message, MessageKind, Payload,
    PeerProgress, Persisted, ProgressState, Role, Snapshot, SnapshotMeta, VoteRefusal,
};
use shared::replica::{Replica, Reply, ReplyError, Request};

use crate::server::storage::{self, KIND_ENTRY, KIND_HARD_STATE};

pub fn client_frames() -> Vec<ClientFrame> {
    let admin = |id, command| ClientFrame::Admin { id, command };
    vec![
        ClientFrame::Hello { version: PROTOCOL_VERSION, token: Some("s3cret".into()), subscribe: true },
        ClientFrame::Put { id: 1, key: "x".into(), value: "1".into(), session: Some(session(3, Some(2))) },
        ClientFrame::Get { id: 2, key: "x".into(), consistency: Consistency::Stale },
        ClientFrame::Delete { id: 3, key: "y".into(), session: None },
        ClientFrame::Cas {
            id: 4,
            key: "x".into(),
            expected: None,
            new: "ñ".into(),
            session: Some(session(4, None)),
        },
        ClientFrame::Status { id: 5 },
        admin(6, AdminCommand::Partition { groups: vec![vec![1, 2], vec![3]] }),
        admin(7, AdminCommand::Drop { node: Some(2), rate: 0.25 }),
        admin(8, AdminCommand::TimeScale { scale: 2.5 }),
        admin(9, AdminCommand::Latency { ms: Some(200), jitter_ms: None }),
        admin(
            10,
            AdminCommand::Lesson { action: LessonAction::Start { name: "elections".into(), auto: false } },
        ),
        admin(11, AdminCommand::Step { count: 3 }),
        admin(12, AdminCommand::Advance { node: None, ms: 1500 }),
        admin(13, AdminCommand::BatchSize { entries: Some(1) }),
        admin(14, AdminCommand::Block { from: 1, to: 3 }),
        admin(15, AdminCommand::StopTime),
        admin(16, AdminCommand::AddServer { node: Some(4), address: None }),
        admin(17, AdminCommand::RemoveServer { node: 2 }),
        ClientFrame::Register { id: 18 },
    ]
}

pub fn proxy_frames() -> Vec<ProxyFrame> {
    let picture = Picture { cluster: cluster_status(), logs: vec![(1, log_mirror())], recent: observed() };
    vec![
        ProxyFrame::Welcome {
            version: PROTOCOL_VERSION,
            admin: true,
            proxies: vec!["127.0.0.1:8080".into()],
            nodes: vec![NodeAddress { id: 1, address: "127.0.0.1:8091".into() }],
            picture: Some(Box::new(picture)),
        },
        ProxyFrame::Done {
            id: 1,
            result: OpResult::Cas { swapped: false, current: Some("2".into()) },
            served_by: 2,
            index: 7,
            retries: 1,
        },
        ProxyFrame::Done { id: 2, result: OpResult::Get { value: None }, served_by: 3, index: 7, retries: 0 },
        ProxyFrame::Error { id: None, error: api_error() },
        ProxyFrame::Status { id: Some(5), cluster: Box::new(cluster_status()) },
        ProxyFrame::Events { events: observed() },
        ProxyFrame::Log {
            node: 1,
            snapshot_index: 0,
            snapshot_term: 0,
            skipped: 0,
            entries: vec![entry_summary()],
        },
        ProxyFrame::AdminDone { id: 6, message: "partition 1,2 | 3".into() },
        ProxyFrame::Registered { id: 7, client: 42 },
    ]
}

pub fn server_inbound() -> Vec<ServerInbound> {
    let raft =
        |body| ServerInbound::Raft { messages: vec![Message { id: 9, from: 1, to: 2, term: 2, body }] };
    let data = serde_json::to_vec(&store()).expect("stores serialize");
    vec![
        ServerInbound::Hello {
            version: PROTOCOL_VERSION,
            token: "s3cret".into(),
            caller: Caller::Peer { node: 2, cluster: Some("c00000000000000ab".into()) },
        },
        ServerInbound::Hello { version: PROTOCOL_VERSION, token: "s3cret".into(), caller: Caller::Proxy },
        raft(Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: entries(),
            leader_commit: 2,
            read_round: 4,
        }),
        ServerInbound::Raft {
            messages: vec![
                Message {
                    id: 1,
                    from: 3,
                    to: 1,
                    term: 3,
                    body: Body::RequestVote {
                        pre_vote: true,
                        last_log_index: 5,
                        last_log_term: 2,
                        transfer: false,
                    },
                },
                Message {
                    id: 2,
                    from: 1,
                    to: 3,
                    term: 3,
                    body: Body::VoteResponse {
                        pre_vote: true,
                        granted: false,
                        refusal: Some(VoteRefusal::LogNotUpToDate {
                            voter_last_index: 6,
                            voter_last_term: 2,
                        }),
                    },
                },
            ],
        },
        raft(Body::InstallSnapshot { meta: snapshot_at(3, 2).meta, offset: 0, data, done: true }),
        raft(Body::AppendResponse {
            success: false,
            index: 4,
            conflict: Some(ConflictHint { term: Some(1), index: 2 }),
            last_log_index: 3,
            read_round: 4,
            admitted: true,
        }),
        raft(Body::SnapshotResponse { index: 3, received: 512, done: false, admitted: false }),
        raft(Body::ReadIndexResponse { read_id: 1 << 32 | 1, index: None }),
        raft(Body::TimeoutNow),
        ServerInbound::Request {
            id: 1,
            request: Request::Write { command: command(WriteOp::Delete { key: "y".into() }) },
        },
        ServerInbound::Request {
            id: 2,
            request: Request::Read { key: "x".into(), consistency: Consistency::Leader },
        },
        ServerInbound::Request { id: 6, request: Request::Register },
        ServerInbound::Subscribe,
        ServerInbound::Faults { faults: faults() },
        ServerInbound::Transfer { to: 2 },
        ServerInbound::Time { id: 3, command: TimeCommand::Release { ids: vec![17, 18] } },
        ServerInbound::Time { id: 4, command: TimeCommand::Advance { ms: 300 } },
        ServerInbound::Crash,
        ServerInbound::Bootstrap { id: 5, cluster: "c00000000000000ab".into(), voters: vec![1, 2, 3] },
    ]
}

pub fn server_outbound() -> Vec<ServerOutbound> {
    let reply = |id, reply| ServerOutbound::Reply { id, reply };
    vec![
        ServerOutbound::Welcome { version: PROTOCOL_VERSION, node: 1, cluster: None },
        ServerOutbound::Done { id: 1, result: Ok("node 1 is a voter".into()) },
        reply(1, Reply::Written { result: WriteResult::Put { previous: Some("0".into()) }, index: 3 }),
        reply(2, Reply::Value { value: Some("1".into()), index: 3 }),
        reply(3, Reply::Error { error: ReplyError::NotLeader { leader: Some(2) } }),
        reply(4, Reply::Registered { client: 12 }),
        ServerOutbound::Events { events: observed(), seq: 9 },
        ServerOutbound::Status { status: Box::new(server_status()) },
        ServerOutbound::Log {
            snapshot_index: 3,
            snapshot_term: 2,
            skipped: 1,
            entries: vec![entry_summary()],
        },
        ServerOutbound::Error { error: api_error() },
        ServerOutbound::Time {
            id: 4,
            report: TimeReport {
                node: 1,
                now: 12_000,
                stopped: true,
                next_deadline: 12_150,
                held: vec![held_message()],
                acted: vec![(17, 450)],
            },
        },
    ]
}

pub fn supervisor_inbound() -> Vec<SupervisorInbound> {
    vec![
        SupervisorInbound::Hello { version: PROTOCOL_VERSION, token: "s3cret".into() },
        SupervisorInbound::Process { id: 1, node: 2, action: ProcessAction::Restart, faults: Some(faults()) },
        SupervisorInbound::Process { id: 2, node: 3, action: ProcessAction::Pause, faults: None },
        SupervisorInbound::Reset { id: 3, faults: None },
        SupervisorInbound::StartServer { id: 4, node: 5 },
        SupervisorInbound::StopServer { id: 5, node: 2 },
    ]
}

pub fn supervisor_outbound() -> Vec<SupervisorOutbound> {
    vec![
        SupervisorOutbound::Welcome { version: PROTOCOL_VERSION },
        SupervisorOutbound::Done { id: 1, result: Ok("restarted node 2".into()) },
        SupervisorOutbound::Done { id: 2, result: Err(api_error()) },
        SupervisorOutbound::Processes {
            processes: vec![
                ProcessInfo { node: 1, pid: Some(4242), state: ProcessState::Up, address: None },
                ProcessInfo {
                    node: 2,
                    pid: None,
                    state: ProcessState::Crashed,
                    address: Some("127.0.0.1:8092".into()),
                },
            ],
            epoch: 3,
            retired: vec![4],
        },
        SupervisorOutbound::Error { error: api_error() },
    ]
}

/// Logs as the server writes them: batches of a hard state and entries, a rewritten suffix, a
/// log that starts after a snapshot at index 3, one hard state alone, and an empty log.
pub fn wal_images() -> Vec<Vec<u8>> {
    let entries = entries();
    fn json<T: serde::Serialize>(value: &T) -> Vec<u8> {
        serde_json::to_vec(value).expect("seeds serialize")
    }
    let hs = |term, voted_for| HardState { term, voted_for, admitted: true };
    let record = |kind: u8, body: Vec<u8>| (kind, body);
    let log = |batches: Vec<Vec<(u8, Vec<u8>)>>| {
        let mut image = storage::MAGIC.to_vec();
        for batch in &batches {
            let borrowed: Vec<(u8, &[u8])> = batch.iter().map(|(k, b)| (*k, b.as_slice())).collect();
            storage::frame_batch(&mut image, &borrowed);
        }
        image
    };
    let mut first = vec![record(KIND_HARD_STATE, json(&hs(1, Some(1))))];
    first.extend(entries[..3].iter().map(|e| record(KIND_ENTRY, json(e))));
    let mut second = vec![record(KIND_HARD_STATE, json(&hs(2, None)))];
    second.extend(entries[3..].iter().map(|e| record(KIND_ENTRY, json(e))));
    let whole = log(vec![first, second]);
    let rewritten = log(vec![
        entries[..4].iter().map(|e| record(KIND_ENTRY, json(e))).collect(),
        vec![record(KIND_ENTRY, json(&Entry { index: 2, term: 3, payload: Payload::Noop }))],
    ]);
    let mut after = vec![record(KIND_HARD_STATE, json(&hs(2, Some(2))))];
    after.extend(entries[2..].iter().map(|e| record(KIND_ENTRY, json(e))));
    let after_snapshot = log(vec![after]);
    let hard_state_alone = log(vec![vec![record(KIND_HARD_STATE, json(&HardState::default()))]]);
    vec![whole, rewritten, after_snapshot, hard_state_alone, log(Vec::new())]
}

pub fn snapshot_files() -> Vec<Vec<u8>> {
    let empty = Snapshot { meta: SnapshotMeta::default(), data: KvStore::new() };
    [snapshot_at(3, 2), snapshot_at(40, 7), empty]
        .iter()
        .map(|s| storage::snapshot_file(&serde_json::to_vec(s).expect("snapshots serialize")))
        .collect()
}

pub fn snapshot_at(index: u64, term: u64) -> Snapshot {
    Snapshot { meta: SnapshotMeta { index, term, config: Configuration::new([1, 2, 3]) }, data: store() }
}

/// A store with keys, a deletion and sessions, as a snapshot carries it.
fn store() -> KvStore {
    let mut kv = KvStore::new();
    kv.apply(1, &command(WriteOp::Put { key: "x".into(), value: "1".into() }));
    kv.apply(2, &command(WriteOp::Cas { key: "y".into(), expected: None, new: "é".into() }));
    kv.apply(3, &Command { client: 8, seq: 1, op: WriteOp::Delete { key: "y".into() }, answered_below: 0 });
    kv
}

fn session(seq: u64, answered_below: Option<u64>) -> Session {
    Session { client: 77, seq, answered_below }
}

fn command(op: WriteOp) -> Command {
    Command { client: 77, seq: 3, op, answered_below: 2 }
}

fn entries() -> Vec<Entry> {
    let cas = WriteOp::Cas { key: "x".into(), expected: Some("1".into()), new: "2".into() };
    vec![
        Entry { index: 1, term: 1, payload: Payload::Config(Configuration::new([1, 2, 3])) },
        Entry { index: 2, term: 1, payload: Payload::Noop },
        Entry { index: 3, term: 1, payload: Payload::Config(joined()) },
        Entry {
            index: 4,
            term: 2,
            payload: Payload::Command(command(WriteOp::Put { key: "x".into(), value: "1".into() })),
        },
        Entry { index: 5, term: 2, payload: Payload::Command(command(cas)) },
        Entry { index: 6, term: 2, payload: Payload::Command(command(WriteOp::Delete { key: "x".into() })) },
    ]
}

/// A configuration with a learner added at run time, and its address.
fn joined() -> Configuration {
    let mut config = Configuration::new([1, 2, 3]);
    config.learners.insert(4);
    config.addresses.insert(4, "127.0.0.1:8094".into());
    config
}

fn api_error() -> ApiError {
    ApiError::new(ErrorKind::NoLeader, "no leader is known yet")
}

fn faults() -> FaultSettings {
    FaultSettings {
        blocked_to: vec![3],
        blocked_from: vec![3],
        drop_rate: 0.1,
        delay_ms: 20,
        time_scale: 4.0,
        latency_ms: Some(30),
        jitter_ms: None,
        time_stopped: true,
        max_entries: Some(1),
    }
}

fn entry_summary() -> EntrySummary {
    EntrySummary { index: 3, term: 2, text: "put x=1".into() }
}

fn log_mirror() -> shared::event::LogMirror {
    shared::event::LogMirror {
        snapshot_index: 0,
        snapshot_term: 0,
        skipped: 0,
        entries: vec![entry_summary()],
    }
}

fn summary() -> MessageSummary {
    MessageSummary::AppendEntries {
        prev_log_index: 2,
        prev_log_term: 1,
        entries: 1,
        last_entry_term: Some(2),
        leader_commit: 2,
    }
}

fn held_message() -> HeldMessage {
    HeldMessage {
        id: 17,
        from: 1,
        to: 2,
        kind: MessageKind::AppendEntries,
        term: 2,
        message: summary(),
        sent_at: 12_000,
        due: 12_015,
        stamp: 1_700_000_000_000,
    }
}

fn alarm() -> Alarm {
    Alarm {
        property: shared::check::Property::ElectionSafety,
        nodes: vec![1, 2],
        term: 2,
        index: None,
        detail: "two leaders in term 2".into(),
        detail_es: Some("dos líderes en el término 2".into()),
    }
}

/// Events of every shape: a few written here, and those a real replica emits while it starts
/// an election.
fn observed() -> Vec<Observed> {
    let events = vec![
        Event::RoleChanged {
            role: Role::Leader,
            term: 2,
            leader: Some(1),
            reason: RoleReason::ElectionWon { votes: 2 },
        },
        Event::MessageSent { id: 17, to: 2, term: 2, message: summary(), delay: 15 },
        Event::MessageLost { from: 1, id: 18, to: 3, reason: LossReason::Partition },
        Event::VoteRefused {
            candidate: 3,
            term: 2,
            pre_vote: true,
            refusal: VoteRefusal::StaleTerm { voter_term: 3 },
        },
        Event::EntriesAppended { entries: vec![entry_summary()] },
        Event::AppendRefused {
            leader: 1,
            prev_log_index: 4,
            prev_log_term: 2,
            hint: ConflictHint { term: None, index: 3 },
        },
        Event::Alarm { alarm: alarm() },
        Event::ReadServed { read_id: 5, index: 3, consistency: Consistency::Linearizable },
        Event::Recovered { term: 2, voted_for: Some(1), snapshot_index: 0, last_index: 5 },
        Event::Fault {
            description: "partition 1,2 | 3".into(),
            description_es: Some("particionar 1,2 | 3".into()),
        },
    ];
    let (_, replica_events) = replica_after_an_election_timeout();
    events.into_iter().chain(replica_events).map(|event| Observed { node: 1, at: 12_000, event }).collect()
}

fn replica_after_an_election_timeout() -> (Replica, Vec<Event>) {
    let mut replica = Replica::new(Config::new(1, vec![1, 2, 3]), Persisted::default(), 7, 0, 0);
    replica.tick(10_000);
    let mut events = Vec::new();
    while replica.has_work() {
        let work = replica.take_work();
        events.extend(replica.finish(work).events);
    }
    (replica, events)
}

fn server_status() -> ServerStatus {
    let mut replica = replica_after_an_election_timeout().0.status();
    replica.raft.progress = vec![PeerProgress {
        id: 2,
        next_index: 4,
        match_index: 3,
        state: ProgressState::Replicate,
        inflight: 1,
        recent_active: true,
        admitted: true,
    }];
    ServerStatus {
        replica,
        pid: 4242,
        address: "127.0.0.1:8091".into(),
        now: 12_345,
        faults: faults(),
        kv: Some(vec![("x".into(), "1".into())]),
        kv_truncated: false,
        rss_bytes: Some(9 << 20),
        clock: ClockStatus {
            stopped: false,
            next_deadline: 12_500,
            latency_ms: 30,
            jitter_ms: 15,
            held_count: 1,
            held: vec![held_message()],
            messages_sent: 99,
        },
        bugs: vec![Bug::StaleRead],
        hosted: None,
    }
}

fn cluster_status() -> ClusterStatus {
    let status = server_status();
    let up = NodeView {
        id: 1,
        address: "127.0.0.1:8091".into(),
        pid: Some(4242),
        state: ProcessState::Up,
        partitioned: true,
        role: Some(status.replica.raft.role),
        term: Some(status.replica.raft.term),
        voted_for: Some(1),
        leader: None,
        last_log_index: Some(5),
        commit: Some(3),
        applied: Some(3),
        snapshot_index: Some(0),
        admitted: Some(true),
        status: Some(status),
    };
    let crashed = NodeView {
        id: 2,
        address: "127.0.0.1:8092".into(),
        pid: None,
        state: ProcessState::Crashed,
        partitioned: false,
        role: None,
        term: None,
        voted_for: None,
        leader: None,
        last_log_index: None,
        commit: None,
        applied: None,
        snapshot_index: None,
        admitted: None,
        status: None,
    };
    ClusterStatus {
        nodes: vec![up, crashed],
        leader: Some(1),
        term: 2,
        time_scale: 2.5,
        proxies: vec!["127.0.0.1:8080".into()],
        supervised: true,
        members: shared::protocol::Members { voters: vec![1, 2, 3], learners: vec![4] },
        time: TimeStatus {
            stopped: true,
            held: 1,
            messages: vec![held_message()],
            latency_ms: 30,
            jitter_ms: 15,
            latency_auto: true,
        },
        alarms: vec![alarm()],
        lesson: Some(LessonStatus {
            name: "elections".into(),
            title: say("Elections", "Elecciones"),
            captions: vec![say("Node 1 times out.", "El nodo 1 agota su tiempo.")],
            waiting: true,
            auto: false,
            outcome: Some(Outcome { passed: true, message: say("One leader.", "Un líder.") }),
        }),
        bugs: vec![Bug::CommitOldTerm],
        open_writes: true,
        recording: None,
        stats: RequestStats {
            writes_per_s: 120.5,
            reads_per_s: 300.25,
            write_p50_ms: 2.5,
            write_p99_ms: 14.75,
            read_p50_ms: 1.125,
        },
        messages_per_s: 33.3,
    }
}
