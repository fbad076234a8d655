//! The proxy's links: one to each server (requests out; replies, events, status and log in)
//! and one to the supervisor when there is one (process control). Each link reconnects by
//! itself; requests in flight on a link that drops are failed at once so the router retries.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::event::LogMirror;
use shared::protocol::{
    ApiError, Caller, ErrorKind, FaultSettings, PROTOCOL_VERSION, ProcessAction, ProcessInfo, ProxyFrame,
    ServerInbound, ServerOutbound, ServerStatus, SupervisorInbound, SupervisorOutbound, TimeCommand,
    TimeReport,
};
use shared::raft::NodeId;
use shared::replica::{Reply, Request};
use tokio::sync::{mpsc, oneshot};

use super::Hub;
use crate::ws;

/// A status older than this means the server is not answering (crashed, paused, cut off).
pub const STALE_AFTER: Duration = Duration::from_millis(1_200);
/// Patience for a server's answer to a time command.
const TIME_PATIENCE: Duration = Duration::from_secs(3);

/// What the proxy knows about one server.
pub struct Backend {
    pub id: NodeId,
    pub address: String,
    outbox: mpsc::UnboundedSender<ServerInbound>,
    state: Mutex<BackendState>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    pending_time: Mutex<HashMap<u64, oneshot::Sender<TimeReport>>>,
    /// The server left the cluster: its link stops reconnecting, and a live one ends.
    closed: std::sync::atomic::AtomicBool,
    closing: tokio::sync::Notify,
}

#[derive(Default)]
struct BackendState {
    connected: bool,
    status: Option<(ServerStatus, Instant)>,
    log: LogMirror,
    /// The number of the last event frame received (0: none since the log).
    events_seq: u64,
    /// Messages the server had sent at its last status, and its rate since the one before.
    sent: Option<(u64, Instant)>,
    message_rate: f64,
    /// Faults this proxy asked for; applied again when the server comes back.
    desired_faults: Option<FaultSettings>,
}

impl Backend {
    pub fn new(id: NodeId, address: String) -> (Arc<Backend>, mpsc::UnboundedReceiver<ServerInbound>) {
        let (outbox, rx) = mpsc::unbounded_channel();
        let backend = Backend {
            id,
            address,
            outbox,
            state: Mutex::new(BackendState::default()),
            pending: Mutex::new(HashMap::new()),
            pending_time: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
            closing: tokio::sync::Notify::new(),
        };
        (Arc::new(backend), rx)
    }

    /// The server left the cluster: stop reconnecting to it.
    pub fn close(&self) {
        self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.closing.notify_waiters();
        self.fail_pending();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, BackendState> {
        self.state.lock().expect("backend state lock")
    }

    /// Reads a recent status (one that is not stale and comes over a live link), without
    /// copying more of it than `read` takes: the router asks on every request.
    pub fn fresh<T>(&self, read: impl FnOnce(&ServerStatus) -> T) -> Option<T> {
        let state = self.state();
        match &state.status {
            Some((status, at)) if state.connected && at.elapsed() < STALE_AFTER => Some(read(status)),
            _ => None,
        }
    }

    pub fn last_status(&self) -> Option<ServerStatus> {
        self.state().status.as_ref().map(|(s, _)| s.clone())
    }

    pub fn log(&self) -> LogMirror {
        self.state().log.clone()
    }

    pub fn is_connected(&self) -> bool {
        self.state().connected
    }

    /// Raft messages this server sends per second (all of them, not the sample observers get).
    pub fn message_rate(&self) -> f64 {
        let state = self.state();
        match &state.status {
            Some((_, at)) if state.connected && at.elapsed() < STALE_AFTER => state.message_rate,
            _ => 0.0,
        }
    }

    /// Sends a request; the receiver yields the reply, or an error if the link drops first (at
    /// once if it is down: waiting for a dead server would only delay the retry elsewhere).
    pub fn request(&self, id: u64, request: Request) -> oneshot::Receiver<Reply> {
        let (tx, rx) = oneshot::channel();
        if !self.is_connected() {
            return rx;
        }
        self.pending.lock().expect("pending lock").insert(id, tx);
        if self.outbox.send(ServerInbound::Request { id, request }).is_err() {
            self.pending.lock().expect("pending lock").remove(&id);
        }
        rx
    }

    pub fn forget(&self, id: u64) {
        self.pending.lock().expect("pending lock").remove(&id);
    }

    pub fn send(&self, frame: ServerInbound) {
        let _ = self.outbox.send(frame);
    }

    /// A time command; the server's report once it is done, or `None` if it does not answer.
    pub async fn time(&self, id: u64, command: TimeCommand) -> Option<TimeReport> {
        if !self.is_connected() {
            return None;
        }
        let (tx, rx) = oneshot::channel();
        self.pending_time.lock().expect("pending lock").insert(id, tx);
        self.send(ServerInbound::Time { id, command });
        match tokio::time::timeout(TIME_PATIENCE, rx).await {
            Ok(Ok(report)) => Some(report),
            _ => {
                self.pending_time.lock().expect("pending lock").remove(&id);
                None
            }
        }
    }

    /// Forgets what the server said (the cluster was reset: its old status and log are void).
    pub fn forget_state(&self) {
        let mut state = self.state();
        state.status = None;
        state.log = LogMirror::default();
        state.events_seq = 0;
        state.sent = None;
        state.message_rate = 0.0;
    }

    /// The faults to build on when changing this server's settings.
    pub fn current_faults(&self, time_scale: f64) -> FaultSettings {
        let state = self.state();
        state
            .desired_faults
            .clone()
            .or_else(|| state.status.as_ref().map(|(s, _)| s.faults.clone()))
            .unwrap_or(FaultSettings { time_scale, ..FaultSettings::normal() })
    }

    pub fn set_faults(&self, faults: FaultSettings) {
        self.state().desired_faults = Some(faults.clone());
        self.send(ServerInbound::Faults { faults });
    }

    fn fail_pending(&self) {
        // Dropping the senders wakes every waiting request with an error.
        self.pending.lock().expect("pending lock").clear();
        self.pending_time.lock().expect("pending lock").clear();
    }
}

/// Keeps the link to one server alive for the life of the proxy.
pub async fn run(hub: Arc<Hub>, backend: Arc<Backend>, mut outbox: mpsc::UnboundedReceiver<ServerInbound>) {
    let url = match crate::addr::ws_url(&backend.address) {
        Ok(url) => url,
        Err(e) => return tracing::error!("node {}: {e}", backend.id),
    };
    let mut backoff = ws::Backoff::new(Duration::from_millis(250));
    let mut announced = false;
    while !backend.is_closed() {
        match connect_server(&hub.token, &url).await {
            Ok(mut stream) => {
                tracing::info!("connected to node {} at {}", backend.id, backend.address);
                announced = false;
                backoff.reset();
                {
                    let mut state = backend.state();
                    state.connected = true;
                    state.events_seq = 0;
                }
                let desired = backend.state().desired_faults.clone();
                if let Some(faults) = desired {
                    let _ = ws::send(&mut stream, &ServerInbound::Faults { faults }).await;
                }
                if let Err(e) = serve(&hub, &backend, &mut stream, &mut outbox).await {
                    tracing::info!("lost node {}: {e:#}", backend.id);
                }
                backend.state().connected = false;
                backend.fail_pending();
            }
            Err(e) => {
                if !announced {
                    tracing::info!("cannot reach node {} at {}: {e:#}", backend.id, backend.address);
                    announced = true;
                }
            }
        }
        // Requests queued for a server that is gone would only time out later: fail them now.
        while outbox.try_recv().is_ok() {}
        backend.fail_pending();
        backoff.wait().await;
    }
}

async fn connect_server(token: &str, url: &str) -> anyhow::Result<ws::Stream> {
    let hello =
        ServerInbound::Hello { version: PROTOCOL_VERSION, token: token.to_string(), caller: Caller::Proxy };
    let welcome = |frame: ServerOutbound| match frame {
        ServerOutbound::Welcome { .. } => Ok(()),
        ServerOutbound::Error { error } => Err(Some(error)),
        _ => Err(None),
    };
    let (mut stream, ()) = ws::open(url, &hello, welcome).await?;
    ws::send(&mut stream, &ServerInbound::Subscribe).await?;
    Ok(stream)
}

async fn serve(
    hub: &Hub,
    backend: &Backend,
    stream: &mut ws::Stream,
    outbox: &mut mpsc::UnboundedReceiver<ServerInbound>,
) -> anyhow::Result<()> {
    loop {
        if backend.is_closed() {
            return Ok(());
        }
        tokio::select! {
            () = backend.closing.notified() => return Ok(()),
            frame = outbox.recv() => match frame {
                Some(frame) => ws::send(stream, &frame).await?,
                None => return Ok(()),
            },
            incoming = ws::recv::<ServerOutbound>(stream) => match incoming? {
                None => anyhow::bail!("closed"),
                Some(Ok(frame)) => handle(hub, backend, frame),
                Some(Err(e)) => tracing::warn!("node {} sent an unreadable frame: {e}", backend.id),
            },
        }
    }
}

fn handle(hub: &Hub, backend: &Backend, frame: ServerOutbound) {
    match frame {
        ServerOutbound::Reply { id, reply } => {
            if let Some(tx) = backend.pending.lock().expect("pending lock").remove(&id) {
                let _ = tx.send(reply);
            }
        }
        ServerOutbound::Time { id, report } => {
            if let Some(tx) = backend.pending_time.lock().expect("pending lock").remove(&id) {
                let _ = tx.send(report);
            }
        }
        ServerOutbound::Events { events, seq } => {
            let gap = {
                let mut state = backend.state();
                let gap = state.events_seq != 0 && seq != state.events_seq + 1;
                state.events_seq = seq;
                for observed in &events {
                    state.log.apply(&observed.event);
                }
                gap
            };
            hub.watch(backend.id, &events, gap);
            hub.fanout.offer(&events);
        }
        ServerOutbound::Status { status } => {
            let stopped = status.clock.stopped;
            {
                let mut state = backend.state();
                let (sent, now) = (status.clock.messages_sent, Instant::now());
                if let Some((before, at)) = state.sent {
                    let dt = now.duration_since(at).as_secs_f64();
                    if dt > 0.05 {
                        state.message_rate = sent.saturating_sub(before) as f64 / dt;
                        state.sent = Some((sent, now));
                    }
                } else {
                    state.sent = Some((sent, now));
                }
                state.status = Some((*status, now));
            }
            hub.time.set_stopped(
                stopped || hub.backends.values().any(|b| b.fresh(|s| s.clock.stopped).unwrap_or(false)),
            );
        }
        ServerOutbound::Log { snapshot_index, snapshot_term, skipped, entries } => {
            let mirror = LogMirror { snapshot_index, snapshot_term, skipped, entries: entries.clone() };
            {
                let mut state = backend.state();
                state.log = mirror.clone();
                state.events_seq = 0;
            }
            hub.monitor().log(backend.id, mirror);
            hub.publish(ProxyFrame::Log {
                node: backend.id,
                snapshot_index,
                snapshot_term,
                skipped,
                entries,
            });
        }
        ServerOutbound::Error { error } => tracing::warn!("node {} reports: {error}", backend.id),
        // A proxy never asks for a bootstrap (only `consenso init` does).
        ServerOutbound::Welcome { .. } | ServerOutbound::Done { .. } => {}
    }
}

/// The supervisor, if `consenso cluster` runs this proxy: process control and process states.
pub struct Supervisor {
    address: String,
    outbox: mpsc::UnboundedSender<SupervisorInbound>,
    processes: Mutex<BTreeMap<NodeId, ProcessInfo>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<String, ApiError>>>>,
    connected: Mutex<bool>,
    /// The supervisor's reset count, as last seen.
    epoch: Mutex<Option<u64>>,
}

impl Supervisor {
    pub fn new(address: String) -> (Arc<Supervisor>, mpsc::UnboundedReceiver<SupervisorInbound>) {
        let (outbox, rx) = mpsc::unbounded_channel();
        let s = Supervisor {
            address,
            outbox,
            processes: Mutex::new(BTreeMap::new()),
            pending: Mutex::new(HashMap::new()),
            connected: Mutex::new(false),
            epoch: Mutex::new(None),
        };
        (Arc::new(s), rx)
    }

    pub fn process(&self, node: NodeId) -> Option<ProcessInfo> {
        self.processes.lock().expect("processes lock").get(&node).cloned()
    }

    pub fn is_connected(&self) -> bool {
        *self.connected.lock().expect("connected lock")
    }

    pub async fn act(
        &self,
        id: u64,
        node: NodeId,
        action: ProcessAction,
        faults: Option<FaultSettings>,
    ) -> Result<String, ApiError> {
        self.ask_with(id, SupervisorInbound::Process { id, node, action, faults }).await
    }

    /// Restarts every server on an empty disk with `faults`.
    pub async fn reset(&self, id: u64, faults: Option<FaultSettings>) -> Result<String, ApiError> {
        self.ask_with(id, SupervisorInbound::Reset { id, faults }).await
    }

    /// Sends a request (its `id` is the frame's own) and waits for the supervisor's answer.
    pub async fn ask(&self, frame: SupervisorInbound) -> Result<String, ApiError> {
        let id = match &frame {
            SupervisorInbound::Process { id, .. }
            | SupervisorInbound::Reset { id, .. }
            | SupervisorInbound::StartServer { id, .. }
            | SupervisorInbound::StopServer { id, .. } => *id,
            SupervisorInbound::Hello { .. } => 0,
        };
        self.ask_with(id, frame).await
    }

    async fn ask_with(&self, id: u64, frame: SupervisorInbound) -> Result<String, ApiError> {
        if !self.is_connected() {
            return Err(ApiError::new(
                ErrorKind::Unavailable,
                format!("the supervisor at {} is not reachable", self.address),
            ));
        }
        let (tx, rx) = oneshot::channel();
        self.pending.lock().expect("pending lock").insert(id, tx);
        let _ = self.outbox.send(frame);
        match tokio::time::timeout(Duration::from_secs(20), rx).await {
            Ok(Ok(result)) => result,
            _ => {
                self.pending.lock().expect("pending lock").remove(&id);
                Err(ApiError::new(ErrorKind::Timeout, "the supervisor did not answer"))
            }
        }
    }
}

pub async fn run_supervisor(
    hub: Arc<Hub>,
    supervisor: Arc<Supervisor>,
    mut outbox: mpsc::UnboundedReceiver<SupervisorInbound>,
) {
    let token = hub.token.clone();
    let url = match crate::addr::ws_url(&supervisor.address) {
        Ok(url) => url,
        Err(e) => return tracing::error!("supervisor: {e}"),
    };
    let mut backoff = ws::Backoff::new(Duration::from_secs(1));
    loop {
        let hello = SupervisorInbound::Hello { version: PROTOCOL_VERSION, token: token.clone() };
        let welcome = |frame: SupervisorOutbound| match frame {
            SupervisorOutbound::Welcome { .. } => Ok(()),
            SupervisorOutbound::Error { error } => Err(Some(error)),
            _ => Err(None),
        };
        let opened = ws::open(&url, &hello, welcome).await;
        if let Err(ws::ConnectError::Refused(error)) = &opened {
            tracing::error!("the supervisor refused this proxy: {error}");
        }
        if let Ok((mut stream, ())) = opened {
            backoff.reset();
            *supervisor.connected.lock().expect("connected lock") = true;
            let result: anyhow::Result<()> = async {
                loop {
                    tokio::select! {
                        frame = outbox.recv() => match frame {
                            Some(frame) => ws::send(&mut stream, &frame).await?,
                            None => return Ok(()),
                        },
                        incoming = ws::recv::<SupervisorOutbound>(&mut stream) => match incoming? {
                            None => anyhow::bail!("closed"),
                            Some(Ok(SupervisorOutbound::Processes { processes, epoch })) => {
                                // Servers started or stopped since (by any proxy): talk to the
                                // ones that joined, stop talking to the ones that left.
                                for p in &processes {
                                    if let Some(address) = &p.address {
                                        hub.add_server(p.node, address.clone());
                                    }
                                }
                                // Only servers the supervisor ran: one added by --address is not
                                // its business.
                                let before: Vec<NodeId> =
                                    supervisor.processes.lock().expect("processes lock").keys().copied().collect();
                                for id in before {
                                    if !processes.iter().any(|p| p.node == id) {
                                        hub.remove_server(id);
                                    }
                                }
                                {
                                    let mut map = supervisor.processes.lock().expect("processes lock");
                                    map.clear();
                                    map.extend(processes.into_iter().map(|p| (p.node, p)));
                                }
                                let before = supervisor.epoch.lock().expect("epoch lock").replace(epoch);
                                if before.is_some_and(|b| b != epoch) {
                                    // Reset by us or by another proxy: what we knew is void.
                                    hub.forget_cluster();
                                }
                            }
                            Some(Ok(SupervisorOutbound::Done { id, result })) => {
                                if let Some(tx) = supervisor.pending.lock().expect("pending lock").remove(&id) {
                                    let _ = tx.send(result);
                                }
                            }
                            Some(Ok(SupervisorOutbound::Error { error })) => anyhow::bail!("supervisor: {error}"),
                            Some(Ok(SupervisorOutbound::Welcome { .. })) => {}
                            Some(Err(e)) => tracing::warn!("supervisor sent an unreadable frame: {e}"),
                        },
                    }
                }
            }
            .await;
            if let Err(e) = result {
                tracing::info!("lost the supervisor: {e:#}");
            }
            *supervisor.connected.lock().expect("connected lock") = false;
            supervisor.pending.lock().expect("pending lock").clear();
        }
        backoff.wait().await;
    }
}
