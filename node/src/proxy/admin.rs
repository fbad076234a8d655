//! Admin commands: process faults through the supervisor, network faults, latency and the time
//! scale through each server's fault settings; time control in `time`, lessons in `lessons`.

use std::collections::BTreeSet;
use std::sync::Arc;

use shared::protocol::{
    AdminCommand, ApiError, ErrorKind, FaultSettings, MAX_DELAY_MS, ProcessAction, ProxyFrame, ServerInbound,
};
use shared::raft::NodeId;

use super::status::{cluster_status, time_scale};
use super::{Hub, lessons, membership, time};

/// An admin command from a client or page.
pub async fn execute(hub: &Arc<Hub>, id: u64, command: AdminCommand) -> ProxyFrame {
    let description = command.describe();
    if let AdminCommand::Lesson { action } = command {
        return match lessons::control(hub, action).await {
            Ok(message) => ProxyFrame::AdminDone { id, message },
            Err(error) => ProxyFrame::Error { id: Some(id), error },
        };
    }
    if matches!(command, AdminCommand::Reset) {
        // Someone starts over by hand: a lesson in progress would fight them.
        hub.lessons.stop();
    }
    match run(hub, id, command).await {
        Ok(message) => {
            tracing::info!("admin: {description}: {message}");
            ProxyFrame::AdminDone { id, message }
        }
        Err(error) => ProxyFrame::Error { id: Some(id), error },
    }
}

fn known(hub: &Hub, node: NodeId) -> Result<(), ApiError> {
    hub.backends.require(node).map(|_| ())
}

/// Carries out a command (for clients, and for lessons, which call it directly).
pub async fn run(hub: &Arc<Hub>, id: u64, command: AdminCommand) -> Result<String, ApiError> {
    let scale = time_scale(hub);
    match command {
        AdminCommand::Crash { node }
        | AdminCommand::Restart { node }
        | AdminCommand::Pause { node }
        | AdminCommand::Resume { node } => {
            known(hub, node)?;
            let action = match command {
                AdminCommand::Crash { .. } => ProcessAction::Crash,
                AdminCommand::Restart { .. } => ProcessAction::Restart,
                AdminCommand::Pause { .. } => ProcessAction::Pause,
                _ => ProcessAction::Resume,
            };
            // A restarted server starts with the faults in force (a partition, a stopped clock).
            let faults = (action == ProcessAction::Restart)
                .then(|| hub.backends.get(&node).map(|b| b.current_faults(scale)))
                .flatten();
            let self_crash = || {
                if let Some(backend) = hub.backends.get(&node) {
                    backend.send(ServerInbound::Crash);
                }
            };
            match &hub.supervisor {
                // A supervisor that cannot be reached is no reason to refuse a crash: the
                // server can kill itself, as it does without a supervisor.
                Some(supervisor) if action == ProcessAction::Crash && !supervisor.is_connected() => {
                    self_crash();
                    Ok(format!(
                        "asked node {node} to crash itself (the supervisor is not reachable, so it cannot be \
                         restarted until the supervisor is back)"
                    ))
                }
                Some(supervisor) => supervisor.act(id, node, action, faults).await,
                None if action == ProcessAction::Crash => {
                    // No supervisor: ask the server to kill itself.
                    self_crash();
                    Ok(format!(
                        "asked node {node} to crash (it is not supervised, so it cannot be restarted from here)"
                    ))
                }
                None => Err(ApiError::new(
                    ErrorKind::NotSupported,
                    "pause, resume and restart need a supervisor: run the cluster with `consenso cluster`",
                )),
            }
        }
        AdminCommand::Partition { groups } => {
            for n in groups.iter().flatten() {
                known(hub, *n)?;
            }
            let all: BTreeSet<NodeId> = hub.backends.keys().collect();
            let groups = shared::protocol::partition_groups(&all, groups)?;
            for (group, outside) in &groups {
                for node in group {
                    let backend = hub.backends.require(*node)?;
                    let mut faults = backend.current_faults(scale);
                    faults.blocked_to = outside.clone();
                    faults.blocked_from = outside.clone();
                    backend.set_faults(faults);
                }
            }
            Ok(format!(
                "partitioned into {}",
                shared::protocol::describe_groups(groups.iter().map(|(g, _)| g))
            ))
        }
        AdminCommand::Block { from, to } => {
            known(hub, from)?;
            known(hub, to)?;
            if from == to {
                return Err(ApiError::new(ErrorKind::BadRequest, "a node cannot be cut off from itself"));
            }
            let sender = hub.backends.require(from)?;
            let mut faults = sender.current_faults(scale);
            if !faults.blocked_to.contains(&to) {
                faults.blocked_to.push(to);
            }
            sender.set_faults(faults);
            let receiver = hub.backends.require(to)?;
            let mut faults = receiver.current_faults(scale);
            if !faults.blocked_from.contains(&from) {
                faults.blocked_from.push(from);
            }
            receiver.set_faults(faults);
            Ok(format!("messages from node {from} to node {to} are now lost"))
        }
        AdminCommand::Heal => {
            for backend in hub.backends.values() {
                let mut faults = backend.current_faults(scale);
                faults.blocked_to.clear();
                faults.blocked_from.clear();
                faults.drop_rate = 0.0;
                faults.delay_ms = 0;
                backend.set_faults(faults);
            }
            Ok("network healed: no partitions, loss or delay".to_string())
        }
        AdminCommand::Drop { node, rate } => {
            if !(0.0..=1.0).contains(&rate) {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("drop rate {rate} is not between 0 and 1"),
                ));
            }
            for backend in targets(hub, node)? {
                let mut faults = backend.current_faults(scale);
                faults.drop_rate = rate;
                backend.set_faults(faults);
            }
            Ok(format!("dropping {:.0}% of messages", rate * 100.0))
        }
        AdminCommand::Delay { node, ms } => {
            if ms > MAX_DELAY_MS {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("delay is limited to {MAX_DELAY_MS} ms"),
                ));
            }
            for backend in targets(hub, node)? {
                let mut faults = backend.current_faults(scale);
                faults.delay_ms = ms;
                backend.set_faults(faults);
            }
            Ok(format!("delaying messages by {ms} ms"))
        }
        AdminCommand::TimeScale { scale: new } => {
            if !new.is_finite() || !(0.1..=1000.0).contains(&new) {
                return Err(ApiError::new(ErrorKind::BadRequest, "time scale must be between 0.1 and 1000"));
            }
            for backend in hub.backends.values() {
                let mut faults = backend.current_faults(scale);
                faults.time_scale = new;
                backend.set_faults(faults);
            }
            Ok(format!("time runs {new}× slower"))
        }
        AdminCommand::TransferLeadership { to } => {
            known(hub, to)?;
            let leader = cluster_status(hub)
                .leader
                .ok_or_else(|| ApiError::new(ErrorKind::NoLeader, "there is no leader to hand over from"))?;
            hub.backends.require(leader)?.send(ServerInbound::Transfer { to });
            Ok(format!("asked leader {leader} to hand over to node {to}"))
        }
        AdminCommand::StopTime => time::stop(hub).await,
        AdminCommand::AddServer { node, address } => membership::add(hub, node, address).await,
        AdminCommand::RemoveServer { node } => membership::remove(hub, node).await,
        AdminCommand::StartTime => time::start(hub).await,
        AdminCommand::Step { count } => time::step(hub, count).await,
        AdminCommand::DeliverMessage { id } => time::deliver_message(hub, id).await,
        AdminCommand::DropMessage { id } => time::drop_message(hub, id).await,
        AdminCommand::FireTimer { node } => {
            known(hub, node)?;
            time::fire_timer(hub, node).await
        }
        AdminCommand::Advance { node, ms } => {
            if let Some(n) = node {
                known(hub, n)?;
            }
            if ms > MAX_DELAY_MS * 10 {
                return Err(ApiError::new(ErrorKind::BadRequest, "advance by at most 100000 ms at a time"));
            }
            time::advance(hub, node, ms).await
        }
        AdminCommand::Latency { ms, jitter_ms } => {
            if ms.is_some_and(|l| l > MAX_DELAY_MS) || jitter_ms.is_some_and(|j| j > MAX_DELAY_MS) {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    format!("latency and jitter are limited to {MAX_DELAY_MS} ms"),
                ));
            }
            for backend in hub.backends.values() {
                let mut faults = backend.current_faults(scale);
                faults.latency_ms = ms;
                faults.jitter_ms = jitter_ms;
                backend.set_faults(faults);
            }
            Ok(match ms {
                Some(ms) => format!(
                    "messages take {ms} ms (plus up to {} ms of jitter) of cluster time",
                    jitter_ms.unwrap_or(ms / 2)
                ),
                None => {
                    "automatic latency: none at real speed, a tenth of the election timeout in slow motion"
                        .to_string()
                }
            })
        }
        AdminCommand::BatchSize { entries } => {
            if entries == Some(0) {
                return Err(ApiError::new(
                    ErrorKind::BadRequest,
                    "an AppendEntries carries at least one entry",
                ));
            }
            for backend in hub.backends.values() {
                let mut faults = backend.current_faults(scale);
                faults.max_entries = entries;
                backend.set_faults(faults);
            }
            Ok(match entries {
                Some(n) => format!("at most {n} entries per AppendEntries"),
                None => "AppendEntries batches back to the servers' own limit".to_string(),
            })
        }
        AdminCommand::Snapshot { node } => {
            for backend in targets(hub, node)? {
                backend.send(ServerInbound::Snapshot);
            }
            Ok("asked for a snapshot at the applied index".to_string())
        }
        AdminCommand::Reset => reset(hub, id, scale).await,
        AdminCommand::OpenWrites { open } => {
            hub.open_writes.store(open, std::sync::atomic::Ordering::Relaxed);
            Ok(if open {
                "clients without the token may write now (on this proxy)".to_string()
            } else {
                "writes need the token again (on this proxy)".to_string()
            })
        }
        AdminCommand::Record { on: true, file } => {
            let path = file.map_or_else(super::recorder::default_path, std::path::PathBuf::from);
            super::recorder::start_file(hub, path)
                .map(|shown| format!("recording to {shown} (on the proxy's machine)"))
                .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("{e:#}")))
        }
        AdminCommand::Record { on: false, .. } => Ok(match super::recorder::stop_file(hub) {
            Some(path) => format!("recording stopped: {path}"),
            None => "no recording was running".to_string(),
        }),
        AdminCommand::Lesson { .. } => {
            Err(ApiError::new(ErrorKind::BadRequest, "a lesson cannot start or control another lesson"))
        }
    }
}

/// Restarts every server on an empty disk, with the network healed and time running; the
/// lecturer's slow motion and latency stay.
async fn reset(hub: &Hub, id: u64, scale: f64) -> Result<String, ApiError> {
    let Some(supervisor) = &hub.supervisor else {
        return Err(ApiError::new(
            ErrorKind::NotSupported,
            "reset needs a supervisor: run the cluster with `consenso cluster`",
        ));
    };
    let kept = hub.backends.values().next().map(|b| b.current_faults(scale));
    let faults = FaultSettings {
        time_scale: scale,
        latency_ms: kept.as_ref().and_then(|f| f.latency_ms),
        jitter_ms: kept.as_ref().and_then(|f| f.jitter_ms),
        ..FaultSettings::normal()
    };
    for backend in hub.backends.values() {
        backend.set_faults(faults.clone());
    }
    hub.time.set_stopped(false);
    let result = supervisor.reset(id, Some(faults)).await;
    hub.forget_cluster();
    result
}

fn targets(hub: &Hub, node: Option<NodeId>) -> Result<Vec<Arc<super::backend::Backend>>, ApiError> {
    match node {
        Some(n) => Ok(vec![hub.backends.require(n)?]),
        None => Ok(hub.backends.values().collect()),
    }
}
