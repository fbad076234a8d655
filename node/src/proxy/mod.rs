//! `consenso proxy`: the cluster's front door, with nothing on disk, and there may be several.
//!
//! Every decision a proxy makes — where a request goes and how it is retried, what an admin
//! command means, time control, membership steps, lessons, the invariant monitor's feed — is
//! the sans-IO core `shared::proxy`, the same one the page's in-process cluster and the
//! simulator drive. This module is the I/O around it.
//!
//! # Layout
//!
//! - `driver`: the core as a task on the proxy's one thread, reached through `CoreHandle` (an
//!   `Input` in, replies by oneshot); what carries out its `Ready` (`ToConnection` frames for
//!   each connection);
//! - `links`: the WebSocket links to every server and to the supervisor;
//! - `session`: one client or page connection (the room's limits, the hello, frames in and out);
//! - `recorder`: recordings of what pages see (the recent minutes, a file);
//! - `downloads`: the recent minutes as a recording or a diagram, over HTTP;
//! - `pages`: the built page, served as static files.

mod downloads;
mod driver;
mod links;
mod pages;
mod recorder;
mod session;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use shared::proxy::Settings;
use tokio::sync::broadcast;

use driver::CoreHandle;

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
    /// Run with a deliberate defect of the proxy's (repeatable): retry-without-session. The
    /// servers' defects are accepted and ignored here, so that `cluster` can pass every `--bug`.
    #[arg(long = "bug")]
    bugs: Vec<shared::raft::Bug>,
}

/// Who may come in: the token, the origins whose pages may connect, and the room's seats and
/// bytes for viewers (clients without the token).
pub struct Room {
    pub token: String,
    pub allowed_origins: Vec<String>,
    viewers: AtomicUsize,
    pub viewer_bytes: Arc<tokio::sync::Semaphore>,
}

impl Room {
    pub fn is_full(&self) -> bool {
        self.viewers.load(Ordering::Relaxed) >= crate::listener::MAX_VIEWERS
    }

    /// Takes a viewer's seat; false if the room is full.
    pub fn sit(&self) -> bool {
        let taken = self.viewers.fetch_add(1, Ordering::Relaxed);
        if taken >= crate::listener::MAX_VIEWERS {
            self.viewers.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub fn leave(&self) {
        self.viewers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the HTTP handlers and connections share: each takes the parts it needs.
#[derive(Clone)]
pub struct Shared {
    pub core: CoreHandle,
    pub room: Arc<Room>,
    pub recorder: Arc<recorder::Recorder>,
    pub metrics: Arc<crate::metrics::ProxyMetrics>,
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
    let settings = Settings {
        proxies: proxies.clone(),
        servers: nodes.iter().map(|(id, address)| (*id, address.clone())).collect(),
        supervised: args.supervisor.is_some(),
        open_writes: args.open_writes,
        recording: None,
        bugs: args.bugs.iter().fold(shared::raft::Bugs::none(), |all, bug| all.with(*bug)),
    };
    // One thread for everything: the core and every connection's tasks. A request then crosses
    // no thread inside the proxy (each crossing is a wake-up of another thread, tens of µs on
    // a loaded machine); the proxy's work per write is small enough for one core. Heavy,
    // rare work (a diagram, a recording's download) goes to the blocking pool.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let metrics = Arc::new(crate::metrics::ProxyMetrics::default());
        let core = start_core(settings, &args, metrics.clone());
        let room = Arc::new(Room {
            token: args.token.clone(),
            allowed_origins: [args.allow_origins.clone(), sibling_origins(&proxies)].concat(),
            viewers: AtomicUsize::new(0),
            viewer_bytes: Arc::new(tokio::sync::Semaphore::new(session::VIEWER_BYTES_IN_FLIGHT)),
        });
        let recorder = Arc::new(recorder::Recorder::new(own.clone(), args.recent_minutes));
        let shared = Shared { core: core.clone(), room, recorder: recorder.clone(), metrics };
        tokio::spawn(recorder::keep_recent(core.clone(), recorder));
        if let Some(path) = &args.record {
            recorder::start_file(&shared, path.clone()).await?;
        }
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let app = router(shared, web_dir, own.clone());
        tracing::info!("proxy listening on http://{own}/ (nodes: {})", args.nodes);
        crate::listener::serve(listener, app, crate::shutdown_signal()).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(())
    })
}

/// The proxy's HTTP side: the WebSocket endpoint, health, downloads, metrics and the page.
fn router(shared: Shared, web_dir: Option<PathBuf>, own: String) -> axum::Router {
    let app = axum::Router::new()
        .route("/ws", get(session::upgrade))
        .route("/health", get(|| async { "ok\n" }))
        .route("/recording", get(downloads::recording))
        .route("/diagram", get(downloads::diagram))
        .route(
            "/metrics",
            get(move |axum::extract::State(shared): axum::extract::State<Shared>| async move {
                crate::metrics::response(metrics_text(&shared, &own).await)
            }),
        )
        .with_state(shared);
    match web_dir {
        Some(dir) => app.merge(pages::routes(&dir)),
        None => app.route("/", get(|| async { axum::response::Html(NOT_BUILT) })),
    }
}

/// Starts the core and the links it asks for (the servers it knows, and later those that
/// join), and the supervisor's link.
fn start_core(settings: Settings, args: &Args, metrics: Arc<crate::metrics::ProxyMetrics>) -> CoreHandle {
    let (observers, _) = broadcast::channel(4096);
    // The links need the core's handle, and the core needs a way to open links: the handle is
    // passed in once it exists.
    let handle: Arc<std::sync::OnceLock<CoreHandle>> = Arc::default();
    let runtime = tokio::runtime::Handle::current();
    let (token, late) = (args.token.clone(), handle.clone());
    let open_link = Box::new(move |node, address| {
        let _entered = runtime.enter();
        let core = late.get().expect("the core is started before it opens links").clone();
        links::open_server(core, token.clone(), node, address)
    });
    let (supervisor, supervisor_frames) = match &args.supervisor {
        Some(_) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    let outputs = driver::Outputs { observers, open_link, supervisor, metrics };
    let core = driver::start(settings, outputs, |core| {
        let _ = handle.set(core.clone());
    });
    if let (Some(address), Some(frames)) = (&args.supervisor, supervisor_frames) {
        links::open_supervisor(core.clone(), args.token.clone(), address.clone(), frames);
    }
    core
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
async fn metrics_text(shared: &Shared, own: &str) -> String {
    let Some(status) = shared.core.status().await else { return String::new() };
    let reachable = status.nodes.iter().filter(|n| n.status.is_some()).count() as u64;
    shared.metrics.render(own, (status.leader, status.term, reachable, status.nodes.len() as u64))
}
