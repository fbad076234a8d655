//! One outgoing connection per peer, kept open with reconnect and backoff. Messages reach this
//! task when they are due (the Raft thread's outbox holds them until then and applies the
//! injected faults); messages that arrive while the peer is unreachable are dropped — Raft
//! retransmits what matters, and a backlog of stale heartbeats would only delay fresh ones. The
//! link's state is shared with the outbox, which reports messages to a dead peer as lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use shared::protocol::{Caller, PROTOCOL_VERSION, ServerInbound, ServerOutbound};
use shared::raft::{Message, NodeId};
use tokio::sync::mpsc::UnboundedReceiver;

use super::Shared;
use crate::ws;

/// Messages per frame at most…
const BATCH: usize = 256;
/// …and about this many bytes: a frame must stay under the protocol's limit. A single message
/// larger than this (an entry with a big value) travels alone.
const BATCH_BYTES: usize = 1 << 20;

pub async fn run(
    shared: Arc<Shared>,
    peer: NodeId,
    address: String,
    up: Arc<AtomicBool>,
    mut queue: UnboundedReceiver<Message>,
) {
    let url = match crate::addr::ws_url(&address) {
        Ok(url) => url,
        Err(e) => return tracing::error!("peer {peer}: {e}"),
    };
    let mut backoff = ws::Backoff::new(Duration::from_millis(250));
    let wake = shared.peer_wakeups.get(&peer).cloned().unwrap_or_default();
    let mut was_connected = true;
    loop {
        match connect(&shared, &url).await {
            Ok(mut stream) => {
                tracing::info!("connected to peer {peer} at {address}");
                was_connected = true;
                backoff.reset();
                up.store(true, Ordering::Relaxed);
                if let Err(e) = pump(peer, &mut stream, &mut queue).await {
                    tracing::info!("lost peer {peer}: {e:#}");
                }
                up.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                if was_connected {
                    tracing::info!("cannot reach peer {peer} at {address}: {e:#}");
                    was_connected = false;
                }
            }
        }
        while queue.try_recv().is_ok() {}
        tokio::select! {
            _ = backoff.wait() => {}
            _ = wake.notified() => backoff.reset(),
        }
        while queue.try_recv().is_ok() {}
    }
}

async fn connect(shared: &Shared, url: &str) -> anyhow::Result<ws::Stream> {
    let mut stream = ws::connect(url, Duration::from_secs(2)).await?;
    let hello = ServerInbound::Hello {
        version: PROTOCOL_VERSION,
        token: shared.token.clone(),
        caller: Caller::Peer { node: shared.id },
    };
    ws::send(&mut stream, &hello).await?;
    match tokio::time::timeout(Duration::from_secs(2), ws::recv::<ServerOutbound>(&mut stream)).await {
        Ok(Ok(Some(Ok(ServerOutbound::Welcome { .. })))) => Ok(stream),
        Ok(Ok(Some(Ok(ServerOutbound::Error { error })))) => anyhow::bail!("refused: {error}"),
        other => anyhow::bail!("no welcome: {other:?}"),
    }
}

async fn pump(
    peer: NodeId,
    stream: &mut ws::Stream,
    queue: &mut UnboundedReceiver<Message>,
) -> anyhow::Result<()> {
    loop {
        let first = tokio::select! {
            msg = queue.recv() => match msg { Some(m) => m, None => return Ok(()) },
            incoming = stream.next() => match incoming {
                // The server says nothing after its welcome but errors; an end means it is gone.
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(text))) => {
                    tracing::warn!("peer {peer} refused what I sent: {}", text.as_str());
                    continue;
                }
                Some(Ok(_)) => continue,
                _ => anyhow::bail!("connection closed"),
            },
        };
        let mut bytes = first.approx_bytes();
        let mut batch = vec![first];
        let mut next = None;
        while batch.len() < BATCH && bytes < BATCH_BYTES {
            match queue.try_recv() {
                Ok(m) if bytes + m.approx_bytes() > BATCH_BYTES => {
                    next = Some(m);
                    break;
                }
                Ok(m) => {
                    bytes += m.approx_bytes();
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        ws::send(stream, &ServerInbound::Raft { messages: batch }).await?;
        if let Some(m) = next {
            ws::send(stream, &ServerInbound::Raft { messages: vec![m] }).await?;
        }
    }
}
