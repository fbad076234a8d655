//! One outgoing connection per peer, kept open with reconnect and backoff. Messages reach this
//! task when they are due (the Raft loop's outbox holds them until then and applies the
//! injected faults); messages that arrive while the peer is unreachable are dropped — Raft
//! retransmits what matters, and a backlog of stale heartbeats would only delay fresh ones. The
//! link's state is shared with the outbox, which reports messages to a dead peer as lost.
//!
//! A peer that stops reading (SIGSTOP keeps its TCP connection open) must not make this server
//! hoard messages: the queue is bounded by bytes — beyond it messages are lost, and Raft
//! retransmits — and a frame that cannot be sent within `SEND_TIMEOUT` drops the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use shared::event::LossReason;
use shared::protocol::{Caller, PROTOCOL_VERSION, ServerInbound, ServerOutbound};
use shared::raft::{Message, NodeId};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::Shared;
use crate::ws;

/// Messages per frame at most…
const BATCH: usize = 256;
/// …and about this many bytes: a frame must stay under the protocol's limit. A single message
/// larger than this (an entry with a big value) travels alone.
const BATCH_BYTES: usize = 1 << 20;

/// Bytes of messages waiting for one peer at most (a few full AppendEntries batches).
const QUEUE_BYTES: usize = 8 << 20;
/// A frame not sent by then means the peer stopped reading: the connection is dropped.
const SEND_TIMEOUT: Duration = Duration::from_secs(3);

/// The Raft loop's end of a peer's link.
pub struct LinkSender {
    queue: UnboundedSender<Message>,
    queued: Arc<AtomicUsize>,
    /// Whether the connection to the peer is up (set by its link task).
    pub up: Arc<AtomicBool>,
}

/// The link task's end.
pub struct LinkReceiver {
    queue: UnboundedReceiver<Message>,
    queued: Arc<AtomicUsize>,
    up: Arc<AtomicBool>,
}

pub fn link() -> (LinkSender, LinkReceiver) {
    let (tx, rx) = unbounded_channel();
    let (queued, up) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(false)));
    (LinkSender { queue: tx, queued: queued.clone(), up: up.clone() }, LinkReceiver { queue: rx, queued, up })
}

impl LinkSender {
    /// Queues `msg` for the peer, or gives it back with why it is lost.
    pub fn send(&self, msg: Message) -> Result<(), Box<(Message, LossReason)>> {
        if !self.up.load(Ordering::Relaxed) {
            return Err(Box::new((msg, LossReason::Unreachable)));
        }
        let bytes = msg.approx_bytes();
        // One message always fits: a single large entry must be able to travel.
        let before = self.queued.fetch_add(bytes, Ordering::Relaxed);
        if before > 0 && before + bytes > QUEUE_BYTES {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            return Err(Box::new((msg, LossReason::Overflow)));
        }
        self.queue.send(msg).map_err(|unsent| {
            self.queued.fetch_sub(bytes, Ordering::Relaxed);
            Box::new((unsent.0, LossReason::Unreachable))
        })
    }

    /// Bytes waiting for the peer.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl LinkReceiver {
    fn took(&self, msg: &Message) {
        self.queued.fetch_sub(msg.approx_bytes(), Ordering::Relaxed);
    }

    async fn recv(&mut self) -> Option<Message> {
        let msg = self.queue.recv().await?;
        self.took(&msg);
        Some(msg)
    }

    fn try_recv(&mut self) -> Option<Message> {
        let msg = self.queue.try_recv().ok()?;
        self.took(&msg);
        Some(msg)
    }

    fn discard_all(&mut self) {
        while self.try_recv().is_some() {}
    }
}

pub async fn run(shared: Arc<Shared>, peer: NodeId, address: String, mut queue: LinkReceiver) {
    let up = queue.up.clone();
    let url = match crate::addr::ws_url(&address) {
        Ok(url) => url,
        Err(e) => return tracing::error!("peer {peer}: {e}"),
    };
    let mut backoff = ws::Backoff::new(Duration::from_millis(250));
    let wake = shared.peer_wakeups.get(&peer).cloned().unwrap_or_default();
    let mut was_connected = true;
    loop {
        match connect(&shared, peer, &url).await {
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
        queue.discard_all();
        tokio::select! {
            _ = backoff.wait() => {}
            _ = wake.notified() => backoff.reset(),
        }
        queue.discard_all();
    }
}

async fn connect(shared: &Shared, peer: NodeId, url: &str) -> Result<ws::Stream, ws::ConnectError> {
    let cluster = shared.cluster.lock().expect("cluster lock").clone();
    let hello = ServerInbound::Hello {
        version: PROTOCOL_VERSION,
        token: shared.token.clone(),
        caller: Caller::Peer { node: shared.id, cluster },
    };
    let welcome = |frame: ServerOutbound| match frame {
        ServerOutbound::Welcome { cluster, .. } => Ok(cluster),
        ServerOutbound::Error { error } => Err(Some(error)),
        _ => Err(None),
    };
    let (stream, theirs) = ws::open(url, &hello, welcome).await?;
    if let Some(theirs) = theirs {
        super::net::same_cluster(shared, peer, &theirs).map_err(ws::ConnectError::Refused)?;
    }
    Ok(stream)
}

async fn pump(peer: NodeId, stream: &mut ws::Stream, queue: &mut LinkReceiver) -> anyhow::Result<()> {
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
            let Some(m) = queue.try_recv() else { break };
            let size = m.approx_bytes();
            if bytes + size > BATCH_BYTES {
                next = Some((m, size));
                break;
            }
            bytes += size;
            batch.push(m);
        }
        send(stream, batch, bytes).await?;
        if let Some((m, size)) = next {
            send(stream, vec![m], size).await?;
        }
    }
}

/// Sends one frame of `messages`, about `bytes` long.
async fn send(stream: &mut ws::Stream, messages: Vec<Message>, bytes: usize) -> anyhow::Result<()> {
    // A big frame (a snapshot's chunk) takes longer on a slow link or to a busy peer: a second
    // more per MiB.
    let limit = SEND_TIMEOUT + Duration::from_secs((bytes >> 20) as u64);
    match tokio::time::timeout(limit, ws::send(stream, &ServerInbound::Raft { messages })).await {
        Ok(sent) => sent,
        Err(_) => anyhow::bail!("the peer took no data for {} s (stopped?)", limit.as_secs()),
    }
}

#[cfg(test)]
mod tests {
    use shared::raft::Body;

    use super::*;

    fn heartbeat() -> Message {
        let body = Body::AppendEntries {
            prev_log_index: 0,
            prev_log_term: 0,
            entries: Vec::new(),
            leader_commit: 0,
            read_round: 0,
        };
        Message { id: 0, from: 1, to: 2, term: 1, body }
    }

    #[test]
    fn a_peer_that_takes_nothing_gets_a_bounded_queue_and_the_rest_is_reported_lost() {
        let (sender, mut receiver) = link();
        assert!(
            matches!(sender.send(heartbeat()).map_err(|lost| lost.1), Err(LossReason::Unreachable)),
            "not connected yet"
        );
        sender.up.store(true, Ordering::Relaxed);
        let per_message = heartbeat().approx_bytes();
        let mut overflowed = 0;
        for _ in 0..2 * QUEUE_BYTES / per_message {
            if let Err(lost) = sender.send(heartbeat()) {
                let reason = lost.1;
                assert_eq!(reason, LossReason::Overflow);
                overflowed += 1;
            }
        }
        assert!(overflowed > 0);
        assert!(sender.queued() <= QUEUE_BYTES, "{} bytes queued", sender.queued());
        // Taking messages makes room again.
        receiver.discard_all();
        assert_eq!(sender.queued(), 0);
        assert!(sender.send(heartbeat()).is_ok());
    }
}
