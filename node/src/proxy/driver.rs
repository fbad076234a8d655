//! The proxy core (`shared::proxy::Proxy`) as a task, and what carries out its
//! `Ready`: frames to server links, answers to connections, frames to every page, requests to
//! the supervisor, links opened and closed.
//!
//! The core is a single-threaded state machine: it runs as a local task on the proxy's one
//! thread, and every other task talks to it through `CoreHandle` (a channel in, replies by
//! oneshot) — on the same thread, so that no request waits for another thread to wake. Its
//! clock is the time since the proxy started.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::protocol::{
    ClientFrame, ClusterStatus, Picture, ProxyFrame, ServerInbound, ServerOutbound, SupervisorInbound,
    SupervisorOutbound, encode,
};
use shared::proxy::{ConnId, LinkChange, Proxy, Ready, Settings};
use shared::raft::{Millis, NodeId};
use tokio::sync::{broadcast, mpsc, oneshot};

/// What goes out on a client connection.
pub enum ToConnection {
    /// The answer to the request `id` (it no longer counts as in flight).
    Answer { id: Option<u64>, text: Arc<str> },
    /// Any other frame for it.
    Frame(Arc<str>),
    /// Close it: a viewer sent a frame larger than it may.
    CloseTooBig,
}

/// What other tasks tell the core.
pub enum Input {
    /// A connection was greeted: its welcome comes back, with the page stream when it subscribes
    /// (taken in the same step, so that no frame falls between the two).
    Opened {
        conn: ConnId,
        admin: bool,
        subscribe: bool,
        outbox: mpsc::UnboundedSender<ToConnection>,
        reply: oneshot::Sender<(ProxyFrame, Option<broadcast::Receiver<Arc<str>>>)>,
    },
    Closed {
        conn: ConnId,
    },
    Client {
        conn: ConnId,
        frame: ClientFrame,
    },
    Link {
        node: NodeId,
        up: bool,
    },
    Server {
        node: NodeId,
        frame: ServerOutbound,
    },
    SupervisorLink {
        up: bool,
    },
    Supervisor {
        frame: SupervisorOutbound,
    },
    Status {
        reply: oneshot::Sender<ClusterStatus>,
    },
    Picture {
        reply: oneshot::Sender<Picture>,
    },
    /// The picture now and every page frame after it (a recording starts).
    Watch {
        reply: oneshot::Sender<(Picture, broadcast::Receiver<Arc<str>>)>,
    },
    Recording {
        file: Option<String>,
    },
}

/// How tasks reach the core.
#[derive(Clone)]
pub struct CoreHandle {
    inputs: mpsc::UnboundedSender<Input>,
}

impl CoreHandle {
    pub fn send(&self, input: Input) {
        // The core lives as long as the process; a send after it ended goes nowhere.
        let _ = self.inputs.send(input);
    }

    pub async fn status(&self) -> Option<ClusterStatus> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Status { reply });
        answer.await.ok()
    }

    pub async fn picture(&self) -> Option<Picture> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Picture { reply });
        answer.await.ok()
    }

    pub async fn watch(&self) -> Option<(Picture, broadcast::Receiver<Arc<str>>)> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Watch { reply });
        answer.await.ok()
    }
}

/// Where the core's outputs go.
pub struct Outputs {
    /// Frames for every subscribed page (and the recorder).
    pub observers: broadcast::Sender<Arc<str>>,
    /// Opens a link to a server; returns the sender of its frames (dropping it closes the link).
    pub open_link: Box<dyn Fn(NodeId, String) -> mpsc::UnboundedSender<ServerInbound> + Send>,
    /// Frames for the supervisor, when there is one.
    pub supervisor: Option<mpsc::UnboundedSender<SupervisorInbound>>,
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
}

/// Starts the core as a task of this thread (inside a `LocalSet`); `ready` gets its handle
/// before it produces anything (the links it opens need it).
pub fn start(settings: Settings, outputs: Outputs, ready: impl FnOnce(&CoreHandle)) -> CoreHandle {
    let (inputs, rx) = mpsc::unbounded_channel();
    let handle = CoreHandle { inputs };
    ready(&handle);
    tokio::task::spawn_local(run(settings, outputs, rx));
    handle
}

struct Driver {
    proxy: Proxy,
    outputs: Outputs,
    links: BTreeMap<NodeId, mpsc::UnboundedSender<ServerInbound>>,
    conns: HashMap<ConnId, mpsc::UnboundedSender<ToConnection>>,
    started: Instant,
}

async fn run(settings: Settings, outputs: Outputs, mut inputs: mpsc::UnboundedReceiver<Input>) {
    let started = Instant::now();
    let proxy = Proxy::new(settings, 0);
    let mut driver = Driver { proxy, outputs, links: BTreeMap::new(), conns: HashMap::new(), started };
    let mut wake_at: Option<Millis> = None;
    loop {
        driver.carry_out(&mut wake_at);
        let sleep = wake_at.map(|at| driver.started + Duration::from_millis(at));
        let input = match sleep {
            Some(deadline) => tokio::select! {
                input = inputs.recv() => input,
                () = tokio::time::sleep_until(deadline.into()) => {
                    let now = driver.now();
                    driver.proxy.tick(now);
                    continue;
                }
            },
            None => inputs.recv().await,
        };
        let Some(input) = input else { return };
        driver.take(input);
    }
}

impl Driver {
    fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    fn take(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Opened { conn, admin, subscribe, outbox, reply } => {
                let welcome = self.proxy.opened(now, conn, admin, subscribe);
                let stream = subscribe.then(|| self.outputs.observers.subscribe());
                self.conns.insert(conn, outbox);
                let _ = reply.send((welcome, stream));
            }
            Input::Closed { conn } => {
                self.conns.remove(&conn);
                self.proxy.closed(now, conn);
            }
            Input::Client { conn, frame } => self.proxy.client(now, conn, frame),
            Input::Link { node, up } => self.proxy.link(now, node, up),
            Input::Server { node, frame } => self.proxy.server(now, node, frame),
            Input::SupervisorLink { up } => self.proxy.supervisor_link(now, up),
            Input::Supervisor { frame } => self.proxy.supervisor(now, frame),
            Input::Status { reply } => {
                let _ = reply.send(self.proxy.status());
            }
            Input::Picture { reply } => {
                let _ = reply.send(self.proxy.picture());
            }
            Input::Watch { reply } => {
                let _ = reply.send((self.proxy.picture(), self.outputs.observers.subscribe()));
            }
            Input::Recording { file } => self.proxy.set_recording(file),
        }
    }

    /// Does what the core asks, and notes when it wants to be woken.
    fn carry_out(&mut self, wake_at: &mut Option<Millis>) {
        let ready: Ready = self.proxy.ready();
        *wake_at = ready.wake_at;
        for change in ready.links {
            match change {
                LinkChange::Add { node, address } => {
                    tracing::info!("node {node} at {address}: connecting");
                    let link = (self.outputs.open_link)(node, address);
                    self.links.insert(node, link);
                }
                LinkChange::Remove { node } => {
                    tracing::info!("node {node} left the cluster: its link closes");
                    self.links.remove(&node);
                }
            }
        }
        for (node, frame) in ready.to_servers {
            if let Some(link) = self.links.get(&node) {
                let _ = link.send(frame);
            }
        }
        for (conn, frame) in ready.to_clients {
            if let ProxyFrame::Error { error, .. } = &frame {
                self.outputs.metrics.error(error.kind);
            }
            if let Some(outbox) = self.conns.get(&conn) {
                let id = match &frame {
                    ProxyFrame::Done { id, .. }
                    | ProxyFrame::Registered { id, .. }
                    | ProxyFrame::AdminDone { id, .. } => Some(*id),
                    ProxyFrame::Error { id, .. } | ProxyFrame::Status { id, .. } => *id,
                    _ => None,
                };
                let _ = outbox.send(ToConnection::Answer { id, text: encode(&frame).into() });
            }
        }
        if self.outputs.observers.receiver_count() > 0 {
            for frame in ready.publish {
                let _ = self.outputs.observers.send(encode(&frame).into());
            }
        }
        if let Some(supervisor) = &self.outputs.supervisor {
            for frame in ready.to_supervisor {
                let _ = supervisor.send(frame);
            }
        }
        for line in ready.log {
            if line.starts_with("invariant monitor") {
                tracing::error!("{line}");
            } else {
                tracing::info!("{line}");
            }
        }
    }
}
