//! Every listening socket of every process goes through here: TCP connections are accepted with
//! Nagle off, their number is capped, a connection that does not finish its HTTP request in
//! time is closed, and until a connection has said a valid `hello` it may send only a little:
//! nobody without the token (or before the protocol's first frame) can make a process buffer
//! megabytes or hold sockets open forever.
//!
//! Browsers are also held to their origin: a WebSocket opened by a page must come from the page
//! the proxy itself serves (or an origin the operator allowed), so that a web page the lecturer
//! happens to visit cannot talk to the cluster through their browser.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections open at once per listener, whatever they are doing (speaking HTTP, saying
/// hello, or a WebSocket for hours); more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 1_024;
/// Of those, the most that clients without the token may hold once connected (viewers): the
/// rest stay free for the lecturer, peers and proxies, so a full room never locks them out.
pub const MAX_VIEWERS: usize = MAX_CONNECTIONS - 64;
/// A connection must send its whole HTTP request head within this time.
pub const HEADER_DEADLINE: Duration = Duration::from_secs(10);
/// Bytes a connection may send before its `hello` is accepted: the HTTP request (or a few of
/// them, for a browser loading the page) and the hello frame.
pub const BEFORE_HELLO_BYTES: usize = 256 << 10;

/// The most a viewer (a client without the token) may send in one frame, and so the most a
/// viewer's connection ever makes a process buffer: with `MAX_VIEWERS` of them, a room of
/// viewers costs at most a few hundred MiB, whatever they send.
pub const VIEWER_FRAME_BYTES: usize = 256 << 10;

/// Whether a connection has authenticated, and how much it sent.
#[derive(Debug, Default)]
pub struct Gate {
    open: AtomicBool,
    /// Opened without the token: reads stay bounded per frame.
    viewer: AtomicBool,
    read: AtomicUsize,
    /// Bytes read when the application last took a whole frame.
    taken: AtomicUsize,
}

impl Gate {
    /// The connection said a valid hello with the token (or is a peer or a proxy): from now on
    /// only the protocol's frame limits apply.
    pub fn open(&self) {
        self.open.store(true, Ordering::Relaxed);
    }

    /// The connection said a valid hello without the token: each frame it sends may hold at
    /// most `VIEWER_FRAME_BYTES` (see `frame_taken`).
    pub fn open_for_viewer(&self) {
        self.taken.store(self.read.load(Ordering::Relaxed), Ordering::Relaxed);
        self.viewer.store(true, Ordering::Relaxed);
        self.open.store(true, Ordering::Relaxed);
    }

    /// The application took a whole frame: what was read so far is accounted for.
    pub fn frame_taken(&self) {
        self.taken.store(self.read.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    fn admit(&self, bytes: usize) -> bool {
        let read = self.read.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if !self.open.load(Ordering::Relaxed) {
            return read <= BEFORE_HELLO_BYTES;
        }
        !self.viewer.load(Ordering::Relaxed)
            || read - self.taken.load(Ordering::Relaxed) <= VIEWER_FRAME_BYTES + READ_SLACK
    }
}

/// A read may also hold the start of the next frame (the WebSocket layer reads ahead).
const READ_SLACK: usize = 16 << 10;

/// A TCP stream that fails reading once it exceeds its budget before authenticating. It
/// holds its connection's slot for as long as it lives — through an upgrade to a WebSocket,
/// whose task owns it — so the cap counts every open connection, not only those still
/// speaking HTTP.
struct Budgeted {
    /// Always `Some` until dropped (then a connection cut by its budget lingers: see `Drop`).
    tcp: Option<TcpStream>,
    gate: Arc<Gate>,
    slot: Option<OwnedSemaphorePermit>,
    /// The budget was exceeded: reads fail from now on.
    cut: bool,
}

impl Budgeted {
    fn tcp(&mut self) -> &mut TcpStream {
        self.tcp.as_mut().expect("the stream lives as long as its wrapper")
    }
}

/// How long, and how many bytes, a connection cut by its budget is drained after the answer
/// that says why: closing a socket with unread bytes resets it, and a reset can destroy that
/// answer (an error frame and a Close frame with the reason) before the peer reads it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

impl Drop for Budgeted {
    fn drop(&mut self) {
        let (Some(mut tcp), true) = (self.tcp.take(), self.cut) else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        // The slot stays taken while the connection lingers.
        let slot = self.slot.take();
        runtime.spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tcp.shutdown().await;
            let mut buf = vec![0u8; 16 << 10];
            let mut drained = 0;
            let _ = tokio::time::timeout(LINGER, async {
                while drained < LINGER_BYTES {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => drained += n,
                    }
                }
            })
            .await;
            drop(slot);
        });
    }
}

impl AsyncRead for Budgeted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.cut {
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, "over its budget")));
        }
        let before = buf.filled().len();
        let polled = Pin::new(self.tcp()).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &polled {
            if !self.gate.admit(buf.filled().len() - before) {
                self.cut = true;
                let why = if self.gate.open.load(Ordering::Relaxed) {
                    "a frame larger than a viewer may send"
                } else {
                    "too many bytes before a valid hello"
                };
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::PermissionDenied, why)));
            }
        }
        polled
    }
}

impl AsyncWrite for Budgeted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(self.tcp()).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.tcp()).poll_shutdown(cx)
    }
}

/// Serves `app` on `listener` until `stop` resolves. Handlers find their connection's `Gate`
/// as an `Extension<Arc<Gate>>`.
pub async fn serve(listener: TcpListener, app: Router, stop: impl Future<Output = ()>) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(stop);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => return Ok(()),
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Closing at once is the cheapest answer to a flood.
            continue;
        };
        // Our frames are small request/response messages; Nagle plus delayed acknowledgements
        // would add ~40 ms to each.
        let _ = tcp.set_nodelay(true);
        let gate = Arc::new(Gate::default());
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(gate.clone())));
        let io = TokioIo::new(Budgeted { tcp: Some(tcp), gate, slot: Some(slot), cut: false });
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_DEADLINE)
                .serve_connection(io, service)
                .with_upgrades();
            let _ = connection.await;
        });
    }
}

/// Whether a WebSocket request may proceed: without an `Origin` header it comes from a program
/// (the CLI, a proxy, a peer), which the token guards; a browser's must be the page's own origin
/// (the `Host` it asked) or one in `allowed`.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get("origin").and_then(|o| o.to_str().ok()) else { return true };
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    let own = [format!("http://{host}"), format!("https://{host}")];
    own.iter().any(|o| o.eq_ignore_ascii_case(origin))
        || allowed.iter().any(|a| a.trim_end_matches('/') == origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_the_pages_own_origin_or_an_allowed_one_may_open_a_websocket() {
        let host = ("host", "127.0.0.1:8080");
        assert!(origin_allowed(&headers(&[host]), &[]), "programs send no Origin");
        assert!(origin_allowed(&headers(&[host, ("origin", "http://127.0.0.1:8080")]), &[]));
        assert!(!origin_allowed(&headers(&[host, ("origin", "http://evil.example")]), &[]));
        assert!(!origin_allowed(&headers(&[host, ("origin", "http://127.0.0.1:9999")]), &[]));
        let allowed = vec!["https://class.example.edu/".to_string()];
        assert!(origin_allowed(&headers(&[host, ("origin", "https://class.example.edu")]), &allowed));
    }

    #[test]
    fn a_gate_admits_a_little_until_it_opens() {
        let gate = Gate::default();
        assert!(gate.admit(BEFORE_HELLO_BYTES - 10));
        assert!(!gate.admit(11));
        gate.open();
        assert!(gate.admit(1 << 30));
    }

    #[test]
    fn a_viewer_gate_admits_one_frames_worth_at_a_time() {
        let gate = Gate::default();
        assert!(gate.admit(1000));
        gate.open_for_viewer();
        for _ in 0..100 {
            assert!(gate.admit(VIEWER_FRAME_BYTES / 2));
            gate.frame_taken();
        }
        assert!(gate.admit(VIEWER_FRAME_BYTES));
        assert!(!gate.admit(READ_SLACK + 1), "a frame past the viewer's limit");
    }
}
