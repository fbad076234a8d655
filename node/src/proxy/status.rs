//! The cluster as one proxy sees it, for `status` requests and the pages' periodic update.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::protocol::{
    ClusterStatus, HELD_LISTED, HeldMessage, NodeView, ProcessState, ProxyFrame, RequestStats, TimeStatus,
};
use shared::raft::{Bug, NodeId, Role};

use super::Hub;

/// How often pages get the cluster's status.
const EVERY: Duration = Duration::from_millis(250);

pub async fn publish_periodically(hub: Arc<Hub>) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // The store samples sent last, per server: most of a status's bytes, and they rarely
    // change, so a class of idle viewers is not sent them four times a second.
    let mut sent_kv: HashMap<NodeId, Vec<(String, String)>> = HashMap::new();
    loop {
        ticker.tick().await;
        let alarms = hub.monitor().check_logs();
        hub.raise(alarms);
        if hub.observers.receiver_count() > 0 {
            let mut cluster = cluster_status(&hub);
            for node in &mut cluster.nodes {
                let Some(status) = &mut node.status else { continue };
                if status.kv.is_some() && sent_kv.get(&node.id) == status.kv.as_ref() {
                    status.kv = None;
                } else if let Some(kv) = &status.kv {
                    sent_kv.insert(node.id, kv.clone());
                }
            }
            hub.publish(ProxyFrame::Status { id: None, cluster: Box::new(cluster) });
        }
    }
}

pub fn cluster_status(hub: &Hub) -> ClusterStatus {
    let mut nodes = Vec::new();
    for (id, backend) in hub.backends.iter() {
        let fresh = backend.fresh(shared::protocol::ServerStatus::clone);
        let process = hub.supervisor.as_ref().and_then(|s| s.process(id));
        let state = match (&process, &fresh) {
            (Some(p), _) => p.state,
            (None, Some(_)) => ProcessState::Up,
            (None, None) => ProcessState::Unreachable,
        };
        let known = fresh.clone().or_else(|| backend.last_status());
        let pid = process.as_ref().and_then(|p| p.pid).or_else(|| known.as_ref().map(|s| s.pid));
        let pid = if state == ProcessState::Crashed { None } else { pid };
        let partitioned = known.as_ref().is_some_and(|s| s.faults.partitioned());
        nodes.push(NodeView::new(id, backend.address.clone(), pid, state, partitioned, fresh));
    }
    let leader = leader_of(&nodes);
    let mut bugs: Vec<Bug> =
        nodes.iter().filter_map(|n| n.status.as_ref()).flat_map(|s| s.bugs.clone()).collect();
    bugs.sort_by_key(|b| b.name());
    bugs.dedup();
    ClusterStatus {
        term: nodes.iter().filter_map(|n| n.term).max().unwrap_or(0),
        leader,
        time_scale: time_scale(hub),
        proxies: hub.proxies.clone(),
        supervised: hub.supervisor.as_ref().is_some_and(|s| s.is_connected()),
        stats: hub.stats.summary(),
        messages_per_s: hub.backends.values().map(|b| b.message_rate()).sum(),
        time: time_status(hub, &nodes),
        alarms: hub.monitor().alarms().to_vec(),
        lesson: hub.lessons.status(),
        bugs,
        open_writes: hub.open_writes.load(std::sync::atomic::Ordering::Relaxed),
        recording: hub.recorder.file(),
        members: super::membership::members(hub).unwrap_or_default(),
        nodes,
    }
}

/// Time across the cluster: stopped if any server's clock is, and every held message.
fn time_status(hub: &Hub, nodes: &[NodeView]) -> TimeStatus {
    let reports: Vec<_> = nodes.iter().filter_map(|n| n.status.as_ref()).collect();
    let mut messages: Vec<HeldMessage> = reports
        .iter()
        .flat_map(|s| s.clock.held.iter().filter(|m| !hub.time.was_released(m.id)).cloned())
        .collect();
    messages.sort_by_key(HeldMessage::send_order);
    messages.truncate(HELD_LISTED);
    let first = reports.first();
    TimeStatus {
        stopped: reports.iter().any(|s| s.clock.stopped),
        held: reports.iter().map(|s| s.clock.held_count).sum(),
        messages,
        latency_ms: first.map_or(0, |s| s.clock.latency_ms),
        jitter_ms: first.map_or(0, |s| s.clock.jitter_ms),
        latency_auto: first.is_none_or(|s| s.faults.latency_ms.is_none()),
    }
}

/// Completed requests over the last `WINDOW`, for rates and latency percentiles.
#[derive(Default)]
pub struct StatsWindow {
    done: Mutex<VecDeque<(Instant, bool, f64)>>,
}

const WINDOW: Duration = Duration::from_secs(2);
/// Samples kept at most; beyond this rate the percentiles come from the newest ones.
const MAX_SAMPLES: usize = 50_000;

impl StatsWindow {
    pub fn record(&self, is_write: bool, started: Instant) {
        let now = Instant::now();
        let mut done = self.done.lock().expect("stats lock");
        done.push_back((now, is_write, now.duration_since(started).as_secs_f64() * 1000.0));
        while done.len() > MAX_SAMPLES
            || done.front().is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            done.pop_front();
        }
    }

    pub fn summary(&self) -> RequestStats {
        let now = Instant::now();
        let done = self.done.lock().expect("stats lock");
        let recent = done.iter().filter(|(t, _, _)| now.duration_since(*t) <= WINDOW);
        let (mut writes, mut reads): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        for (_, is_write, ms) in recent {
            if *is_write { writes.push(*ms) } else { reads.push(*ms) }
        }
        let pct = |v: &mut Vec<f64>, q: f64| {
            if v.is_empty() {
                return 0.0;
            }
            v.sort_by(f64::total_cmp);
            v[((v.len() - 1) as f64 * q).round() as usize]
        };
        let secs = WINDOW.as_secs_f64();
        RequestStats {
            writes_per_s: writes.len() as f64 / secs,
            reads_per_s: reads.len() as f64 / secs,
            write_p50_ms: pct(&mut writes, 0.5),
            write_p99_ms: pct(&mut writes, 0.99),
            read_p50_ms: pct(&mut reads, 0.5),
        }
    }
}

/// The leader of the highest term that any reachable server reports.
pub fn leader_of(nodes: &[NodeView]) -> Option<NodeId> {
    nodes.iter().filter(|n| n.role == Some(Role::Leader)).max_by_key(|n| n.term).map(|n| n.id)
}

/// The time scale the servers run at (timeouts in the proxy stretch with it).
pub fn time_scale(hub: &Hub) -> f64 {
    hub.backends
        .values()
        .filter_map(|b| b.fresh(|s| s.faults.time_scale))
        .fold(None, |acc: Option<f64>, s| Some(acc.map_or(s, |a| a.max(s))))
        .unwrap_or(1.0)
}
