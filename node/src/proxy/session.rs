//! One client or page connection: the WebSocket upgrade (a full room turns viewers away
//! before it), the hello, then frames in to the core and answers and page frames out.
//!
//! What a room of viewers can make the proxy hold is bounded by construction: a viewer's frame
//! is at most `VIEWER_FRAME_BYTES`, its requests in flight at most
//! `VIEWER_BYTES_IN_FLIGHT_PER_CONNECTION` bytes, and all viewers' together at most
//! `VIEWER_BYTES_IN_FLIGHT`; every connection has at most `IN_FLIGHT_PER_CONNECTION` requests
//! in flight. Everything else a request means is decided by the core.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use shared::protocol::{ApiError, ClientFrame, ErrorKind, ProxyFrame, encode, parse};
use shared::proxy::{ConnId, Proxy};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast, mpsc, oneshot};

use super::driver::{Input, ToConnection};
use super::{Room, Shared};
use crate::listener::{Gate, VIEWER_FRAME_BYTES, origin_allowed};
use crate::ws::TRANSPORT_LIMIT;

/// Requests one connection may have in flight; more wait (a flood cannot exhaust the proxy).
const IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Bytes of requests one viewer's connection may have in flight; more wait.
const VIEWER_BYTES_IN_FLIGHT_PER_CONNECTION: usize = VIEWER_FRAME_BYTES * 4;
/// Bytes of requests all viewers together may have in flight; more are refused at once
/// (`unavailable`) rather than queued.
pub const VIEWER_BYTES_IN_FLIGHT: usize = 64 << 20;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Extension(gate): Extension<Arc<Gate>>,
    State(shared): State<Shared>,
) -> Response {
    let room = &shared.room;
    if !origin_allowed(&headers, &room.allowed_origins) {
        let origin = headers.get("origin").and_then(|o| o.to_str().ok()).unwrap_or_default();
        tracing::warn!("refused a WebSocket from a page of another origin: {origin}");
        let message = format!("pages from {origin} may not connect (see the proxy's --allow-origin)\n");
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    // A full room turns viewers away before the upgrade, so that they hold nothing at all; the
    // token (in the upgrade request: `Authorization: Bearer`, or `?token=` from a page) always
    // gets in, so the lecturer is never locked out.
    if room.is_full() && !upgrade_carries_token(&headers, &uri, &room.token) {
        let message = format!(
            "the room is full: {} viewers are connected; try again in a while (the lecturer's link still works)\n",
            crate::listener::MAX_VIEWERS
        );
        // And the connection goes with the answer: a kept-alive one would hold a slot.
        let close = [(axum::http::header::CONNECTION, "close")];
        return (StatusCode::SERVICE_UNAVAILABLE, close, message).into_response();
    }
    ws.max_message_size(TRANSPORT_LIMIT)
        .max_frame_size(TRANSPORT_LIMIT)
        .read_buffer_size(crate::ws::READ_BUFFER_BYTES)
        .on_upgrade(move |s| serve(s, shared, gate))
}

/// Whether the upgrade request itself carries the cluster's token.
fn upgrade_carries_token(headers: &HeaderMap, uri: &axum::http::Uri, token: &str) -> bool {
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let query = uri.query().unwrap_or_default().split('&').find_map(|pair| pair.strip_prefix("token="));
    [bearer, query].into_iter().flatten().any(|given| crate::secret::same_token(given, token))
}

/// A viewer's place in the room, given back when its connection ends. Token holders take
/// none: they are never turned away for a full room.
struct Seat(Option<Arc<Room>>);

impl Seat {
    fn take(room: &Arc<Room>, admin: bool) -> Option<Seat> {
        if admin {
            return Some(Seat(None));
        }
        room.sit().then(|| Seat(Some(room.clone())))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(room) = &self.0 {
            room.leave();
        }
    }
}

fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> ProxyFrame {
    ProxyFrame::Error { id, error: ApiError::new(kind, message) }
}

async fn serve(mut socket: WebSocket, shared: Shared, gate: Arc<Gate>) {
    let check = |hello: ClientFrame| match hello {
        ClientFrame::Hello { version, token, subscribe } => {
            crate::ws::check_version(version, "proxy")?;
            Ok((token, subscribe))
        }
        _ => Err(ApiError::new(ErrorKind::BadRequest, "the first frame must be a hello")),
    };
    let refusal = |error| ProxyFrame::Error { id: None, error };
    let Some((token, subscribe)) = crate::ws::handshake(&mut socket, check, refusal).await else { return };
    let admin = token.as_deref().is_some_and(|t| crate::secret::same_token(t, &shared.room.token));
    let Some(_seat) = Seat::take(&shared.room, admin) else {
        let message = format!(
            "the room is full: {} viewers are connected; the lecturer's link (with the token) still works",
            crate::listener::MAX_VIEWERS
        );
        crate::ws::answer(&mut socket, &error(None, ErrorKind::Unavailable, message.clone())).await;
        crate::ws::close(&mut socket, crate::ws::CLOSE_TRY_LATER, &message).await;
        return;
    };
    if admin {
        gate.open()
    } else {
        gate.open_for_viewer()
    }
    let conn: ConnId = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (outbox, answers) = mpsc::unbounded_channel::<ToConnection>();
    let (reply, welcome) = oneshot::channel();
    shared.core.send(Input::Opened { conn, admin, subscribe, outbox: outbox.clone(), reply });
    let Ok((welcome, stream)) = welcome.await else { return };
    let _ = outbox.send(ToConnection::Frame(encode(&welcome).into()));
    if token.is_some() && !admin {
        let wrong = error(None, ErrorKind::Unauthorized, "wrong token: connected as a read-only viewer");
        let _ = outbox.send(ToConnection::Frame(encode(&wrong).into()));
    }
    let (sink, frames) = socket.split();
    let limits = Arc::new(Limits::new());
    let writer = tokio::spawn(write(sink, answers, stream, limits.clone()));
    let reader = Reader { shared: shared.clone(), conn, admin, outbox, limits, gate };
    reader.read(frames).await;
    shared.core.send(Input::Closed { conn });
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

/// What a connection holds for its requests in flight, given back as they are answered.
struct Limits {
    requests: Arc<Semaphore>,
    /// A viewer's bytes held per request id (its own budget, and the room's).
    bytes: Mutex<HashMap<u64, Vec<(OwnedSemaphorePermit, OwnedSemaphorePermit)>>>,
    own_bytes: Arc<Semaphore>,
}

impl Limits {
    fn new() -> Limits {
        Limits {
            requests: Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION)),
            bytes: Mutex::new(HashMap::new()),
            own_bytes: Arc::new(Semaphore::new(VIEWER_BYTES_IN_FLIGHT_PER_CONNECTION)),
        }
    }

    /// An answer went out: its request no longer counts.
    fn answered(&self, id: Option<u64>) {
        self.requests.add_permits(1);
        let Some(id) = id else { return };
        let mut bytes = self.bytes.lock().expect("not poisoned");
        if let Some(held) = bytes.get_mut(&id) {
            held.pop();
            if held.is_empty() {
                bytes.remove(&id);
            }
        }
    }
}

/// Sends answers and (for a subscriber) page frames, and closes the connection when told.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut answers: mpsc::UnboundedReceiver<ToConnection>,
    mut stream: Option<broadcast::Receiver<Arc<str>>>,
    limits: Arc<Limits>,
) {
    loop {
        let frame = tokio::select! {
            biased;
            frame = answers.recv() => match frame {
                Some(ToConnection::CloseTooBig) => {
                    let reason = format!("a viewer's frame may hold at most {} KiB", VIEWER_FRAME_BYTES >> 10);
                    let close = axum::extract::ws::CloseFrame { code: crate::ws::CLOSE_TOO_BIG, reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(close))).await;
                    return;
                }
                Some(ToConnection::Answer { id, text }) => {
                    limits.answered(id);
                    text
                }
                Some(ToConnection::Frame(text)) => text,
                None => return,
            },
            event = async { stream.as_mut().expect("only polled when subscribed").recv().await }, if stream.is_some() => match event {
                Ok(f) => f,
                // A slow viewer skips page frames; the periodic status and logs put it right.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => return,
            },
        };
        if sink.send(Message::text(frame.as_ref())).await.is_err() {
            return;
        }
    }
}

struct Reader {
    shared: Shared,
    conn: ConnId,
    admin: bool,
    outbox: mpsc::UnboundedSender<ToConnection>,
    limits: Arc<Limits>,
    gate: Arc<Gate>,
}

impl Reader {
    fn send(&self, frame: &ProxyFrame) {
        if let ProxyFrame::Error { error, .. } = frame {
            self.shared.metrics.error(error.kind);
        }
        let _ = self.outbox.send(ToConnection::Frame(encode(frame).into()));
    }

    async fn read(&self, mut frames: futures_util::stream::SplitStream<WebSocket>) {
        while let Some(message) = frames.next().await {
            self.gate.frame_taken();
            let text = match message {
                Ok(Message::Text(text)) => text,
                Ok(Message::Binary(_)) => {
                    self.send(&error(
                        None,
                        ErrorKind::BadRequest,
                        "binary frames are not part of the protocol",
                    ));
                    continue;
                }
                Ok(Message::Close(_)) => return,
                Err(e) if !self.admin => return self.too_big(e),
                Err(_) => return,
                Ok(_) => continue,
            };
            let Some(held) = self.hold(text.as_str()).await else { continue };
            let frame = match parse::<ClientFrame>(text.as_str()) {
                Ok(frame) => frame,
                Err(e) => {
                    self.send(&ProxyFrame::Error { id: frame_id(text.as_str()), error: e });
                    continue;
                }
            };
            self.count(&frame);
            if let ClientFrame::Admin { id, command } = &frame {
                if self.admin && Proxy::is_for_driver(command) {
                    let answer = super::recorder::command(&self.shared, *id, command.clone()).await;
                    self.send(&answer);
                    continue;
                }
            }
            // Counted until its answer goes out.
            let Ok(permit) = self.limits.requests.acquire().await else { return };
            permit.forget();
            if let (Some(id), Some(held)) = (frame.id(), held) {
                self.limits.bytes.lock().expect("not poisoned").entry(id).or_default().push(held);
            }
            self.shared.core.send(Input::Client { conn: self.conn, frame });
        }
    }

    /// A viewer's request holds its bytes while in flight, in its own budget and the room's;
    /// `None` if the room's is spent (the request is refused at once).
    async fn hold(&self, text: &str) -> Option<Option<(OwnedSemaphorePermit, OwnedSemaphorePermit)>> {
        if self.admin {
            return Some(None);
        }
        let bytes = text.len() as u32;
        let mine = self.limits.own_bytes.clone().acquire_many_owned(bytes).await.ok()?;
        match self.shared.room.viewer_bytes.clone().try_acquire_many_owned(bytes) {
            Ok(all) => Some(Some((mine, all))),
            Err(_) => {
                let message = "the proxy holds as many viewers' requests as it may: try again in a moment";
                self.send(&error(frame_id(text), ErrorKind::Unavailable, message));
                None
            }
        }
    }

    /// Most likely the gate cut a frame too large for a viewer: say so, and close.
    fn too_big(&self, e: axum::Error) {
        let message = format!(
            "this connection was closed: a viewer's frame may hold at most {} KiB ({e}); with the token, frames \
             up to 8 MiB are accepted",
            VIEWER_FRAME_BYTES >> 10
        );
        self.send(&error(None, ErrorKind::TooLarge, message));
        let _ = self.outbox.send(ToConnection::CloseTooBig);
    }

    fn count(&self, frame: &ClientFrame) {
        let metrics = &self.shared.metrics;
        let kind = match frame {
            ClientFrame::Put { .. } => "put",
            ClientFrame::Delete { .. } => "delete",
            ClientFrame::Cas { .. } => "cas",
            ClientFrame::Get { consistency, .. } => {
                metrics.read(*consistency);
                "get"
            }
            ClientFrame::Status { .. } => "status",
            ClientFrame::Admin { .. } => "admin",
            ClientFrame::Register { .. } => "register",
            ClientFrame::Hello { .. } => return,
        };
        metrics.request(kind);
    }
}

/// The `id` of a frame (one that failed to parse too, so the error can still be matched to it).
fn frame_id(text: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(text).ok()?.get("id")?.as_u64()
}
