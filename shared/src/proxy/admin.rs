//! Admin commands: what each means, the one place it is validated, and how it is carried out —
//! process faults through the supervisor, network faults, latency and the time scale through
//! each server's fault settings; time control in `time`, membership in `membership`, lessons in
//! `lessons`.

use std::collections::BTreeSet;

use crate::protocol::{
    AdminCommand, ApiError, ErrorKind, FaultSettings, MAX_DELAY_MS, ProcessAction, ProxyFrame, ServerInbound,
};
use crate::raft::NodeId;

use super::core::Core;
use super::supervise::{known, supervise};
use super::{membership, time};

/// The slowest the cluster's time may run (×1000: a second takes a quarter of an hour) and the
/// fastest (×0.1), as a factor on every timeout.
pub const TIME_SCALE_MIN: f64 = 0.1;
pub const TIME_SCALE_MAX: f64 = 1000.0;
/// `advance` moves clocks at most this far at once.
pub const MAX_ADVANCE_MS: u64 = MAX_DELAY_MS * 10;

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorKind::BadRequest, message)
}

/// An admin command from a client or page, answered as frame `id`.
pub(crate) async fn execute(core: &Core, id: u64, command: AdminCommand) -> ProxyFrame {
    let description = command.describe();
    match run(core, command).await {
        Ok(message) => {
            core.state().note(format!("admin: {description}: {message}"));
            ProxyFrame::AdminDone { id, message }
        }
        Err(error) => ProxyFrame::Error { id: Some(id), error },
    }
}

/// Carries out a command (for clients, and for lessons, which call it directly); what was done
/// becomes a line in every page's timeline.
pub(crate) async fn run(core: &Core, command: AdminCommand) -> Result<String, ApiError> {
    let description = command.describe();
    let description_es = Some(command.describe_es());
    let result = carry_out(core, command).await;
    if result.is_ok() {
        let event = crate::event::Event::Fault { description, description_es };
        core.state().fanout.push(crate::event::Observed { node: 0, at: 0, event });
    }
    result
}

async fn carry_out(core: &Core, command: AdminCommand) -> Result<String, ApiError> {
    match command {
        AdminCommand::Crash { node } => process(core, node, ProcessAction::Crash).await,
        AdminCommand::Restart { node } => process(core, node, ProcessAction::Restart).await,
        AdminCommand::Pause { node } => process(core, node, ProcessAction::Pause).await,
        AdminCommand::Resume { node } => process(core, node, ProcessAction::Resume).await,
        AdminCommand::Partition { groups } => partition(core, groups),
        AdminCommand::Block { from, to } => block(core, from, to),
        AdminCommand::Heal => Ok(heal(core)),
        AdminCommand::Drop { node, rate } => drop_messages(core, node, rate),
        AdminCommand::Delay { node, ms } => delay(core, node, ms),
        AdminCommand::TimeScale { scale } => time_scale(core, scale),
        AdminCommand::Latency { ms, jitter_ms } => latency(core, ms, jitter_ms),
        AdminCommand::BatchSize { entries } => batch_size(core, entries),
        AdminCommand::Snapshot { node } => snapshot(core, node),
        AdminCommand::TransferLeadership { to } => transfer(core, to),
        AdminCommand::StopTime => time::stop(core).await,
        AdminCommand::StartTime => time::start(core).await,
        AdminCommand::Step { count } => time::step(core, count).await,
        AdminCommand::DeliverMessage { id } => time::deliver_message(core, id).await,
        AdminCommand::DropMessage { id } => time::drop_message(core, id).await,
        AdminCommand::FireTimer { node } => {
            known(core, node)?;
            time::fire_timer(core, node).await
        }
        AdminCommand::Advance { node, ms } => {
            if let Some(n) = node {
                known(core, n)?;
            }
            if ms > MAX_ADVANCE_MS {
                return Err(bad(format!("advance by at most {MAX_ADVANCE_MS} ms at a time")));
            }
            time::advance(core, node, ms).await
        }
        AdminCommand::AddServer { node, address } => membership::add(core, node, address).await,
        AdminCommand::RemoveServer { node } => membership::remove(core, node).await,
        AdminCommand::Reset => reset(core).await,
        AdminCommand::OpenWrites { open } => {
            core.state().open_writes = open;
            Ok(if open {
                "clients without the token may write now (on this proxy)".to_string()
            } else {
                "writes need the token again (on this proxy)".to_string()
            })
        }
        AdminCommand::Record { .. } => Err(ApiError::new(
            ErrorKind::NotSupported,
            "this proxy cannot record to a file (the page's download saves its last minutes)",
        )),
        AdminCommand::Lesson { .. } => Err(bad("a lesson cannot start or control another lesson")),
    }
}

/// The servers a fault applies to: one, or all.
fn targets(core: &Core, node: Option<NodeId>) -> Result<Vec<NodeId>, ApiError> {
    match node {
        Some(n) => known(core, n).map(|()| vec![n]),
        None => Ok(core.state().servers.keys().copied().collect()),
    }
}

/// Changes the fault settings of `nodes`.
fn set_faults(core: &Core, nodes: &[NodeId], change: impl Fn(&mut FaultSettings)) {
    let mut state = core.state();
    let scale = state.time_scale();
    for node in nodes {
        let Some(server) = state.servers.get(node) else { continue };
        let mut faults = server.current_faults(scale);
        change(&mut faults);
        state.set_faults(*node, faults);
    }
}

fn all(core: &Core) -> Vec<NodeId> {
    core.state().servers.keys().copied().collect()
}

/// Crash, restart, pause, resume: the supervisor does them for real; without one, a server can
/// still crash itself.
async fn process(core: &Core, node: NodeId, action: ProcessAction) -> Result<String, ApiError> {
    known(core, node)?;
    let (supervised, reachable) = {
        let state = core.state();
        (state.supervisor.exists, state.supervisor.up)
    };
    let crash_itself = |core: &Core| core.state().send(node, ServerInbound::Crash);
    match (action, supervised, reachable) {
        // A supervisor that cannot be reached is no reason to refuse a crash.
        (ProcessAction::Crash, true, false) => {
            crash_itself(core);
            Ok(format!(
                "asked node {node} to crash itself (the supervisor is not reachable, so it cannot be restarted \
                 until the supervisor is back)"
            ))
        }
        (ProcessAction::Crash, false, _) => {
            crash_itself(core);
            Ok(format!(
                "asked node {node} to crash (it is not supervised, so it cannot be restarted from here)"
            ))
        }
        (_, false, _) => Err(ApiError::new(
            ErrorKind::NotSupported,
            "pause, resume and restart need a supervisor: run the cluster with `consenso cluster`",
        )),
        _ => {
            // A restarted server starts with the faults in force (a partition, a stopped clock).
            let faults = (action == ProcessAction::Restart).then(|| {
                let state = core.state();
                let scale = state.time_scale();
                state.servers[&node].current_faults(scale)
            });
            supervise(core, |id| crate::protocol::SupervisorInbound::Process { id, node, action, faults })
                .await
        }
    }
}

fn partition(core: &Core, groups: Vec<Vec<NodeId>>) -> Result<String, ApiError> {
    for n in groups.iter().flatten() {
        known(core, *n)?;
    }
    let everyone: BTreeSet<NodeId> = all(core).into_iter().collect();
    let groups = crate::protocol::partition_groups(&everyone, groups)?;
    for (group, outside) in &groups {
        let nodes: Vec<NodeId> = group.iter().copied().collect();
        set_faults(core, &nodes, |f| {
            f.blocked_to = outside.clone();
            f.blocked_from = outside.clone();
        });
    }
    Ok(format!("partitioned into {}", crate::protocol::describe_groups(groups.iter().map(|(g, _)| g))))
}

fn block(core: &Core, from: NodeId, to: NodeId) -> Result<String, ApiError> {
    known(core, from)?;
    known(core, to)?;
    if from == to {
        return Err(bad("a node cannot be cut off from itself"));
    }
    set_faults(core, &[from], |f| {
        if !f.blocked_to.contains(&to) {
            f.blocked_to.push(to);
        }
    });
    set_faults(core, &[to], |f| {
        if !f.blocked_from.contains(&from) {
            f.blocked_from.push(from);
        }
    });
    Ok(format!("messages from node {from} to node {to} are now lost"))
}

fn heal(core: &Core) -> String {
    set_faults(core, &all(core), |f| {
        f.blocked_to.clear();
        f.blocked_from.clear();
        f.drop_rate = 0.0;
        f.delay_ms = 0;
    });
    "network healed: no partitions, loss or delay".to_string()
}

fn drop_messages(core: &Core, node: Option<NodeId>, rate: f64) -> Result<String, ApiError> {
    if !(0.0..=1.0).contains(&rate) {
        return Err(bad(format!("drop rate {rate} is not between 0 and 1")));
    }
    set_faults(core, &targets(core, node)?, |f| f.drop_rate = rate);
    Ok(format!("dropping {:.0}% of messages", rate * 100.0))
}

fn delay(core: &Core, node: Option<NodeId>, ms: u64) -> Result<String, ApiError> {
    if ms > MAX_DELAY_MS {
        return Err(bad(format!("delay is limited to {MAX_DELAY_MS} ms")));
    }
    set_faults(core, &targets(core, node)?, |f| f.delay_ms = ms);
    Ok(format!("delaying messages by {ms} ms"))
}

fn time_scale(core: &Core, scale: f64) -> Result<String, ApiError> {
    if !scale.is_finite() || !(TIME_SCALE_MIN..=TIME_SCALE_MAX).contains(&scale) {
        return Err(bad(format!("time scale must be between {TIME_SCALE_MIN} and {TIME_SCALE_MAX}")));
    }
    set_faults(core, &all(core), |f| f.time_scale = scale);
    Ok(format!("time runs {scale}× slower"))
}

fn latency(core: &Core, ms: Option<u64>, jitter_ms: Option<u64>) -> Result<String, ApiError> {
    if ms.is_some_and(|l| l > MAX_DELAY_MS) || jitter_ms.is_some_and(|j| j > MAX_DELAY_MS) {
        return Err(bad(format!("latency and jitter are limited to {MAX_DELAY_MS} ms")));
    }
    set_faults(core, &all(core), |f| {
        f.latency_ms = ms;
        f.jitter_ms = jitter_ms;
    });
    Ok(match ms {
        Some(ms) => {
            format!(
                "messages take {ms} ms (plus up to {} ms of jitter) of cluster time",
                jitter_ms.unwrap_or(ms / 2)
            )
        }
        None => "automatic latency: none at real speed, a tenth of the election timeout in slow motion"
            .to_string(),
    })
}

fn batch_size(core: &Core, entries: Option<u32>) -> Result<String, ApiError> {
    if entries == Some(0) {
        return Err(bad("an AppendEntries carries at least one entry"));
    }
    set_faults(core, &all(core), |f| f.max_entries = entries);
    Ok(match entries {
        Some(n) => format!("at most {n} entries per AppendEntries"),
        None => "AppendEntries batches back to the servers' own limit".to_string(),
    })
}

fn snapshot(core: &Core, node: Option<NodeId>) -> Result<String, ApiError> {
    let nodes = targets(core, node)?;
    let mut state = core.state();
    for n in nodes {
        state.send(n, ServerInbound::Snapshot);
    }
    Ok("asked for a snapshot at the applied index".to_string())
}

fn transfer(core: &Core, to: NodeId) -> Result<String, ApiError> {
    known(core, to)?;
    let mut state = core.state();
    let leader = state
        .cluster_status()
        .leader
        .ok_or_else(|| ApiError::new(ErrorKind::NoLeader, "there is no leader to hand over from"))?;
    state.send(leader, ServerInbound::Transfer { to });
    Ok(format!("asked leader {leader} to hand over to node {to}"))
}

/// Restarts every server on an empty disk, with the network healed and time running; the
/// lecturer's slow motion and latency stay.
async fn reset(core: &Core) -> Result<String, ApiError> {
    let faults = {
        let mut state = core.state();
        if !state.supervisor.exists {
            return Err(ApiError::new(
                ErrorKind::NotSupported,
                "reset needs a supervisor: run the cluster with `consenso cluster`",
            ));
        }
        let scale = state.time_scale();
        let kept = state.servers.values().next().map(|s| s.current_faults(scale));
        let faults = FaultSettings {
            time_scale: scale,
            latency_ms: kept.as_ref().and_then(|f| f.latency_ms),
            jitter_ms: kept.as_ref().and_then(|f| f.jitter_ms),
            ..FaultSettings::normal()
        };
        let nodes: Vec<NodeId> = state.servers.keys().copied().collect();
        for node in nodes {
            state.set_faults(node, faults.clone());
        }
        let now = state.now;
        state.gate.set_stopped(false, now);
        faults
    };
    let result =
        supervise(core, |id| crate::protocol::SupervisorInbound::Reset { id, faults: Some(faults) }).await;
    core.state().forget_cluster();
    result
}
