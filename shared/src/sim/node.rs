//! A simulated server: a `Replica` with a simulated disk, an inbox for inputs that arrive
//! while it is busy persisting, and the ability to crash (losing everything volatile and any
//! write not yet durable) and restart from its disk.

use std::collections::{BTreeMap, VecDeque};

use crate::raft::{Entry, HardState, Message, Millis, NodeId, Persisted, Snapshot};
use crate::replica::{Persist, Replica, Request, RequestId, Work};

/// What a simulated disk holds: exactly what was made durable.
#[derive(Debug, Default, Clone)]
pub(crate) struct Disk {
    /// The cluster's first configuration, written when the cluster was created (the node keeps
    /// it in its identity file). Empty on a server added later, and on a wiped disk.
    first_voters: Vec<NodeId>,
    hard_state: HardState,
    snapshot: Option<Snapshot>,
    entries: Vec<Entry>,
}

impl Disk {
    /// Creates the cluster on this disk: the first configuration, before anything else.
    pub fn bootstrap(&mut self, voters: Vec<NodeId>) {
        assert!(self.is_empty(), "only an empty disk is bootstrapped");
        self.first_voters = voters;
    }

    pub fn first_voters(&self) -> &[NodeId] {
        &self.first_voters
    }

    /// Whether this disk was let into the cluster (`HardState::admitted`, or the first
    /// configuration on it).
    pub fn admitted(&self) -> bool {
        self.hard_state.admitted || !self.first_voters.is_empty()
    }

    /// Whether the disk holds nothing at all (new, or wiped).
    pub fn is_empty(&self) -> bool {
        self.first_voters.is_empty()
            && self.hard_state == HardState::default()
            && self.snapshot.is_none()
            && self.entries.is_empty()
    }

    /// The disk is lost and replaced by an empty one (a wiped directory, a lost volume).
    pub fn wipe(&mut self) {
        *self = Disk::default();
    }

    fn base(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.meta.index)
    }

    pub fn persisted(&self) -> Persisted {
        Persisted {
            hard_state: self.hard_state,
            snapshot: self.snapshot.clone(),
            entries: self.entries.clone(),
        }
    }

    /// Stores what the node's storage would: everything goes through JSON, as on a real disk.
    pub fn write(&mut self, persist: &Persist) {
        if let Some(snapshot) = &persist.snapshot {
            self.snapshot = Some(through_json(snapshot));
            self.entries.clear();
        }
        if let Some(hard_state) = persist.hard_state {
            self.hard_state = hard_state;
        }
        if let Some(first) = persist.entries.first() {
            let keep = (first.index - self.base() - 1) as usize;
            assert!(keep <= self.entries.len(), "disk write leaves a gap before index {}", first.index);
            self.entries.truncate(keep);
            self.entries.extend(persist.entries.iter().map(through_json));
        }
    }

    /// A snapshot taken locally replaces the entries it covers.
    pub fn compact(&mut self, snapshot: &Snapshot) {
        let index = snapshot.meta.index;
        if index <= self.base() {
            return;
        }
        let drop = ((index - self.base()) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.snapshot = Some(through_json(snapshot));
    }
}

fn through_json<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> T {
    let text = serde_json::to_string(value).expect("stored values serialize");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("a stored value does not read back: {e}: {text}"))
}

#[derive(Debug)]
pub(super) enum Input {
    Raft(Message),
    /// A request from proxy `proxy` (in its life `incarnation`), numbered `id` there.
    Request {
        proxy: usize,
        incarnation: u64,
        id: u64,
        request: Request,
    },
    /// A membership change from the operator; its answer goes to the trace.
    Operator(Request),
    Tick,
}

#[derive(Debug)]
pub(super) struct SimNode {
    /// `None` while crashed.
    pub replica: Option<Replica>,
    pub disk: Disk,
    pub inbox: VecDeque<Input>,
    /// A round whose disk write is in progress.
    pub io: Option<Work>,
    /// Bumped by every crash, so that events of a previous life are ignored.
    pub incarnation: u64,
    /// Stopped (like SIGSTOP): inputs wait in the inbox, timers do not fire.
    pub paused: bool,
    pub next_tick: Option<Millis>,
    /// Requests in the replica: its id → the proxy, its life, and the proxy's request id.
    pub requests: BTreeMap<RequestId, (usize, u64, u64)>,
    pub next_request: RequestId,
    /// The number of its last event frame to the proxies. It runs on across restarts: a real
    /// proxy learns that a server's numbering starts again from the log it sends on
    /// subscribing, which the simulator does not send (a reset here read as a gap).
    pub events_seq: u64,
}

impl SimNode {
    pub fn new() -> SimNode {
        SimNode {
            replica: None,
            disk: Disk::default(),
            inbox: VecDeque::new(),
            io: None,
            incarnation: 0,
            paused: false,
            next_tick: None,
            requests: BTreeMap::new(),
            next_request: 1,
            events_seq: 0,
        }
    }

    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    pub fn crash(&mut self) {
        self.replica = None;
        self.io = None;
        self.inbox.clear();
        self.requests.clear();
        self.paused = false;
        self.next_tick = None;
        self.incarnation += 1;
    }
}
