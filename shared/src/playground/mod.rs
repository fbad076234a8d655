//! The cluster inside the page: 3–7 servers of the real Raft core in one process, behind the
//! real proxy core. The page's `?sim` (and a student at home with no cluster) talks to a
//! `Playground` exactly as it talks to a proxy over a WebSocket — it sends `ClientFrame`s and
//! draws the `ProxyFrame`s that come back — so every view and control works unchanged, and
//! every decision a proxy makes (routing, retries, admin commands, time control, membership,
//! lessons) is made by the same code as on real processes (`crate::proxy`).
//!
//! Sans-IO like the rest of `shared/`: the page passes in its clock (`advance(wall_ms)`) and a
//! seed; everything random comes from the seed, so one seed and one sequence of actions give
//! one run, on any machine.
//!
//! # Layout
//!
//! - this file: `Playground` — the proxy core wired to the servers, frames pumped between them;
//! - `cluster`: the servers, their clock and the network between them;
//! - `host`: what the servers and their supervisor do with a proxy's frames;
//! - `server`: one server — replica, disk that survives crashes, clock offset, network queue.

mod cluster;
mod host;
mod server;

pub use host::{MAX_SERVERS, MIN_SERVERS};

use crate::protocol::{ClientFrame, ClusterStatus, PROTOCOL_VERSION, ProxyFrame};
use crate::proxy::{Proxy, Settings};
use crate::raft::{Bug, Bugs, Millis};
use cluster::Cluster;

/// The page's one connection to the proxy.
const PAGE: crate::proxy::ConnId = 1;
/// Rounds of frames between the proxy and the servers in one call at most (each round answers
/// the last; a handful is the most a command needs).
const MAX_PUMP_ROUNDS: usize = 64;

/// A simulated cluster that speaks the proxy's frames (see the module `playground`).
pub struct Playground {
    proxy: Proxy,
    cluster: Cluster,
    out: Vec<ProxyFrame>,
    /// The page's clock at the first `advance` (the proxy counts from there).
    wall_origin: Option<f64>,
}

impl Playground {
    /// A cluster of `servers` (clamped to 3–7) that runs with the deliberate defects `bugs`.
    pub fn new(servers: usize, seed: u64, bugs: &[Bug]) -> Playground {
        Playground::with_pre_vote(servers, seed, bugs, true)
    }

    /// As `new`, with elections that start with a pre-vote round or not.
    pub fn with_pre_vote(servers: usize, seed: u64, bugs: &[Bug], pre_vote: bool) -> Playground {
        let bugs = bugs.iter().fold(Bugs::none(), |all, bug| all.with(*bug));
        let cluster = Cluster::new(servers.clamp(MIN_SERVERS, MAX_SERVERS), seed, bugs, pre_vote);
        let settings = Settings {
            proxies: Vec::new(),
            servers: cluster.servers.keys().map(|id| (*id, server::address(*id))).collect(),
            supervised: true,
            open_writes: true,
            recording: None,
            // The proxy's own defects (`retry-without-session`) live in its core.
            bugs,
        };
        let mut proxy = Proxy::new(settings, 0);
        proxy.supervisor_link(0, true);
        let mut playground = Playground { proxy, cluster, out: Vec::new(), wall_origin: None };
        playground.proxy.opened(0, PAGE, true, false);
        playground.cluster.report_processes();
        playground.pump();
        playground.out.clear();
        playground
    }

    /// The proxy's clock: the page's, from its first `advance`.
    fn proxy_now(&self) -> Millis {
        match (self.wall_origin, self.cluster.wall) {
            (Some(origin), Some(wall)) => (wall - origin).max(0.0) as Millis,
            _ => 0,
        }
    }

    /// Takes a frame from the page. Answers come out of `take_frames`.
    pub fn handle(&mut self, frame: ClientFrame) {
        if let ClientFrame::Hello { .. } = frame {
            let welcome = self.welcome();
            self.out.push(welcome);
            return;
        }
        let now = self.proxy_now();
        self.proxy.client(now, PAGE, frame);
        self.pump();
    }

    /// Moves the cluster to the page's clock `wall_ms` (milliseconds, any origin): timers fire,
    /// messages arrive, the proxy's requests retry. A status goes out every quarter second.
    pub fn advance(&mut self, wall_ms: f64) {
        self.wall_origin.get_or_insert(wall_ms);
        self.cluster.advance(wall_ms);
        let now = self.proxy_now();
        self.proxy.tick(now);
        self.pump();
    }

    /// Frames for the page since the last call, in order.
    pub fn take_frames(&mut self) -> Vec<ProxyFrame> {
        self.pump();
        std::mem::take(&mut self.out)
    }

    /// The first frame, as a proxy greets a subscribing page: the whole picture. Frames not yet
    /// taken are replaced by it.
    pub fn welcome(&mut self) -> ProxyFrame {
        self.pump();
        self.out.clear();
        let now = self.proxy_now();
        self.proxy.closed(now, PAGE);
        self.proxy.opened(now, PAGE, true, true)
    }

    /// A picture of the cluster now, that changes nothing (a recording's keyframe).
    pub fn picture(&self) -> ProxyFrame {
        let picture = self.proxy.picture();
        ProxyFrame::Welcome {
            version: PROTOCOL_VERSION,
            admin: true,
            proxies: Vec::new(),
            nodes: picture
                .cluster
                .nodes
                .iter()
                .map(|n| crate::protocol::NodeAddress { id: n.id, address: n.address.clone() })
                .collect(),
            picture: Some(Box::new(picture)),
        }
    }

    /// The cluster as the page's proxy sees it.
    pub fn status(&self) -> ClusterStatus {
        self.proxy.status()
    }

    /// The cluster's clock (ms of cluster time).
    pub fn now(&self) -> Millis {
        self.cluster.now
    }

    /// Frames back and forth between the proxy and the servers until neither has more to say.
    fn pump(&mut self) {
        for _ in 0..MAX_PUMP_ROUNDS {
            let now = self.proxy_now();
            self.cluster.flush_events();
            let mut quiet = true;
            // The supervisor first: a server it started is known before its link comes up.
            for frame in std::mem::take(&mut self.cluster.supervisor_out) {
                quiet = false;
                self.proxy.supervisor(now, frame);
            }
            for (node, up) in std::mem::take(&mut self.cluster.links) {
                quiet = false;
                self.proxy.link(now, node, up);
            }
            for (node, frame) in std::mem::take(&mut self.cluster.outbound) {
                quiet = false;
                self.proxy.server(now, node, frame);
            }
            let ready = self.proxy.ready();
            quiet &= ready.is_empty();
            self.out.extend(ready.publish);
            self.out.extend(ready.to_clients.into_iter().map(|(_, frame)| frame));
            for (node, frame) in ready.to_servers {
                self.cluster.server_hears(node, frame);
            }
            for frame in ready.to_supervisor {
                self.cluster.supervise(frame);
            }
            if quiet {
                return;
            }
        }
    }
}
