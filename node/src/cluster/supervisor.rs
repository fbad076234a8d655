//! The supervisor: the processes of a local cluster, started, signalled, restarted, added and
//! removed for real, and the WebSocket endpoint through which proxies ask for it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use shared::protocol::{
    ApiError, ErrorKind, FaultSettings, PROTOCOL_VERSION, ProcessAction, ProcessInfo, ProcessState,
    SupervisorInbound, SupervisorOutbound, encode,
};
use shared::raft::NodeId;
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::log_file;

/// How long creating the cluster may wait for its servers to listen.
const INIT_WAIT: Duration = Duration::from_secs(30);
use crate::listener::{Gate, origin_allowed};
use crate::ws::{accept_frame, answer};

/// A server's process group: each server leads one, so that a signal reaches whatever it
/// started too (a hosted node's process, `consenso server --server-cmd`).
fn group(pid: u32) -> Pid {
    Pid::from_raw(-(pid as i32))
}

#[derive(Clone)]
pub(super) struct ServerPlace {
    pub(super) address: String,
    pub(super) data_dir: PathBuf,
}

pub(super) struct Process {
    pub(super) pid: Option<u32>,
    pub(super) state: ProcessState,
    /// Bumped at every start, so that the exit of an old incarnation does not mark a new one.
    pub(super) generation: u64,
}

pub(super) struct Supervisor {
    pub(super) exe: PathBuf,
    pub(super) token: String,
    pub(super) logs: PathBuf,
    pub(super) data_dir: PathBuf,
    /// Where servers listen: `host:port+10+id`.
    pub(super) host: String,
    pub(super) port: u16,
    /// The options every server gets (time, batches, bugs…), besides its own id and place.
    pub(super) common_args: Vec<String>,
    /// The servers of the first configuration; those added later join it.
    pub(super) first: BTreeMap<NodeId, ServerPlace>,
    pub(super) servers: Mutex<BTreeMap<NodeId, ServerPlace>>,
    /// With `--hosts netns`: the namespaces the servers run in (removed when the cluster stops).
    pub(super) lan: Mutex<Option<crate::hosts::Lan>>,
    /// Ids of servers that left: never given again, even if their disk is gone.
    pub(super) retired: Mutex<std::collections::BTreeSet<NodeId>>,
    /// Faults a server starts with when nobody says otherwise (the cluster's own options).
    pub(super) initial_faults: FaultSettings,
    pub(super) processes: Mutex<BTreeMap<NodeId, Process>>,
    pub(super) updates: watch::Sender<(Vec<ProcessInfo>, u64)>,
    /// Resets so far: observers learn that what they knew is void.
    pub(super) epoch: std::sync::atomic::AtomicU64,
    pub(super) stopping: std::sync::atomic::AtomicBool,
}

impl Supervisor {
    /// Ids of servers that left for good (never given again).
    pub(super) fn retired(&self) -> Vec<NodeId> {
        self.retired.lock().expect("retired lock").iter().copied().collect()
    }

    pub(super) fn publish(&self) {
        let list = self
            .processes
            .lock()
            .expect("processes lock")
            .iter()
            .map(|(node, p)| ProcessInfo {
                node: *node,
                pid: p.pid,
                state: p.state,
                address: self.place(*node).map(|s| s.address),
            })
            .collect();
        let _ = self.updates.send((list, self.epoch.load(std::sync::atomic::Ordering::SeqCst)));
    }

    pub(super) fn place(&self, id: NodeId) -> Option<ServerPlace> {
        self.servers.lock().expect("servers lock").get(&id).cloned()
    }

    /// Server `id`'s command line: every known server as a peer (a joining one reaches the
    /// others through them), its place, and the cluster's options. Nothing in it makes a
    /// server a voter: the first configuration is on the disks of the servers `init` created.
    pub(super) fn server_args(&self, id: NodeId) -> anyhow::Result<Vec<String>> {
        let servers = self.servers.lock().expect("servers lock");
        let place = servers.get(&id).with_context(|| format!("there is no node {id}"))?;
        let peers = servers.iter().map(|(id, s)| format!("{id}={}", s.address)).collect::<Vec<_>>().join(",");
        let mut args = vec![
            "server".to_string(),
            format!("--id={id}"),
            format!("--peers={peers}"),
            format!("--listen={}", place.address),
            format!("--data-dir={}", place.data_dir.display()),
        ];
        args.extend(self.common_args.iter().cloned());
        Ok(args)
    }

    /// Creates the cluster of the first configuration on servers that hold nothing (at start,
    /// and after a reset); on servers that already form one, changes nothing.
    pub(super) async fn initialize(&self) -> anyhow::Result<crate::init::Outcome> {
        let first: Vec<(NodeId, String)> =
            self.first.iter().map(|(id, place)| (*id, place.address.clone())).collect();
        crate::init::initialize(&first, &self.token, INIT_WAIT).await
    }

    /// Why server `id` must not be restarted on its directory, if it must not: the directory
    /// lost the identity every server writes before anything else, so the server lost its log
    /// and its votes too. Started again it would only wait, never counted; the message says
    /// how to bring it back.
    fn lost_disk(&self, id: NodeId) -> Option<String> {
        let place = self.place(id)?;
        let identity = place.data_dir.join("identity");
        // A hosted node keeps (or does not keep) its own state: its disk is its business.
        let hosted = self.common_args.iter().any(|a| a.starts_with("--server-cmd="));
        if hosted || identity.exists() || self.common_args.iter().any(|a| a == "--bug=vote-on-empty-disk") {
            return None;
        }
        Some(format!(
            "node {id}'s data directory {} is empty: it lost its log and its votes, and the cluster must not count \
             it as the voter it was. Remove it and add a new server: `consenso client remove-server {id}`, then \
             `consenso client add-server`",
            place.data_dir.display()
        ))
    }

    /// Starts server `id` (again) on its data directory, with `faults` in force from its first
    /// moment (else the cluster's own).
    pub(super) fn start(self: &Arc<Self>, id: NodeId, faults: Option<FaultSettings>) -> anyhow::Result<u32> {
        let log = log_file(&self.logs, &format!("node-{id}"))?;
        let faults = faults.unwrap_or_else(|| self.initial_faults.clone());
        let mut command = match self.lan.lock().expect("lan lock").as_ref() {
            Some(lan) => lan.command(id, &self.exe),
            None => Command::new(&self.exe),
        };
        let mut child: Child = command
            .args(self.server_args(id)?)
            .arg(format!("--faults={}", encode(&faults)))
            .env("CONSENSO_TOKEN", &self.token)
            .env(crate::SUPERVISOR_PID_ENV, std::process::id().to_string())
            .process_group(0)
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start node {id}"))?;
        let pid = child.id().context("a just-started child has a pid")?;
        let generation = {
            let mut processes = self.processes.lock().expect("processes lock");
            let process = processes.entry(id).or_insert(Process {
                pid: None,
                state: ProcessState::Crashed,
                generation: 0,
            });
            process.generation += 1;
            process.pid = Some(pid);
            process.state = ProcessState::Up;
            process.generation
        };
        self.publish();
        let me = self.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            if me.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            let mut processes = me.processes.lock().expect("processes lock");
            if let Some(p) = processes.get_mut(&id) {
                if p.generation == generation {
                    p.state = ProcessState::Crashed;
                    p.pid = None;
                    tracing::info!("node {id} (pid {pid}) exited: {status:?}");
                }
            }
            drop(processes);
            me.publish();
        });
        Ok(pid)
    }

    pub(super) fn pid_of(&self, id: NodeId) -> Result<(Option<u32>, ProcessState), ApiError> {
        let processes = self.processes.lock().expect("processes lock");
        let p = processes
            .get(&id)
            .ok_or_else(|| ApiError::new(ErrorKind::BadRequest, format!("there is no node {id}")))?;
        Ok((p.pid, p.state))
    }

    pub(super) async fn act(
        self: &Arc<Self>,
        node: NodeId,
        action: ProcessAction,
        faults: Option<FaultSettings>,
    ) -> Result<String, ApiError> {
        let (pid, state) = self.pid_of(node)?;
        let signal = |sig: Signal| -> Result<(), ApiError> {
            let pid = pid
                .ok_or_else(|| ApiError::new(ErrorKind::BadRequest, format!("node {node} is not running")))?;
            kill(group(pid), sig)
                .map_err(|e| ApiError::new(ErrorKind::Unavailable, format!("cannot signal node {node}: {e}")))
        };
        match action {
            ProcessAction::Crash => {
                signal(Signal::SIGKILL)?;
                self.wait_for_exit(node).await;
                Ok(format!("node {node} killed (SIGKILL to pid {})", pid.unwrap_or(0)))
            }
            ProcessAction::Pause => {
                if state == ProcessState::Paused {
                    return Ok(format!("node {node} is already paused"));
                }
                signal(Signal::SIGSTOP)?;
                self.set_state(node, ProcessState::Paused);
                Ok(format!("node {node} paused (SIGSTOP to pid {})", pid.unwrap_or(0)))
            }
            ProcessAction::Resume => {
                signal(Signal::SIGCONT)?;
                self.set_state(node, ProcessState::Up);
                Ok(format!("node {node} resumed (SIGCONT to pid {})", pid.unwrap_or(0)))
            }
            ProcessAction::Restart => {
                if let Some(why) = self.lost_disk(node) {
                    return Err(ApiError::new(ErrorKind::WrongCluster, why));
                }
                if state != ProcessState::Crashed {
                    signal(Signal::SIGKILL)?;
                    self.wait_for_exit(node).await;
                }
                let pid = self.start(node, faults).map_err(|e| {
                    ApiError::new(ErrorKind::Unavailable, format!("cannot restart node {node}: {e:#}"))
                })?;
                Ok(format!("node {node} restarted (pid {pid}); it recovers from its data directory"))
            }
        }
    }

    /// Kills every server, empties its data directory and starts it again: a known start for
    /// a lesson.
    pub(super) async fn reset(self: &Arc<Self>, faults: Option<FaultSettings>) -> Result<String, ApiError> {
        // Servers added since go: the cluster starts over in its first configuration.
        let added: Vec<NodeId> = self
            .servers
            .lock()
            .expect("servers lock")
            .keys()
            .copied()
            .filter(|id| !self.first.contains_key(id))
            .collect();
        // A new cluster: the ids of servers added to the old one are free again.
        for id in added {
            self.stop_server(id).await?;
            let dir = self.data_dir.join(format!("node-{id}"));
            if dir.exists() {
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        self.retired.lock().expect("retired lock").clear();
        // Servers of the first configuration that were removed come back too.
        self.servers.lock().expect("servers lock").extend(self.first.clone());
        let ids: Vec<NodeId> = self.first.keys().copied().collect();
        let unavailable = |e: String| ApiError::new(ErrorKind::Unavailable, e);
        for id in &ids {
            // A removed server has no process to stop.
            let Ok((pid, state)) = self.pid_of(*id) else { continue };
            if let Some(pid) = pid.filter(|_| state != ProcessState::Crashed) {
                let _ = kill(group(pid), Signal::SIGCONT);
                let _ = kill(group(pid), Signal::SIGKILL);
                self.wait_for_exit(*id).await;
            }
        }
        self.epoch.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        for id in &ids {
            let dir = &self.place(*id).expect("first servers stay").data_dir;
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .map_err(|e| unavailable(format!("cannot empty {}: {e}", dir.display())))?;
            }
        }
        for id in &ids {
            self.start(*id, faults.clone())
                .map_err(|e| unavailable(format!("cannot start node {id}: {e:#}")))?;
        }
        match self.initialize().await.map_err(|e| unavailable(format!("{e:#}")))? {
            crate::init::Outcome::Created { cluster } => {
                Ok(format!("{} servers restarted on empty disks as the new cluster {cluster}", ids.len()))
            }
            crate::init::Outcome::Exists { cluster, .. } => Err(unavailable(format!(
                "the servers came back as members of cluster {cluster}: their disks were not emptied"
            ))),
        }
    }

    /// Starts a new server `id` on an empty disk, waiting to be added; returns its address.
    pub(super) fn start_server(self: &Arc<Self>, id: NodeId) -> Result<String, ApiError> {
        let bad = |e: String| ApiError::new(ErrorKind::BadRequest, e);
        let port = u64::from(self.port) + 10 + id;
        if id == 0 || port > u64::from(u16::MAX) {
            return Err(bad(format!("node {id} would listen on port {port}: pick a smaller id")));
        }
        let data_dir = self.data_dir.join(format!("node-{id}"));
        {
            let servers = self.servers.lock().expect("servers lock");
            if servers.contains_key(&id) {
                return Err(bad(format!("node {id} already exists")));
            }
            if data_dir.exists() || self.retired.lock().expect("retired lock").contains(&id) {
                // A server that left must not come back with its old state under the same id:
                // it could vote twice in a term. The operator picks a new id.
                return Err(bad(format!("node {id} was a member before: a new server needs a new id")));
            }
        }
        let address = match self.lan.lock().expect("lan lock").as_mut() {
            Some(lan) => {
                lan.add_host(id).map_err(|e| ApiError::new(ErrorKind::Unavailable, format!("{e:#}")))?;
                lan.address(id)
            }
            None => format!("{}:{port}", self.host),
        };
        self.servers
            .lock()
            .expect("servers lock")
            .insert(id, ServerPlace { address: address.clone(), data_dir });
        match self.start(id, None) {
            Ok(pid) => {
                tracing::info!("supervisor: node {id} started (pid {pid}) at {address}, waiting to join");
                Ok(address)
            }
            Err(e) => {
                self.servers.lock().expect("servers lock").remove(&id);
                Err(ApiError::new(ErrorKind::Unavailable, format!("cannot start node {id}: {e:#}")))
            }
        }
    }

    /// Stops server `id` for good (it left the configuration) and forgets it. Its data
    /// directory stays, for inspection, and keeps its id from being reused.
    pub(super) async fn stop_server(&self, id: NodeId) -> Result<String, ApiError> {
        let (pid, _) = self.pid_of(id)?;
        if let Some(pid) = pid {
            let _ = kill(group(pid), Signal::SIGCONT);
            let _ = kill(group(pid), Signal::SIGTERM);
            for _ in 0..50 {
                if self.pid_of(id).map(|(_, s)| s == ProcessState::Crashed).unwrap_or(true) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = kill(group(pid), Signal::SIGKILL);
            self.wait_for_exit(id).await;
        }
        self.processes.lock().expect("processes lock").remove(&id);
        self.servers.lock().expect("servers lock").remove(&id);
        if let Some(lan) = self.lan.lock().expect("lan lock").as_mut() {
            lan.remove_host(id);
        }
        self.retired.lock().expect("retired lock").insert(id);
        self.publish();
        Ok(format!("node {id} stopped and forgotten"))
    }

    pub(super) fn set_state(&self, node: NodeId, state: ProcessState) {
        if let Some(p) = self.processes.lock().expect("processes lock").get_mut(&node) {
            p.state = state;
        }
        self.publish();
    }

    pub(super) async fn wait_for_exit(&self, node: NodeId) {
        for _ in 0..100 {
            if self.pid_of(node).map(|(_, s)| s == ProcessState::Crashed).unwrap_or(true) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM to every server (SIGCONT first, a stopped process cannot exit), SIGKILL after 3 s.
    pub(super) async fn stop_all(&self) {
        let pids: Vec<u32> =
            self.processes.lock().expect("processes lock").values().filter_map(|p| p.pid).collect();
        for pid in &pids {
            let _ = kill(group(*pid), Signal::SIGCONT);
            let _ = kill(group(*pid), Signal::SIGTERM);
        }
        for _ in 0..30 {
            if pids.iter().all(|p| kill(group(*p), None).is_err()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for pid in pids {
            let _ = kill(group(pid), Signal::SIGKILL);
        }
    }
}

pub(super) async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Extension(gate): Extension<Arc<Gate>>,
    State(supervisor): State<Arc<Supervisor>>,
) -> Response {
    // Only proxies talk to the supervisor, never browsers.
    if !origin_allowed(&headers, &[]) {
        return (StatusCode::FORBIDDEN, "no browser may talk to the supervisor\n").into_response();
    }
    ws.on_upgrade(move |s| proxy_link(s, supervisor, gate))
}

/// A proxy's link: process commands in, results and process states out.
async fn proxy_link(mut socket: WebSocket, supervisor: Arc<Supervisor>, gate: Arc<Gate>) {
    let check = |hello: SupervisorInbound| match hello {
        SupervisorInbound::Hello { version, token } => {
            crate::ws::check_version(version, "supervisor")?;
            crate::ws::check_token(&token, &supervisor.token)
        }
        _ => Err(ApiError::new(ErrorKind::BadRequest, "the first frame must be a hello")),
    };
    if crate::ws::handshake(&mut socket, check, |error| SupervisorOutbound::Error { error }).await.is_none() {
        return;
    }
    gate.open();
    if !answer(&mut socket, &SupervisorOutbound::Welcome { version: PROTOCOL_VERSION }).await {
        return;
    }
    let mut updates = supervisor.updates.subscribe();
    let (processes, epoch) = updates.borrow_and_update().clone();
    let retired = supervisor.retired();
    if !answer(&mut socket, &SupervisorOutbound::Processes { processes, epoch, retired }).await {
        return;
    }
    loop {
        tokio::select! {
            changed = updates.changed() => {
                if changed.is_err() { return; }
                let (processes, epoch) = updates.borrow_and_update().clone();
                let retired = supervisor.retired();
                if !answer(&mut socket, &SupervisorOutbound::Processes { processes, epoch, retired }).await { return; }
            }
            frame = accept_frame::<SupervisorInbound>(&mut socket) => {
                let Some(frame) = frame else { return };
                let reply = match frame {
                    Ok(SupervisorInbound::Process { id, node, action, faults }) => {
                        tracing::info!("supervisor: {action:?} node {node}");
                        SupervisorOutbound::Done { id, result: supervisor.act(node, action, faults).await }
                    }
                    Ok(SupervisorInbound::Reset { id, faults }) => {
                        tracing::info!("supervisor: reset every server onto an empty disk");
                        SupervisorOutbound::Done { id, result: supervisor.reset(faults).await }
                    }
                    Ok(SupervisorInbound::StartServer { id, node }) => {
                        SupervisorOutbound::Done { id, result: supervisor.start_server(node) }
                    }
                    Ok(SupervisorInbound::StopServer { id, node }) => {
                        tracing::info!("supervisor: node {node} left the cluster; stopping it");
                        SupervisorOutbound::Done { id, result: supervisor.stop_server(node).await }
                    }
                    Ok(SupervisorInbound::Hello { .. }) => SupervisorOutbound::Error {
                        error: ApiError::new(ErrorKind::BadRequest, "hello was already received"),
                    },
                    Err(error) => SupervisorOutbound::Error { error },
                };
                if !answer(&mut socket, &reply).await { return; }
            }
        }
    }
}
