//! The server's WebSocket endpoint. Peers open it to send Raft messages; proxies open it to
//! send client requests and fault commands and to subscribe to events. Both must say `hello`
//! with the protocol version and the cluster's token first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use shared::protocol::{
    ApiError, Caller, ErrorKind, PROTOCOL_VERSION, ServerInbound, ServerOutbound, encode, parse,
};
use shared::raft::NodeId;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::{Input, Shared};
use crate::listener::{Gate, origin_allowed};
use crate::ws::{self, TRANSPORT_LIMIT, accept_frame, answer};

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    let app = axum::Router::new()
        .route("/ws", get(upgrade))
        .route("/health", get(|| async { "ok\n" }))
        .route(
            "/metrics",
            get(|State(shared): State<Arc<Shared>>| async move {
                crate::metrics::response(shared.metrics.render(shared.id))
            }),
        )
        .with_state(shared);
    if let Err(e) = crate::listener::serve(listener, app, std::future::pending()).await {
        tracing::error!("server endpoint failed: {e}");
    }
}

async fn upgrade(
    ws: WebSocketUpgrade,
    headers: HeaderMap,
    Extension(gate): Extension<Arc<Gate>>,
    State(shared): State<Arc<Shared>>,
) -> Response {
    // Servers talk to proxies and peers, never to browsers.
    if !origin_allowed(&headers, &[]) {
        return (StatusCode::FORBIDDEN, "no browser may talk to a server\n").into_response();
    }
    ws.max_message_size(TRANSPORT_LIMIT)
        .max_frame_size(TRANSPORT_LIMIT)
        .read_buffer_size(crate::ws::READ_BUFFER_BYTES)
        .on_upgrade(move |s| connection(s, shared, gate))
}

async fn connection(mut socket: WebSocket, shared: Arc<Shared>, gate: Arc<Gate>) {
    let check = |hello: ServerInbound| match hello {
        ServerInbound::Hello { version, token, caller } => {
            ws::check_version(version, "server")?;
            ws::check_token(&token, &shared.token)?;
            if let Caller::Peer { node, cluster: Some(theirs) } = &caller {
                same_cluster(&shared, *node, theirs)?;
            }
            Ok(caller)
        }
        _ => Err(ApiError::new(ErrorKind::BadRequest, "the first frame must be a hello")),
    };
    let Some(caller) = ws::handshake(&mut socket, check, |error| ServerOutbound::Error { error }).await
    else {
        return;
    };
    gate.open();
    let cluster = shared.cluster.lock().expect("cluster lock").clone();
    if !answer(&mut socket, &ServerOutbound::Welcome { version: PROTOCOL_VERSION, node: shared.id, cluster })
        .await
    {
        return;
    }
    match caller {
        Caller::Peer { node, .. } => peer(socket, shared, node).await,
        Caller::Proxy => proxy(socket, shared).await,
    }
}

/// A peer of another cluster is refused; a server that knows no cluster yet takes the peer's
/// (it is being added, or initialized, by that cluster) and keeps it on disk.
pub(super) fn same_cluster(shared: &Shared, peer: NodeId, theirs: &str) -> Result<(), ApiError> {
    let mut mine = shared.cluster.lock().expect("cluster lock");
    match mine.as_deref() {
        Some(ours) if ours != theirs => {
            tracing::warn!("refusing node {peer} of cluster {theirs}: this server belongs to cluster {ours}");
            Err(ApiError::new(
                ErrorKind::WrongCluster,
                format!("node {} belongs to cluster {ours}, not {theirs}", shared.id),
            ))
        }
        Some(_) => Ok(()),
        None => {
            *mine = Some(theirs.to_string());
            let _ = shared.inputs.send(Input::AdoptCluster(theirs.to_string()));
            Ok(())
        }
    }
}

/// Raft traffic from one peer.
async fn peer(mut socket: WebSocket, shared: Arc<Shared>, node: NodeId) {
    tracing::debug!("peer {node} connected");
    if let Some(wake) = shared.peer_wakeups.get(&node) {
        wake.notify_one();
    }
    while let Some(frame) = accept_frame::<ServerInbound>(&mut socket).await {
        match frame {
            Ok(ServerInbound::Raft { messages }) => {
                for msg in messages {
                    if msg.from != node || msg.to != shared.id {
                        tracing::warn!(
                            "dropping a message from {} to {} on peer {node}'s connection",
                            msg.from,
                            msg.to
                        );
                        continue;
                    }
                    // Even from a peer we are cut off from: the Raft loop reports it lost.
                    let _ = shared.inputs.send(Input::Peer(msg));
                }
            }
            Ok(_) => {
                let error =
                    ApiError::new(ErrorKind::BadRequest, "a peer connection carries only raft frames");
                answer(&mut socket, &ServerOutbound::Error { error }).await;
            }
            Err(error) => {
                tracing::warn!("peer {node} sent a frame I cannot read: {error}");
                answer(&mut socket, &ServerOutbound::Error { error }).await;
            }
        }
    }
    tracing::debug!("peer {node} disconnected");
}

/// A frame to a proxy not sent by then means the proxy stopped reading.
const PROXY_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A proxy: client requests in, replies and (once subscribed) events and status out.
async fn proxy(socket: WebSocket, shared: Arc<Shared>) {
    let connection = shared.next_connection.fetch_add(1, Ordering::Relaxed);
    let (tx, replies) = mpsc::unbounded_channel::<Arc<str>>();
    shared.connections.lock().expect("connections lock").insert(connection, tx.clone());
    let (sink, mut stream) = socket.split();
    let subscribed = Arc::new(AtomicBool::new(false));
    let observers = shared.observers.subscribe();
    let writer =
        tokio::spawn(write_to_proxy(sink, replies, observers, subscribed.clone(), shared.inputs.clone()));
    while let Some(message) = stream.next().await {
        if writer.is_finished() {
            break;
        }
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        match parse::<ServerInbound>(text.as_str()) {
            Ok(frame) => from_proxy(&shared, connection, &subscribed, &tx, frame),
            Err(error) => {
                let _ = tx.send(encode(&ServerOutbound::Error { error }).into());
            }
        }
    }
    shared.connections.lock().expect("connections lock").remove(&connection);
    writer.abort();
}

/// Replies, and once subscribed every event and status, to one proxy.
async fn write_to_proxy(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut replies: mpsc::UnboundedReceiver<Arc<str>>,
    mut observers: tokio::sync::broadcast::Receiver<Arc<str>>,
    subscribed: Arc<AtomicBool>,
    inputs: super::raft_loop::InputSender,
) {
    loop {
        let frame = tokio::select! {
            reply = replies.recv() => match reply { Some(f) => f, None => return },
            event = observers.recv() => match observed(event, &subscribed, &inputs) {
                Some(Some(f)) => f,
                Some(None) => continue,
                None => return,
            },
        };
        // Whatever else is ready goes in the same write: one syscall for a round's replies and
        // events instead of one each.
        let mut frames = vec![frame];
        while frames.len() < MAX_FRAMES_PER_WRITE {
            if let Ok(reply) = replies.try_recv() {
                frames.push(reply);
                continue;
            }
            match observers.try_recv() {
                Ok(event) => {
                    if let Some(Some(f)) = observed(Ok(event), &subscribed, &inputs) {
                        frames.push(f);
                    }
                }
                Err(tokio::sync::broadcast::error::TryRecvError::Empty) => break,
                Err(e) => {
                    let e = match e {
                        tokio::sync::broadcast::error::TryRecvError::Lagged(n) => {
                            tokio::sync::broadcast::error::RecvError::Lagged(n)
                        }
                        _ => tokio::sync::broadcast::error::RecvError::Closed,
                    };
                    if observed(Err(e), &subscribed, &inputs).is_none() {
                        return;
                    }
                }
            }
        }
        let write = async {
            for f in frames {
                sink.feed(Message::text(f.as_ref())).await?;
            }
            sink.flush().await
        };
        // A proxy that stops reading (SIGSTOP) is let go rather than waited for.
        match tokio::time::timeout(PROXY_SEND_TIMEOUT, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::warn!(
                    "a proxy took no data for {} s: closing its connection",
                    PROXY_SEND_TIMEOUT.as_secs()
                );
                return;
            }
        }
    }
}

/// The most frames written to a connection at once.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// What to do with one event from the server's stream: `Some(Some(frame))` send it,
/// `Some(None)` skip it (not subscribed, or lagging: the proxy gets the whole log again),
/// `None` the stream is closed.
fn observed(
    event: Result<Arc<str>, tokio::sync::broadcast::error::RecvError>,
    subscribed: &AtomicBool,
    inputs: &super::raft_loop::InputSender,
) -> Option<Option<Arc<str>>> {
    match event {
        Ok(f) if subscribed.load(Ordering::Relaxed) => Some(Some(f)),
        Ok(_) => Some(None),
        // A slow proxy misses events rather than slowing the server down; it gets the whole
        // log again to resynchronise.
        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
            let _ = inputs.send(Input::Subscribe);
            Some(None)
        }
        Err(_) => None,
    }
}

/// One frame from a proxy, handed to the Raft loop (or acted on at once: a crash).
fn from_proxy(
    shared: &Shared,
    connection: u64,
    subscribed: &AtomicBool,
    tx: &mpsc::UnboundedSender<Arc<str>>,
    frame: ServerInbound,
) {
    let input = match frame {
        ServerInbound::Request { id, request } => Input::Request { connection, id, request },
        ServerInbound::Subscribe => {
            subscribed.store(true, Ordering::Relaxed);
            Input::Subscribe
        }
        ServerInbound::Faults { faults } => {
            let faults = super::faults::sanitize(faults);
            tracing::info!("faults set: {faults:?}");
            shared.faults.set(faults);
            Input::FaultsChanged
        }
        ServerInbound::Transfer { to } => Input::Transfer(to),
        ServerInbound::Time { id, command } => Input::Time { connection, id, command },
        ServerInbound::Snapshot => Input::Snapshot,
        ServerInbound::Bootstrap { id, cluster, voters } => {
            Input::Bootstrap { connection, id, cluster, voters }
        }
        ServerInbound::Crash => {
            tracing::warn!("crash requested: exiting with SIGKILL");
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
            return;
        }
        ServerInbound::Hello { .. } | ServerInbound::Raft { .. } => {
            let error = ApiError::new(ErrorKind::BadRequest, "unexpected frame on a proxy connection");
            let _ = tx.send(encode(&ServerOutbound::Error { error }).into());
            return;
        }
    };
    let _ = shared.inputs.send(input);
}
