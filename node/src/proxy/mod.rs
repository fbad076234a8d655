//! `consenso proxy`: the cluster's front door, stateless, and there may be several.
//!
//! On one port it serves the built page over HTTP and a WebSocket endpoint (`/ws`) for the CLI
//! client, `consenso bench` and pages. It keeps a link to every server (`backend`), routes
//! writes to the leader and reads to followers with retries that reuse the write's session
//! (`routing`), turns admin commands into fault settings or supervisor actions (`admin`),
//! stops, steps and starts the cluster's time (`time`), runs lessons (`lessons`), watches
//! Raft's safety properties live (`shared::check::Monitor`), and fans the servers' events out
//! to every page (`session`, `status`, `fanout`).

mod admin;
mod backend;
mod backends;
mod downloads;
mod fanout;
mod lessons;
mod membership;
mod pages;
mod recorder;
mod routing;
mod session;
mod status;
mod time;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::{Mutex, MutexGuard};

use anyhow::Context;
use axum::routing::get;
use shared::check::Monitor;
use shared::event::{Event, Observed};
use shared::protocol::{ProxyFrame, encode};
use shared::raft::NodeId;
use tokio::sync::broadcast;

use backend::{Backend, Supervisor};

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Address to serve the page and the WebSocket endpoint on
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The cluster's servers: 1=127.0.0.1:8091,2=...
    #[arg(long)]
    nodes: String,
    /// Shared secret: needed for admin commands and to talk to servers
    #[arg(long, env = "CONSENSO_TOKEN", hide_env_values = true)]
    token: String,
    /// The supervisor (`consenso cluster`) that can crash, pause and restart processes
    #[arg(long)]
    supervisor: Option<String>,
    /// Every proxy of the cluster (host:port,...), told to clients for failover
    #[arg(long)]
    proxies: Option<String>,
    /// Directory with the built page (default: ./dist, or dist/ of the source tree)
    #[arg(long)]
    web_dir: Option<PathBuf>,
    /// Let clients without the token write (by default only reads are open to everyone)
    #[arg(long)]
    open_writes: bool,
    /// Another origin whose pages may open the WebSocket (repeatable), e.g. https://class.example.edu
    #[arg(long = "allow-origin")]
    allow_origins: Vec<String>,
    /// Record everything the page draws to FILE (JSON lines; `consenso diagram FILE` draws it)
    #[arg(long)]
    record: Option<PathBuf>,
    /// Keep the last N minutes in memory, for `GET /recording?minutes=N` and the page's
    /// download button (0: keep nothing)
    #[arg(long, default_value_t = 10)]
    recent_minutes: u64,
}

/// Everything a proxy's tasks share.
pub struct Hub {
    pub token: String,
    pub proxies: Vec<String>,
    pub backends: backends::Backends,
    pub supervisor: Option<Arc<Supervisor>>,
    /// Encoded frames for every subscribed page.
    pub observers: broadcast::Sender<Arc<str>>,
    pub stats: status::StatsWindow,
    pub fanout: fanout::Fanout,
    pub time: time::TimeGate,
    pub lessons: lessons::Lessons,
    pub metrics: crate::metrics::ProxyMetrics,
    /// Whether clients without the token may write (the lecturer can open writes to a class).
    pub open_writes: AtomicBool,
    /// Clients without the token connected now (at most `listener::MAX_VIEWERS`).
    pub viewers: std::sync::atomic::AtomicUsize,
    /// Bytes of viewers' requests in flight (`session::VIEWER_BYTES_IN_FLIGHT`).
    pub viewer_bytes: Arc<tokio::sync::Semaphore>,
    /// Origins besides the proxy's own whose pages may connect.
    pub allowed_origins: Vec<String>,
    pub recorder: recorder::Recorder,
    monitor: Mutex<Monitor>,
    next_id: AtomicU64,
    read_turn: AtomicUsize,
}

impl Hub {
    /// Sends a frame to every subscribed page; encodes nothing when nobody watches.
    pub fn publish(&self, frame: ProxyFrame) {
        if self.observers.receiver_count() > 0 {
            let _ = self.observers.send(encode(&frame).into());
        }
    }

    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A rotating counter for spreading reads over followers.
    pub fn next_turn(&self) -> usize {
        self.read_turn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn monitor(&self) -> MutexGuard<'_, Monitor> {
        self.monitor.lock().expect("monitor lock")
    }

    /// Feeds a server's events to the invariant monitor and raises what it finds.
    pub fn watch(&self, node: NodeId, events: &[Observed], gap: bool) {
        let alarms = {
            let mut monitor = self.monitor();
            if gap {
                monitor.gap(node);
            }
            events.iter().flat_map(|observed| monitor.observe(observed)).collect::<Vec<_>>()
        };
        self.raise(alarms);
    }

    /// Tells pages about new alarms (as events from "node 0", the monitor) and logs them.
    pub fn raise(&self, alarms: Vec<shared::event::Alarm>) {
        for alarm in alarms {
            tracing::error!("invariant monitor: {} broken: {}", alarm.property, alarm.detail);
            self.fanout.push(Observed { node: 0, at: 0, event: Event::Alarm { alarm } });
        }
    }

    /// Starts talking to a server that joined (the supervisor started it); false if known.
    pub fn add_server(self: &Arc<Self>, id: NodeId, address: String) -> bool {
        let (backend, outbox) = Backend::new(id, address);
        if !self.backends.insert(backend.clone()) {
            return false;
        }
        tracing::info!("node {id} joined at {}: connecting", backend.address);
        tokio::spawn(backend::run(self.clone(), backend, outbox));
        true
    }

    /// Stops talking to a server that left the cluster.
    pub fn remove_server(&self, id: NodeId) {
        if let Some(backend) = self.backends.remove(id) {
            tracing::info!("node {id} left the cluster");
            backend.close();
        }
    }

    /// The cluster was reset onto empty disks: forget its logs, statuses and alarms.
    pub fn forget_cluster(&self) {
        self.monitor().reset();
        for backend in self.backends.values() {
            backend.forget_state();
        }
        self.fanout.forget();
    }
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let nodes = crate::addr::node_list(&args.nodes)?;
    if args.token.is_empty() {
        anyhow::bail!("--token (or CONSENSO_TOKEN) must not be empty");
    }
    let own = args.listen.to_string();
    let proxies = match &args.proxies {
        Some(list) => list.split(',').map(crate::addr::host_port).collect::<anyhow::Result<Vec<_>>>()?,
        None => vec![own.clone()],
    };
    let web_dir = find_web_dir(args.web_dir.clone());
    match &web_dir {
        Some(dir) => tracing::info!("serving the page from {}", dir.display()),
        None => tracing::warn!("the page is not built (no dist/index.html): serving instructions instead"),
    }
    let runtime = crate::runtime()?;
    runtime.block_on(async move {
        let (observers, _) = broadcast::channel(4096);
        let mut links = Vec::new();
        for (id, address) in &nodes {
            links.push(Backend::new(*id, address.clone()));
        }
        let backends = links.iter().map(|(backend, _)| backend.clone()).collect();
        let (supervisor, supervisor_outbox) = match &args.supervisor {
            Some(address) => {
                let (s, rx) = Supervisor::new(address.clone());
                (Some(s), Some(rx))
            }
            None => (None, None),
        };
        let hub = Arc::new(Hub {
            token: args.token.clone(),
            proxies: proxies.clone(),
            backends,
            supervisor: supervisor.clone(),
            observers,
            stats: status::StatsWindow::default(),
            fanout: fanout::Fanout::default(),
            time: time::TimeGate::default(),
            lessons: lessons::Lessons::default(),
            open_writes: AtomicBool::new(args.open_writes),
            viewers: std::sync::atomic::AtomicUsize::new(0),
            viewer_bytes: Arc::new(tokio::sync::Semaphore::new(session::VIEWER_BYTES_IN_FLIGHT)),
            metrics: crate::metrics::ProxyMetrics::default(),
            allowed_origins: [args.allow_origins.clone(), sibling_origins(&proxies)].concat(),
            recorder: recorder::Recorder::new(own.clone(), args.recent_minutes),
            monitor: Mutex::new(Monitor::new()),
            next_id: AtomicU64::new(1),
            read_turn: AtomicUsize::new(0),
        });
        for (backend, outbox) in links {
            tokio::spawn(backend::run(hub.clone(), backend, outbox));
        }
        if let (Some(s), Some(rx)) = (supervisor, supervisor_outbox) {
            tokio::spawn(backend::run_supervisor(hub.clone(), s, rx));
        }
        tokio::spawn(recorder::run(hub.clone()));
        if let Some(path) = &args.record {
            recorder::start_file(&hub, path.clone())?;
        }
        tokio::spawn(status::publish_periodically(hub.clone()));
        tokio::spawn(flush_events(hub.clone()));

        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let app = axum::Router::new()
            .route("/ws", get(session::upgrade))
            .route("/health", get(|| async { "ok\n" }))
            .route("/recording", get(downloads::recording))
            .route("/diagram", get(downloads::diagram))
            .route("/metrics", {
                let own = own.clone();
                get(move |axum::extract::State(hub): axum::extract::State<Arc<Hub>>| async move {
                    crate::metrics::response(metrics_text(&hub, &own))
                })
            })
            .with_state(hub.clone());
        let app = match web_dir {
            Some(dir) => app.merge(pages::routes(&dir)),
            None => app.route("/", get(|| async { axum::response::Html(NOT_BUILT) })),
        };
        tracing::info!("proxy listening on http://{own}/ (nodes: {})", args.nodes);
        crate::listener::serve(listener, app, crate::shutdown_signal()).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    })
}

/// Sends the events gathered for pages, one frame per display frame (~60 per second) — or, in
/// slow motion or with time stopped, within a few milliseconds, so that a page draws each
/// message leaving when it leaves (events are few then).
async fn flush_events(hub: Arc<Hub>) {
    const FRAME: Duration = Duration::from_millis(16);
    const PROMPT: Duration = Duration::from_millis(3);
    loop {
        let slow = hub.time.is_stopped() || status::time_scale(&hub) >= 2.0;
        tokio::time::sleep(if slow { PROMPT } else { FRAME }).await;
        let events = hub.fanout.take();
        if !events.is_empty() {
            hub.publish(ProxyFrame::Events { events });
        }
    }
}

/// Where the built page is: the flag, else `dist/` here, else `dist/` at the root of the source
/// tree the binary was built in (`target/<profile>/consenso` → `../../dist`).
fn find_web_dir(flag: Option<PathBuf>) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = flag {
        candidates.push(dir);
    }
    candidates.push(PathBuf::from("dist"));
    if let Ok(exe) = std::env::current_exe() {
        for ancestor in exe.ancestors().skip(1).take(4) {
            candidates.push(ancestor.join("dist"));
        }
    }
    candidates.into_iter().find(|dir| dir.join("index.html").is_file())
}

const NOT_BUILT: &str = "<!doctype html><html lang=en><meta charset=utf-8><title>Consenso</title>\
<body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>Consenso</h1>\
<p>The cluster is running, but the web page has not been built.</p>\
<p>From the source tree, run <code>./dev demo</code> (it builds the page), or build it with \
<code>trunk build --release</code> and restart the cluster.</p>\
<p>The WebSocket endpoint is at <code>/ws</code>; the CLI works meanwhile: \
<code>consenso client --proxy HOST:PORT status</code>.</p></body></html>";

/// The origins of the pages the other proxies serve: when its proxy dies, a page fails over to
/// one of them, and its origin is still the first proxy's. A loopback address also answers as
/// `localhost`, which is how a lecturer usually types it.
fn sibling_origins(proxies: &[String]) -> Vec<String> {
    let mut origins = Vec::new();
    for address in proxies {
        origins.push(format!("http://{address}"));
        if let Some(port) = address.strip_prefix("127.0.0.1:") {
            origins.push(format!("http://localhost:{port}"));
        }
    }
    origins
}

/// This proxy's counters, and the cluster as it sees it.
fn metrics_text(hub: &Hub, own: &str) -> String {
    let status = status::cluster_status(hub);
    let reachable = status.nodes.iter().filter(|n| n.status.is_some()).count() as u64;
    hub.metrics.render(own, (status.leader, status.term, reachable, status.nodes.len() as u64))
}
