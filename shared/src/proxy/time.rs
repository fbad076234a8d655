//! Time in the cluster, from the proxy: stopping and starting every server's clock, stepping
//! one message (or one timer) at a time, delivering or dropping a chosen message. (The proxy's
//! own patience, which must not run out while the cluster's time stands still, is the
//! `TimeGate` in `core`.)

use crate::protocol::{ApiError, ErrorKind, HeldMessage, TimeCommand, TimeReport};
use crate::raft::{MessageId, Millis, NodeId};

use super::core::Core;
use super::wait::{Answered, sleep, wait_report};

/// How long after its journey a delivered message's effects are given to show up (the
/// receiver's round and fsync, its status report).
const SETTLE_MS: Millis = 80;
/// Steps in one command at most.
pub const MAX_STEPS: u32 = 200;
/// Patience for a server's answer to a time command.
const TIME_PATIENCE_MS: Millis = 3_000;

/// Sends `command` to `node` and waits for its report (none if it does not answer in time).
async fn ask(core: &Core, node: NodeId, command: TimeCommand) -> Option<TimeReport> {
    let (id, deadline) = {
        let mut state = core.state();
        (state.time_command(node, command)?, state.now + TIME_PATIENCE_MS)
    };
    loop {
        match wait_report(core, id, deadline).await {
            Answered::Yes(report) => return Some(report),
            Answered::No => return None,
            Answered::Late if core.now() < deadline => continue,
            Answered::Late => {
                core.state().forget_report(id);
                return None;
            }
        }
    }
}

/// Asks every reachable server; the answers that came.
pub(crate) async fn ask_all(core: &Core, command: TimeCommand) -> Vec<TimeReport> {
    let nodes: Vec<NodeId> = core.state().servers.iter().filter(|(_, s)| s.up).map(|(id, _)| *id).collect();
    // Sent to all at once, then gathered: every server acts on it about together.
    let mut asked = Vec::new();
    {
        let mut state = core.state();
        let deadline = state.now + TIME_PATIENCE_MS;
        for node in nodes {
            if let Some(id) = state.time_command(node, command.clone()) {
                asked.push((id, deadline));
            }
        }
    }
    let mut reports = Vec::new();
    for (id, deadline) in asked {
        loop {
            match wait_report(core, id, deadline).await {
                Answered::Yes(report) => reports.push(report),
                Answered::Late if core.now() < deadline => continue,
                Answered::Late => core.state().forget_report(id),
                Answered::No => {}
            }
            break;
        }
    }
    reports
}

/// Every held message, oldest first (by the senders' wall clocks, then sender and id).
fn held_in(reports: &[TimeReport]) -> Vec<HeldMessage> {
    let mut held: Vec<HeldMessage> = reports.iter().flat_map(|r| r.held.iter().cloned()).collect();
    held.sort_by_key(HeldMessage::send_order);
    held
}

fn set_stopped_everywhere(core: &Core, stopped: bool) {
    let mut state = core.state();
    let scale = state.time_scale();
    let nodes: Vec<NodeId> = state.servers.keys().copied().collect();
    for node in nodes {
        let mut faults = state.servers[&node].current_faults(scale);
        faults.time_stopped = stopped;
        state.set_faults(node, faults);
    }
    let now = state.now;
    state.gate.set_stopped(stopped, now);
}

pub(crate) async fn stop(core: &Core) -> Result<String, ApiError> {
    set_stopped_everywhere(core, true);
    // The servers apply settings and answer time commands in order: once they answer, they
    // have stopped.
    let reports = ask_all(core, TimeCommand::Report).await;
    let held: usize = reports.iter().map(|r| r.held.len()).sum();
    Ok(format!("time stopped on {} servers; {held} messages held", reports.len()))
}

pub(crate) async fn start(core: &Core) -> Result<String, ApiError> {
    set_stopped_everywhere(core, false);
    let reports = ask_all(core, TimeCommand::Report).await;
    Ok(format!("time runs again on {} servers", reports.len()))
}

/// `count` steps: each delivers the oldest held message, or, when none is held, advances the
/// clocks to the next timer. Stops time first if it runs.
pub(crate) async fn step(core: &Core, count: u32) -> Result<String, ApiError> {
    if count == 0 || count > MAX_STEPS {
        return Err(ApiError::new(ErrorKind::BadRequest, format!("steps must be between 1 and {MAX_STEPS}")));
    }
    if !core.state().gate.is_stopped() {
        stop(core).await?;
    }
    let mut said = Vec::new();
    for _ in 0..count {
        let reports = ask_all(core, TimeCommand::Report).await;
        if reports.is_empty() {
            return Err(ApiError::new(ErrorKind::Unavailable, "no server answers"));
        }
        let first = {
            let state = core.state();
            held_in(&reports).into_iter().find(|m| !state.gate.was_released(m.id, state.now))
        };
        match first {
            Some(first) => said.push(deliver(core, &first).await?),
            None => said.push(next_timer(core, &reports).await?),
        }
    }
    Ok(said.join("; "))
}

/// Releases one held message and waits until it has arrived.
async fn deliver(core: &Core, m: &HeldMessage) -> Result<String, ApiError> {
    let report = ask(core, m.from, TimeCommand::Release { ids: vec![m.id] })
        .await
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {} did not answer", m.from)))?;
    let Some((_, travel)) = report.acted.first() else {
        return Ok(format!("message #{} had already left", m.id));
    };
    {
        let mut state = core.state();
        let now = state.now;
        state.gate.note_released(m.id, now);
    }
    sleep(core, travel + SETTLE_MS).await;
    Ok(format!("delivered {} #{} from node {} to node {}", m.kind.name(), m.id, m.from, m.to))
}

/// Advances every clock to the earliest timer of any server.
async fn next_timer(core: &Core, reports: &[TimeReport]) -> Result<String, ApiError> {
    let (node, ms) = reports
        .iter()
        .map(|r| (r.node, r.next_deadline.saturating_sub(r.now)))
        .min_by_key(|(node, ms)| (*ms, *node))
        .expect("reports are not empty");
    advance(core, None, ms).await?;
    sleep(core, SETTLE_MS).await;
    Ok(format!("nothing held: clocks advanced {ms} ms, to node {node}'s next timer"))
}

pub(crate) async fn advance(core: &Core, node: Option<NodeId>, ms: Millis) -> Result<String, ApiError> {
    match node {
        Some(n) => {
            ask(core, n, TimeCommand::Advance { ms })
                .await
                .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {n} did not answer")))?;
            Ok(format!("node {n}'s clock advanced {ms} ms"))
        }
        None => {
            let answered = ask_all(core, TimeCommand::Advance { ms }).await.len();
            Ok(format!("{answered} clocks advanced {ms} ms"))
        }
    }
}

/// Runs one server's clock to its next timer.
pub(crate) async fn fire_timer(core: &Core, node: NodeId) -> Result<String, ApiError> {
    let report = ask(core, node, TimeCommand::Report)
        .await
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {node} did not answer")))?;
    let ms = report.next_deadline.saturating_sub(report.now);
    advance(core, Some(node), ms).await?;
    sleep(core, SETTLE_MS).await;
    Ok(format!("node {node}'s clock advanced {ms} ms to its next timer"))
}

/// Finds a held message by id, on whichever server holds it.
async fn find(core: &Core, id: MessageId) -> Result<HeldMessage, ApiError> {
    let reports = ask_all(core, TimeCommand::Report).await;
    held_in(&reports).into_iter().find(|m| m.id == id).ok_or_else(|| {
        ApiError::new(
            ErrorKind::BadRequest,
            format!("no message #{id} is held (it may have arrived or been lost)"),
        )
    })
}

pub(crate) async fn deliver_message(core: &Core, id: MessageId) -> Result<String, ApiError> {
    let m = find(core, id).await?;
    deliver(core, &m).await
}

pub(crate) async fn drop_message(core: &Core, id: MessageId) -> Result<String, ApiError> {
    let m = find(core, id).await?;
    let report = ask(core, m.from, TimeCommand::Drop { ids: vec![id] })
        .await
        .ok_or_else(|| ApiError::new(ErrorKind::Unavailable, format!("node {} did not answer", m.from)))?;
    if report.acted.is_empty() {
        return Err(ApiError::new(ErrorKind::BadRequest, format!("message #{id} had already left")));
    }
    let mut state = core.state();
    let now = state.now;
    state.gate.note_released(id, now);
    Ok(format!("dropped {} #{id} from node {} to node {}", m.kind.name(), m.from, m.to))
}
