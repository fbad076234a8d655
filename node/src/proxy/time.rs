//! Time in the cluster, from the proxy: stopping and starting every server's clock, stepping
//! one message (or one timer) at a time, delivering or dropping a chosen message, and the
//! proxy's own patience, which must not run out while the cluster's time stands still.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shared::protocol::{ApiError, ErrorKind, HeldMessage, TimeCommand, TimeReport};
use shared::raft::{MessageId, Millis, NodeId};

use super::Hub;

/// How long after its journey a delivered message's effects are given to show up (the
/// receiver's round and fsync, its status report).
const SETTLE: Duration = Duration::from_millis(80);
/// Steps in one command at most.
pub const MAX_STEPS: u32 = 200;
/// A released message stays out of the held list this long, whatever late statuses say.
const RELEASED_MEMORY: Duration = Duration::from_secs(5);

/// Whether the cluster's time runs, and for how long it stood still: the proxy's timeouts
/// count only running time, so that a write waiting on a stopped cluster does not give up.
#[derive(Default)]
pub struct TimeGate {
    state: Mutex<GateState>,
    /// Messages released recently, by id, with when.
    released: Mutex<HashMap<MessageId, Instant>>,
}

#[derive(Default)]
struct GateState {
    stopped_since: Option<Instant>,
    stopped_total: Duration,
}

/// A moment from which running time is measured.
#[derive(Clone, Copy)]
pub struct Mark {
    at: Instant,
    stopped_before: Duration,
}

impl GateState {
    fn stopped_until(&self, now: Instant) -> Duration {
        self.stopped_total + self.stopped_since.map_or(Duration::ZERO, |since| now.duration_since(since))
    }
}

impl TimeGate {
    pub fn set_stopped(&self, stopped: bool) {
        let mut s = self.state.lock().expect("time gate lock");
        match (stopped, s.stopped_since) {
            (true, None) => s.stopped_since = Some(Instant::now()),
            (false, Some(since)) => {
                s.stopped_total += since.elapsed();
                s.stopped_since = None;
            }
            _ => {}
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.state.lock().expect("time gate lock").stopped_since.is_some()
    }

    pub fn mark(&self) -> Mark {
        let now = Instant::now();
        Mark { at: now, stopped_before: self.state.lock().expect("time gate lock").stopped_until(now) }
    }

    /// Real time since `mark` during which the cluster's time ran.
    pub fn running_since(&self, mark: Mark) -> Duration {
        let now = Instant::now();
        let stopped = self.state.lock().expect("time gate lock").stopped_until(now) - mark.stopped_before;
        now.duration_since(mark.at).saturating_sub(stopped)
    }

    fn note_released(&self, id: MessageId) {
        let mut released = self.released.lock().expect("released lock");
        released.retain(|_, at| at.elapsed() < RELEASED_MEMORY);
        released.insert(id, Instant::now());
    }

    /// Whether a message was released lately (a status may still list it as held).
    pub fn was_released(&self, id: MessageId) -> bool {
        self.released.lock().expect("released lock").get(&id).is_some_and(|at| at.elapsed() < RELEASED_MEMORY)
    }
}

/// Asks every reachable server; the answers that came.
pub async fn ask_all(hub: &Hub, command: TimeCommand) -> Vec<TimeReport> {
    let backends: Vec<_> = hub.backends.values().filter(|b| b.is_connected()).collect();
    let asks = backends.iter().map(|b| b.time(hub.next_id(), command.clone()));
    futures_util::future::join_all(asks).await.into_iter().flatten().collect()
}

/// Every held message, oldest first (by the senders' wall clocks, then sender and id).
fn held_in(reports: &[TimeReport]) -> Vec<HeldMessage> {
    let mut held: Vec<HeldMessage> = reports.iter().flat_map(|r| r.held.iter().cloned()).collect();
    held.sort_by_key(HeldMessage::send_order);
    held
}

pub async fn stop(hub: &Hub) -> Result<String, ApiError> {
    set_all(hub, |f| f.time_stopped = true);
    hub.time.set_stopped(true);
    // The servers apply settings and answer time commands in order: once they answer, they
    // have stopped.
    let reports = ask_all(hub, TimeCommand::Report).await;
    let held: usize = reports.iter().map(|r| r.held.len()).sum();
    Ok(format!("time stopped on {} servers; {held} messages held", reports.len()))
}

pub async fn start(hub: &Hub) -> Result<String, ApiError> {
    set_all(hub, |f| f.time_stopped = false);
    hub.time.set_stopped(false);
    let reports = ask_all(hub, TimeCommand::Report).await;
    Ok(format!("time runs again on {} servers", reports.len()))
}

fn set_all(hub: &Hub, change: impl Fn(&mut shared::protocol::FaultSettings)) {
    let scale = super::status::time_scale(hub);
    for backend in hub.backends.values() {
        let mut faults = backend.current_faults(scale);
        change(&mut faults);
        backend.set_faults(faults);
    }
}

/// `count` steps: each delivers the oldest held message, or, when none is held, advances the
/// clocks to the next timer. Stops time first if it runs.
pub async fn step(hub: &Hub, count: u32) -> Result<String, ApiError> {
    if count == 0 || count > MAX_STEPS {
        return Err(ApiError::new(ErrorKind::BadRequest, format!("steps must be between 1 and {MAX_STEPS}")));
    }
    if !hub.time.is_stopped() {
        stop(hub).await?;
    }
    let mut said = Vec::new();
    for _ in 0..count {
        let reports = ask_all(hub, TimeCommand::Report).await;
        if reports.is_empty() {
            return Err(ApiError::new(ErrorKind::Unavailable, "no server answers"));
        }
        match held_in(&reports).into_iter().find(|m| !hub.time.was_released(m.id)) {
            Some(first) => said.push(deliver(hub, &first).await?),
            None => said.push(next_timer(hub, &reports).await?),
        }
    }
    Ok(said.join("; "))
}

/// Releases one held message and waits until it has arrived.
async fn deliver(hub: &Hub, m: &HeldMessage) -> Result<String, ApiError> {
    let backend = hub.backends.get(&m.from).ok_or_else(|| unknown_node(m.from))?;
    let report = backend
        .time(hub.next_id(), TimeCommand::Release { ids: vec![m.id] })
        .await
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {} did not answer", m.from)))?;
    let Some((_, travel)) = report.acted.first() else {
        return Ok(format!("message #{} had already left", m.id));
    };
    hub.time.note_released(m.id);
    tokio::time::sleep(Duration::from_millis(*travel) + SETTLE).await;
    Ok(format!("delivered {} #{} from node {} to node {}", m.kind.name(), m.id, m.from, m.to))
}

/// Advances every clock to the earliest timer of any server.
async fn next_timer(hub: &Hub, reports: &[TimeReport]) -> Result<String, ApiError> {
    let (node, ms) = reports
        .iter()
        .map(|r| (r.node, r.next_deadline.saturating_sub(r.now)))
        .min_by_key(|(node, ms)| (*ms, *node))
        .expect("reports are not empty");
    advance(hub, None, ms).await?;
    tokio::time::sleep(SETTLE).await;
    Ok(format!("nothing held: clocks advanced {ms} ms, to node {node}'s next timer"))
}

pub async fn advance(hub: &Hub, node: Option<NodeId>, ms: Millis) -> Result<String, ApiError> {
    let targets: Vec<_> = match node {
        Some(n) => vec![hub.backends.get(&n).ok_or_else(|| unknown_node(n))?],
        None => hub.backends.values().filter(|b| b.is_connected()).collect(),
    };
    let asks = targets.iter().map(|b| b.time(hub.next_id(), TimeCommand::Advance { ms }));
    let answered = futures_util::future::join_all(asks).await.into_iter().flatten().count();
    match node {
        Some(n) if answered == 0 => {
            Err(ApiError::new(ErrorKind::Unavailable, format!("node {n} did not answer")))
        }
        Some(n) => Ok(format!("node {n}'s clock advanced {ms} ms")),
        None => Ok(format!("{answered} clocks advanced {ms} ms")),
    }
}

/// Runs one server's clock to its next timer.
pub async fn fire_timer(hub: &Hub, node: NodeId) -> Result<String, ApiError> {
    let backend = hub.backends.get(&node).ok_or_else(|| unknown_node(node))?;
    let report = backend
        .time(hub.next_id(), TimeCommand::Report)
        .await
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {node} did not answer")))?;
    let ms = report.next_deadline.saturating_sub(report.now);
    advance(hub, Some(node), ms).await?;
    tokio::time::sleep(SETTLE).await;
    Ok(format!("node {node}'s clock advanced {ms} ms to its next timer"))
}

/// Finds a held message by id, on whichever server holds it.
async fn find(hub: &Hub, id: MessageId) -> Result<HeldMessage, ApiError> {
    let reports = ask_all(hub, TimeCommand::Report).await;
    held_in(&reports).into_iter().find(|m| m.id == id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("no message #{id} is held (it may have arrived or been lost)"),
        )
    })
}

pub async fn deliver_message(hub: &Hub, id: MessageId) -> Result<String, ApiError> {
    let m = find(hub, id).await?;
    deliver(hub, &m).await
}

pub async fn drop_message(hub: &Hub, id: MessageId) -> Result<String, ApiError> {
    let m = find(hub, id).await?;
    let backend = hub.backends.get(&m.from).ok_or_else(|| unknown_node(m.from))?;
    let report = backend
        .time(hub.next_id(), TimeCommand::Drop { ids: vec![id] })
        .await
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {} did not answer", m.from)))?;
    if report.acted.is_empty() {
        return Err(ApiError::new(ErrorKind::BadRequest, format!("message #{id} had already left")));
    }
    hub.time.note_released(id);
    Ok(format!("dropped {} #{id} from node {} to node {}", m.kind.name(), m.from, m.to))
}

fn unknown_node(node: NodeId) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, format!("there is no node {node}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_time_excludes_the_time_the_cluster_stood_still() {
        let gate = TimeGate::default();
        let mark = gate.mark();
        std::thread::sleep(Duration::from_millis(30));
        gate.set_stopped(true);
        std::thread::sleep(Duration::from_millis(60));
        let ran = gate.running_since(mark);
        assert!(ran >= Duration::from_millis(30) && ran < Duration::from_millis(60), "{ran:?}");
        gate.set_stopped(false);
        std::thread::sleep(Duration::from_millis(20));
        assert!(gate.running_since(mark) >= Duration::from_millis(50));
        assert!(!gate.is_stopped());
    }
}
