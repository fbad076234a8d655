//! The simulated network: delay, loss, duplication, reordering and partitions.

use std::collections::BTreeSet;

use crate::raft::{Millis, NodeId};
use crate::rng::Rng;

/// How unreliable the network is in one run.
#[derive(Debug, Clone)]
pub(super) struct NetworkFaults {
    pub drop_ppm: u32,
    pub duplicate_ppm: u32,
    pub min_delay: Millis,
    pub max_delay: Millis,
    /// Chance that a message takes ten times longer, overtaking nothing but overtaken by many.
    pub slow_ppm: u32,
}

#[derive(Debug)]
pub(super) struct Network {
    pub faults: NetworkFaults,
    /// Directed links that drop all Raft traffic (client traffic is never partitioned: clients
    /// reach every server, as through the proxies).
    blocked: BTreeSet<(NodeId, NodeId)>,
}

impl Network {
    pub fn new(faults: NetworkFaults) -> Network {
        Network { faults, blocked: BTreeSet::new() }
    }

    /// Delivery delays for one packet: none if it is lost, two if duplicated. `raft_link` is
    /// the (from, to) of Raft traffic; client traffic passes `None`.
    pub fn route(&self, rng: &mut Rng, raft_link: Option<(NodeId, NodeId)>) -> Vec<Millis> {
        if raft_link.is_some_and(|link| self.blocked.contains(&link)) {
            return Vec::new();
        }
        if rng.chance(self.faults.drop_ppm) {
            return Vec::new();
        }
        let copies = if rng.chance(self.faults.duplicate_ppm) { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                let delay = rng.range(self.faults.min_delay, self.faults.max_delay);
                if rng.chance(self.faults.slow_ppm) { delay * 10 } else { delay }
            })
            .collect()
    }

    pub fn is_partitioned(&self) -> bool {
        !self.blocked.is_empty()
    }

    pub fn is_blocked(&self, from: NodeId, to: NodeId) -> bool {
        self.blocked.contains(&(from, to))
    }

    pub fn block(&mut self, from: NodeId, to: NodeId) {
        self.blocked.insert((from, to));
    }

    pub fn heal(&mut self) {
        self.blocked.clear();
    }

    /// Two groups that cannot talk to each other.
    pub fn split(&mut self, a: &[NodeId], b: &[NodeId]) {
        for x in a {
            for y in b {
                self.block(*x, *y);
                self.block(*y, *x);
            }
        }
    }
}

pub(super) fn wire_round_trip(msg: crate::raft::Message) -> crate::raft::Message {
    use crate::protocol::{ServerInbound, encode, parse};
    let text = encode(&ServerInbound::Raft { messages: vec![msg] });
    match parse::<ServerInbound>(&text) {
        Ok(ServerInbound::Raft { mut messages }) if messages.len() == 1 => messages.remove(0),
        other => panic!("a Raft message does not survive the wire format: {other:?}\n{text}"),
    }
}

pub(super) fn wire_round_trip_request(request: crate::replica::Request) -> crate::replica::Request {
    use crate::protocol::{ServerInbound, encode, parse};
    match parse::<ServerInbound>(&encode(&ServerInbound::Request { id: 0, request })) {
        Ok(ServerInbound::Request { request, .. }) => request,
        other => panic!("a request does not survive the wire format: {other:?}"),
    }
}

pub(super) fn wire_round_trip_reply(reply: crate::replica::Reply) -> crate::replica::Reply {
    use crate::protocol::{ServerOutbound, encode, parse};
    match parse::<ServerOutbound>(&encode(&ServerOutbound::Reply { id: 0, reply })) {
        Ok(ServerOutbound::Reply { reply, .. }) => reply,
        other => panic!("a reply does not survive the wire format: {other:?}"),
    }
}

pub(super) fn wire_round_trip_client(frame: crate::protocol::ClientFrame) -> crate::protocol::ClientFrame {
    use crate::protocol::{ClientFrame, encode, parse};
    let text = encode(&frame);
    parse::<ClientFrame>(&text)
        .unwrap_or_else(|e| panic!("a client frame does not survive the wire format: {e}: {text}"))
}

pub(super) fn wire_round_trip_proxy(frame: crate::protocol::ProxyFrame) -> crate::protocol::ProxyFrame {
    use crate::protocol::{ProxyFrame, encode, parse};
    let text = encode(&frame);
    parse::<ProxyFrame>(&text)
        .unwrap_or_else(|e| panic!("a proxy frame does not survive the wire format: {e}: {text}"))
}
