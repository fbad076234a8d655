//! WebSocket plumbing shared by every process: limits, connecting, and JSON frames.

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::protocol::{ApiError, ErrorKind, MAX_FRAME_BYTES, encode, parse};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The transport accepts frames up to twice the protocol limit, so that an oversized frame can
/// still be read and answered with a typed `frame_too_large` error instead of a dropped
/// connection. Anything beyond that is refused by the transport itself.
pub const TRANSPORT_LIMIT: usize = 2 * MAX_FRAME_BYTES;

pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(TRANSPORT_LIMIT)).max_frame_size(Some(TRANSPORT_LIMIT))
}

/// Opens a WebSocket to `url`, giving up after `timeout`.
pub async fn connect(url: &str, timeout: Duration) -> anyhow::Result<Stream> {
    let attempt = tokio_tungstenite::connect_async_with_config(url, Some(client_config()), true);
    let (stream, _) = tokio::time::timeout(timeout, attempt)
        .await
        .with_context(|| format!("connecting to {url} timed out"))?
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(stream)
}

pub async fn send<T: Serialize>(ws: &mut Stream, frame: &T) -> anyhow::Result<()> {
    ws.send(Message::text(encode(frame))).await.context("connection lost while sending")
}

/// The next JSON frame, skipping pings and pongs. `Ok(None)` when the peer closed.
pub async fn recv<T: DeserializeOwned>(ws: &mut Stream) -> anyhow::Result<Option<Result<T, ApiError>>> {
    loop {
        match ws.next().await {
            None | Some(Ok(Message::Close(_))) => return Ok(None),
            Some(Ok(Message::Text(text))) => return Ok(Some(parse(text.as_str()))),
            Some(Ok(Message::Binary(_))) => {
                return Ok(Some(Err(ApiError::new(
                    ErrorKind::BadRequest,
                    "binary frames are not part of the protocol",
                ))));
            }
            Some(Ok(_)) => continue,
            Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => {
                return Ok(None);
            }
            Some(Err(e)) => bail!("connection failed: {e}"),
        }
    }
}

/// Exponential backoff with jitter for reconnect loops: 50 ms doubling to `max`.
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff { next: Duration::from_millis(50), max }
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(50);
    }

    pub async fn wait(&mut self) {
        let jitter = Duration::from_millis(crate::secret::random_u64() % 50);
        tokio::time::sleep(self.next + jitter).await;
        self.next = (self.next * 2).min(self.max);
    }
}

/// The next frame on an accepted (server-side) connection, parsed; `None` when it ended.
pub async fn accept_frame<T: DeserializeOwned>(
    socket: &mut axum::extract::ws::WebSocket,
) -> Option<Result<T, ApiError>> {
    use axum::extract::ws::Message as AxumMessage;
    loop {
        match socket.recv().await? {
            Ok(AxumMessage::Text(text)) => return Some(parse(text.as_str())),
            Ok(AxumMessage::Binary(_)) => {
                return Some(Err(ApiError::new(
                    ErrorKind::BadRequest,
                    "binary frames are not part of the protocol",
                )));
            }
            Ok(AxumMessage::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Sends a frame on an accepted connection; false if it is gone.
pub async fn answer<T: Serialize>(socket: &mut axum::extract::ws::WebSocket, frame: &T) -> bool {
    socket.send(axum::extract::ws::Message::text(encode(frame))).await.is_ok()
}
