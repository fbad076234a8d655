//! Shared by the tests that run real processes: starting clusters, speaking the protocol,
//! waiting for conditions with a deadline.
#![allow(dead_code)]

pub mod browser;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use shared::protocol::{
    AdminCommand, ClientFrame, ClusterStatus, PROTOCOL_VERSION, ProxyFrame, encode, parse,
};
use shared::raft::{NodeId, Role};
use tokio_tungstenite::tungstenite::Message;

pub const TOKEN: &str = "test-token-0123456789";
pub const BIN: &str = env!("CARGO_BIN_EXE_consenso");

/// Tests that start clusters take turns: two cores cannot run several at once reliably.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

pub fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// A first port P such that P..P+20 are all free on 127.0.0.1. Below 32768, where Linux does
/// not pick ports for outgoing connections, so nothing takes them between the check and use.
pub fn free_ports() -> u16 {
    // Ranges handed out by one test process never overlap: a cluster's range is checked free
    // before its processes bind it, so a second pick (chromedriver's port, say) made in that
    // window must not land inside it — it did, and chromedriver lost its port to a server.
    // Processes start at different offsets so that test binaries run side by side rarely meet;
    // when they do, the bind check below moves on.
    static NEXT_RANGE: AtomicU32 = AtomicU32::new(0);
    const FIRST: u32 = 20_000;
    const RANGES: u32 = (32_000 - FIRST) / 20;
    let start = std::process::id().wrapping_mul(97) % RANGES;
    for _ in 0..RANGES {
        let range = (start + NEXT_RANGE.fetch_add(1, Ordering::Relaxed)) % RANGES;
        let base = (FIRST + range * 20) as u16;
        if (0..20).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            return base;
        }
    }
    panic!("no free port range");
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `consenso cluster` as a child process, stopped (SIGTERM) when dropped.
pub struct Cluster {
    pub child: Child,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub nodes: u64,
}

impl Cluster {
    pub fn start(nodes: u64, proxies: u16) -> Cluster {
        Cluster::start_with(nodes, proxies, &[])
    }

    /// Starts a cluster and waits for its leader; tries other ports if one was taken meanwhile.
    pub fn start_with(nodes: u64, proxies: u16, extra: &[&str]) -> Cluster {
        for _ in 0..3 {
            let cluster = Cluster::spawn(nodes, proxies, extra);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if cluster.leader().is_some() {
                    return cluster;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            eprintln!("no leader on ports from {}; trying other ports", cluster.port);
        }
        panic!("no cluster came up with a leader");
    }

    fn spawn(nodes: u64, proxies: u16, extra: &[&str]) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let port = free_ports();
        let child = Command::new(BIN)
            .args(["cluster", "--nodes", &nodes.to_string(), "--proxies", &proxies.to_string()])
            .args(["--port", &port.to_string(), "--token", TOKEN])
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--web-dir={}", repo_root().join("dist").display()))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("consenso cluster starts");
        Cluster { child, port, dir, nodes }
    }

    /// The cluster's data directory (server directories, logs, the token file).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn proxy(&self, i: u16) -> String {
        format!("127.0.0.1:{}", self.port + i)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }

    pub fn status(&self) -> Option<ClusterStatus> {
        block_on(async {
            let mut c = Client::connect(&self.proxy(0), Some(TOKEN)).await.ok()?;
            match c.request(ClientFrame::Status { id: 0 }).await? {
                ProxyFrame::Status { cluster, .. } => Some(*cluster),
                _ => None,
            }
        })
    }

    pub fn leader(&self) -> Option<NodeId> {
        let status = self.status()?;
        let leader = status.leader?;
        // Only a leader every reachable node agrees on.
        status.nodes.iter().find(|n| n.id == leader && n.role == Some(Role::Leader)).map(|n| n.id)
    }

    pub fn wait_for_leader(&self, within: Duration) -> NodeId {
        wait_for(within, "a leader", || self.leader())
    }

    pub fn admin(&self, command: AdminCommand) -> ProxyFrame {
        block_on(async {
            let mut c = Client::connect(&self.proxy(0), Some(TOKEN)).await.expect("connects");
            c.request(ClientFrame::Admin { id: 0, command }).await.expect("answers")
        })
    }

    pub fn log_of(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join("data/logs").join(format!("{name}.log")))
            .unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(8);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
}

/// Polls `probe` until it returns something, or panics naming what never happened.
pub fn wait_for<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {within:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A protocol-level client of a proxy.
pub struct Client {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next: u64,
    pub admin: bool,
}

impl Client {
    pub async fn connect(proxy: &str, token: Option<&str>) -> anyhow::Result<Client> {
        let (mut ws, _) = tokio::time::timeout(
            Duration::from_secs(3),
            tokio_tungstenite::connect_async(format!("ws://{proxy}/ws")),
        )
        .await??;
        let hello = ClientFrame::Hello {
            version: PROTOCOL_VERSION,
            token: token.map(String::from),
            subscribe: false,
        };
        ws.send(Message::text(encode(&hello))).await?;
        let mut client = Client { ws, next: 1, admin: false };
        match client.next_frame().await {
            Some(ProxyFrame::Welcome { admin, .. }) => client.admin = admin,
            other => anyhow::bail!("no welcome: {other:?}"),
        }
        Ok(client)
    }

    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::text(text)).await?;
        Ok(())
    }

    pub async fn next_frame(&mut self) -> Option<ProxyFrame> {
        loop {
            match tokio::time::timeout(Duration::from_secs(30), self.ws.next()).await.ok()?? {
                Ok(Message::Text(t)) => return parse(t.as_str()).ok(),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Opens a write session (registered through the log); its client id.
    pub async fn register(&mut self) -> u64 {
        match self.request(ClientFrame::Register { id: 0 }).await {
            Some(ProxyFrame::Registered { client, .. }) => client,
            other => panic!("no session was opened: {other:?}"),
        }
    }

    /// Sends a frame with a fresh id and returns the answer to it.
    pub async fn request(&mut self, mut frame: ClientFrame) -> Option<ProxyFrame> {
        let id = self.next;
        self.next += 1;
        set_id(&mut frame, id);
        self.ws.send(Message::text(encode(&frame))).await.ok()?;
        loop {
            let answer = self.next_frame().await?;
            let answer_id = match &answer {
                ProxyFrame::Done { id, .. }
                | ProxyFrame::AdminDone { id, .. }
                | ProxyFrame::Registered { id, .. } => Some(*id),
                ProxyFrame::Error { id, .. } => *id,
                ProxyFrame::Status { id, .. } => *id,
                _ => None,
            };
            if answer_id == Some(id) {
                return Some(answer);
            }
        }
    }
}

fn set_id(frame: &mut ClientFrame, new: u64) {
    match frame {
        ClientFrame::Put { id, .. }
        | ClientFrame::Get { id, .. }
        | ClientFrame::Delete { id, .. }
        | ClientFrame::Cas { id, .. }
        | ClientFrame::Status { id }
        | ClientFrame::Admin { id, .. }
        | ClientFrame::Register { id } => *id = new,
        ClientFrame::Hello { .. } => {}
    }
}

/// Servers and proxies started by hand, as on several machines (no supervisor).
pub struct HandStarted {
    pub servers: Vec<Child>,
    pub proxies: Vec<Child>,
    _dir: tempfile::TempDir,
    pub base: u16,
}

impl HandStarted {
    pub fn start() -> HandStarted {
        HandStarted::start_with(&[])
    }

    /// With `proxy_args` added to each proxy's command line.
    pub fn start_with(proxy_args: &[&str]) -> HandStarted {
        let dir = tempfile::tempdir().unwrap();
        let base = free_ports();
        let peers = (1..=3).map(|i| format!("{i}=127.0.0.1:{}", base + 10 + i)).collect::<Vec<_>>().join(",");
        let proxies_list = format!("127.0.0.1:{base},127.0.0.1:{}", base + 1);
        let servers = (1..=3)
            .map(|i| {
                Command::new(BIN)
                    .args(["server", "--id", &i.to_string(), "--peers", &peers])
                    .arg(format!("--data-dir={}", dir.path().join(format!("n{i}")).display()))
                    .env("CONSENSO_TOKEN", TOKEN)
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        // Servers started by hand belong to no cluster until one is created from them.
        let init = Command::new(BIN)
            .args(["init", "--servers", &peers])
            .env("CONSENSO_TOKEN", TOKEN)
            .output()
            .unwrap();
        assert!(init.status.success(), "consenso init: {}", String::from_utf8_lossy(&init.stderr));
        let proxies = (0..2)
            .map(|i| {
                Command::new(BIN)
                    .args([
                        "proxy",
                        "--listen",
                        &format!("127.0.0.1:{}", base + i),
                        "--nodes",
                        &peers,
                        "--proxies",
                        &proxies_list,
                    ])
                    .args(proxy_args)
                    .env("CONSENSO_TOKEN", TOKEN)
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        HandStarted { servers, proxies, _dir: dir, base }
    }
}

impl Drop for HandStarted {
    fn drop(&mut self) {
        for c in self.servers.iter_mut().chain(self.proxies.iter_mut()) {
            let _ = signal_child(c, Signal::SIGCONT);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn signal_child(c: &Child, sig: Signal) -> nix::Result<()> {
    kill(Pid::from_raw(c.id() as i32), sig)
}
