//! One client or page connection to the proxy.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use shared::kv::{Command, WriteOp};
use shared::protocol::{
    ApiError, ClientFrame, ErrorKind, PROTOCOL_VERSION, Picture, ProxyFrame, Session, encode, parse,
};
use shared::session::ClientSession;
use tokio::sync::{Semaphore, mpsc};

use super::{Hub, admin, routing, status};
use crate::listener::{Gate, VIEWER_FRAME_BYTES, origin_allowed};
use crate::ws::TRANSPORT_LIMIT;

/// Log entries in a new page's first picture, across all servers, and per server: enough to
/// fill the widest logs view and scroll back a while, and a first frame of a few hundred KB.
const PICTURE_LOG_ENTRIES: usize = 2_400;
const PICTURE_LOG_ENTRIES_PER_NODE: usize = 1_000;

/// Requests one connection may have in flight; more wait (a flood cannot exhaust the proxy).
const IN_FLIGHT_PER_CONNECTION: usize = 256;
/// Bytes of requests one viewer's connection may have in flight; more wait.
const VIEWER_BYTES_IN_FLIGHT_PER_CONNECTION: usize = VIEWER_FRAME_BYTES * 4;
/// Bytes of requests all viewers together may have in flight; more are refused at once
/// (`unavailable`) rather than queued.
pub const VIEWER_BYTES_IN_FLIGHT: usize = 64 << 20;
/// Tells the writer to close the connection because a frame was too large for a viewer.
const CLOSE_TOO_BIG: &str = "\u{0}close-too-big";

pub async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Extension(gate): Extension<Arc<Gate>>,
    State(hub): State<Arc<Hub>>,
) -> Response {
    if !origin_allowed(&headers, &hub.allowed_origins) {
        let origin = headers.get("origin").and_then(|o| o.to_str().ok()).unwrap_or_default();
        tracing::warn!("refused a WebSocket from a page of another origin: {origin}");
        let message = format!("pages from {origin} may not connect (see the proxy's --allow-origin)\n");
        return (StatusCode::FORBIDDEN, message).into_response();
    }
    // A full room turns viewers away before the upgrade, so that they hold nothing at all; the
    // token (in the upgrade request: `Authorization: Bearer`, or `?token=` from a page) always
    // gets in, so the lecturer is never locked out.
    let room_full = hub.viewers.load(Ordering::Relaxed) >= crate::listener::MAX_VIEWERS;
    if room_full && !upgrade_carries_token(&headers, &uri, &hub.token) {
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
        .on_upgrade(move |s| serve(s, hub, gate))
}

/// The cluster as it is now, for a page's (or a recording's) first frame.
pub fn picture(hub: &Hub) -> Picture {
    let per_node = (PICTURE_LOG_ENTRIES / hub.backends.len().max(1)).min(PICTURE_LOG_ENTRIES_PER_NODE);
    let logs = hub.backends.iter().map(|(node, backend)| (node, backend.log().tail(per_node))).collect();
    Picture { cluster: status::cluster_status(hub), logs, recent: hub.fanout.recent() }
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
struct Seat(Option<Arc<Hub>>);

impl Seat {
    fn take(hub: &Arc<Hub>, admin: bool) -> Option<Seat> {
        if admin {
            return Some(Seat(None));
        }
        let taken = hub.viewers.fetch_add(1, Ordering::Relaxed);
        if taken >= crate::listener::MAX_VIEWERS {
            hub.viewers.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Seat(Some(hub.clone())))
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        if let Some(hub) = &self.0 {
            hub.viewers.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> ProxyFrame {
    ProxyFrame::Error { id, error: ApiError::new(kind, message) }
}

async fn serve(mut socket: WebSocket, hub: Arc<Hub>, gate: Arc<Gate>) {
    let check = |hello: ClientFrame| match hello {
        ClientFrame::Hello { version, token, subscribe } => {
            crate::ws::check_version(version, "proxy")?;
            Ok((token, subscribe))
        }
        _ => Err(ApiError::new(ErrorKind::BadRequest, "the first frame must be a hello")),
    };
    let refusal = |error| ProxyFrame::Error { id: None, error };
    let Some((token, subscribe)) = crate::ws::handshake(&mut socket, check, refusal).await else { return };
    let admin = token.as_deref().is_some_and(|t| crate::secret::same_token(t, &hub.token));
    let Some(_seat) = Seat::take(&hub, admin) else {
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
    // Subscribe before taking the picture, so that no event falls between the two.
    let mut observers = subscribe.then(|| hub.observers.subscribe());
    let picture = subscribe.then(|| Box::new(picture(&hub)));
    let welcome = ProxyFrame::Welcome {
        version: PROTOCOL_VERSION,
        admin,
        proxies: hub.proxies.clone(),
        nodes: hub.backends.addresses(),
        picture,
    };
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::unbounded_channel::<Arc<str>>();
    let closing = out.clone();
    let send = move |frame: &ProxyFrame| {
        let _ = out.send(encode(frame).into());
    };
    send(&welcome);
    if token.is_some() && !admin {
        send(&error(None, ErrorKind::Unauthorized, "wrong token: connected as a read-only viewer"));
    }
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                biased;
                frame = outgoing.recv() => match frame {
                    Some(f) if f.as_ref() == CLOSE_TOO_BIG => {
                        let reason = format!("a viewer's frame may hold at most {} KiB", VIEWER_FRAME_BYTES >> 10);
                        let close = axum::extract::ws::CloseFrame { code: crate::ws::CLOSE_TOO_BIG, reason: reason.into() };
                        let _ = sink.send(Message::Close(Some(close))).await;
                        break;
                    }
                    Some(f) => f,
                    None => break,
                },
                event = async { observers.as_mut().expect("only polled when subscribed").recv().await }, if observers.is_some() => match event {
                    Ok(f) => f,
                    // A slow viewer skips events; the periodic status and logs keep it right.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(_) => break,
                },
            };
            if sink.send(Message::text(frame.as_ref())).await.is_err() {
                break;
            }
        }
    });

    let connection = Arc::new(Connection::new());
    let limit = Arc::new(Semaphore::new(IN_FLIGHT_PER_CONNECTION));
    let bytes_in_flight = Arc::new(Semaphore::new(VIEWER_BYTES_IN_FLIGHT_PER_CONNECTION));
    while let Some(message) = stream.next().await {
        gate.frame_taken();
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(_)) => {
                send(&error(None, ErrorKind::BadRequest, "binary frames are not part of the protocol"));
                continue;
            }
            Ok(Message::Close(_)) => break,
            Err(e) => {
                if !admin {
                    // Most likely the gate cut a frame too large for a viewer: say so.
                    let message = format!(
                        "this connection was closed: a viewer's frame may hold at most {} KiB ({e}); with the \
                         token, frames up to 8 MiB are accepted",
                        VIEWER_FRAME_BYTES >> 10
                    );
                    send(&error(None, ErrorKind::TooLarge, message));
                    let _ = closing.send(CLOSE_TOO_BIG.into());
                    // The writer sends the Close frame and ends.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
                    return;
                }
                break;
            }
            Ok(_) => continue,
        };
        // A viewer's requests in flight are bounded in bytes too, per connection and for all
        // viewers together: what a room can make this proxy hold is bounded by construction.
        let held = if admin {
            None
        } else {
            let Ok(mine) = bytes_in_flight.clone().acquire_many_owned(text.len() as u32).await else { break };
            match hub.viewer_bytes.clone().try_acquire_many_owned(text.len() as u32) {
                Ok(all) => Some((mine, all)),
                Err(_) => {
                    let id = frame_id(text.as_str());
                    let message =
                        "the proxy holds as many viewers' requests as it may: try again in a moment";
                    send(&ProxyFrame::Error { id, error: ApiError::new(ErrorKind::Unavailable, message) });
                    continue;
                }
            }
        };
        let frame = match parse::<ClientFrame>(text.as_str()) {
            Ok(frame) => frame,
            Err(e) => {
                send(&ProxyFrame::Error { id: frame_id(text.as_str()), error: e });
                continue;
            }
        };
        let Ok(permit) = limit.clone().acquire_owned().await else { break };
        let (hub, connection, send) = (hub.clone(), connection.clone(), send.clone());
        tokio::spawn(async move {
            count(&hub, &frame);
            let reply = handle(&hub, &connection, admin, frame).await;
            if let ProxyFrame::Error { error, .. } = &reply {
                hub.metrics.error(error.kind);
            }
            send(&reply);
            drop(permit);
            drop(held);
        });
    }
    writer.abort();
}

/// The `id` of a frame that failed to parse, so the error can still be matched to it.
fn frame_id(text: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(text).ok()?.get("id")?.as_u64()
}

/// Sessions for writes that come without one (pages, simple clients): one client id per
/// connection, and many writes may be in flight on it. Clients that may fail over between
/// proxies send their own.
struct Connection {
    client: u64,
    numbers: Mutex<ClientSession>,
}

impl Connection {
    fn new() -> Connection {
        let client = crate::secret::random_u64();
        Connection { client, numbers: Mutex::new(ClientSession::new(client)) }
    }

    /// The write's session: the client's own, or the next number of this connection's.
    fn begin(&self, given: Option<Session>) -> Session {
        if let Some(session) = given {
            return session;
        }
        let numbered = self.numbers.lock().expect("not poisoned").number();
        Session { client: self.client, seq: numbered.seq, answered_below: Some(numbered.answered_below) }
    }

    /// Records what the client was told about a write of this connection's session.
    fn settle(&self, session: Session, reply: &ProxyFrame) {
        if session.client != self.client {
            return;
        }
        let known = match reply {
            ProxyFrame::Done { .. } => true,
            ProxyFrame::Error { error, .. } => error.kind.outcome_is_known(),
            _ => true,
        };
        if known {
            self.numbers.lock().expect("not poisoned").settled(session.seq);
        }
    }
}

async fn write(
    hub: &Hub,
    connection: &Connection,
    id: u64,
    session: Option<Session>,
    op: WriteOp,
) -> ProxyFrame {
    // Refused before it takes a sequence number: a number that never reaches the log would
    // make the next write of this session look like one of a forgotten session.
    if let Some(error) = shared::protocol::too_large(&op) {
        return ProxyFrame::Error { id: Some(id), error };
    }
    let session = connection.begin(session);
    let command = Command {
        client: session.client,
        seq: session.seq,
        op,
        answered_below: session.answered_below.unwrap_or(0),
    };
    let reply = routing::write(hub, id, command).await;
    connection.settle(session, &reply);
    reply
}

fn count(hub: &Hub, frame: &ClientFrame) {
    let kind = match frame {
        ClientFrame::Put { .. } => "put",
        ClientFrame::Delete { .. } => "delete",
        ClientFrame::Cas { .. } => "cas",
        ClientFrame::Get { consistency, .. } => {
            hub.metrics.read(*consistency);
            "get"
        }
        ClientFrame::Status { .. } => "status",
        ClientFrame::Admin { .. } => "admin",
        ClientFrame::Hello { .. } => return,
    };
    hub.metrics.request(kind);
}

async fn handle(hub: &Arc<Hub>, connection: &Connection, admin: bool, frame: ClientFrame) -> ProxyFrame {
    let writes_open = admin || hub.open_writes.load(Ordering::Relaxed);
    match frame {
        ClientFrame::Hello { .. } => error(None, ErrorKind::BadRequest, "hello was already received"),
        ClientFrame::Put { id, .. } | ClientFrame::Delete { id, .. } | ClientFrame::Cas { id, .. }
            if !writes_open =>
        {
            error(
                Some(id),
                ErrorKind::Unauthorized,
                "writes need the cluster's token (the lecturer can open them to everyone: \
                 `cluster --open-writes`, or 'students may write' in the page)",
            )
        }
        ClientFrame::Put { id, key, value, session } => {
            write(hub, connection, id, session, WriteOp::Put { key, value }).await
        }
        ClientFrame::Delete { id, key, session } => {
            write(hub, connection, id, session, WriteOp::Delete { key }).await
        }
        ClientFrame::Cas { id, key, expected, new, session } => {
            write(hub, connection, id, session, WriteOp::Cas { key, expected, new }).await
        }
        ClientFrame::Get { id, key, .. } if shared::protocol::key_too_large(&key).is_some() => {
            ProxyFrame::Error { id: Some(id), error: shared::protocol::key_too_large(&key).expect("checked") }
        }
        ClientFrame::Get { id, key, consistency } => routing::read(hub, id, key, consistency).await,
        ClientFrame::Status { id } => {
            ProxyFrame::Status { id: Some(id), cluster: Box::new(status::cluster_status(hub)) }
        }
        ClientFrame::Admin { id, command } => {
            if !admin {
                return error(Some(id), ErrorKind::Unauthorized, "admin commands need the cluster's token");
            }
            admin::execute(hub, id, command).await
        }
    }
}
