//! The connection layer every process shares: limits, JSON frames, the hello handshake on
//! both sides, typed connection errors, and reconnect backoff.
//!
//! Every conversation (client → proxy, peer or proxy → server, proxy → supervisor) starts the
//! same way: the caller's first frame is a `hello` with the protocol version (and the token);
//! the callee answers `welcome` or an error. Accepting, [`handshake`] gives the hello at most
//! `HELLO_DEADLINE`, and a refusal is an error frame followed by a Close frame — never a
//! silent drop. Connecting, [`open`] returns the stream and the welcome, or a [`ConnectError`]
//! a caller can match on (a wrong token is not worth retrying; an unreachable host is).

use std::time::Duration;

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use shared::protocol::{
    ApiError, ClientFrame, ErrorKind, MAX_FRAME_BYTES, PROTOCOL_VERSION, ProxyFrame, encode, parse,
};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long an accepted connection may take to say hello.
pub const HELLO_DEADLINE: Duration = Duration::from_secs(10);
/// How long a connecting side waits for the connection and for the welcome, each.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a connection could not be opened.
#[derive(Debug)]
pub enum ConnectError {
    /// Nothing answered (refused, timed out, not a WebSocket): maybe later.
    Unreachable(String),
    /// The other side answered the hello with an error: a wrong token or version. Retrying
    /// the same hello will not help.
    Refused(ApiError),
    /// It answered something that is not a welcome, or closed.
    Unexpected(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Unreachable(why) => write!(f, "unreachable: {why}"),
            ConnectError::Refused(error) => write!(f, "refused: {error}"),
            ConnectError::Unexpected(what) => write!(f, "no welcome: {what}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// Opens a connection to `url`, says `hello`, and waits for the first frame, which `welcome`
/// reads: `Ok` for a welcome, `Err(Some(error))` for a refusal, `Err(None)` for anything else.
pub async fn open<Out, In, W>(
    request: impl IntoClientRequest + Unpin,
    hello: &Out,
    welcome: impl FnOnce(In) -> Result<W, Option<ApiError>>,
) -> Result<(Stream, W), ConnectError>
where
    Out: Serialize,
    In: DeserializeOwned + std::fmt::Debug,
{
    let request = request.into_client_request().map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    let url = request.uri().to_string();
    let mut stream =
        connect(request, CONNECT_TIMEOUT).await.map_err(|e| ConnectError::Unreachable(format!("{e:#}")))?;
    send(&mut stream, hello).await.map_err(|e| ConnectError::Unreachable(format!("{e:#}")))?;
    let first = match tokio::time::timeout(CONNECT_TIMEOUT, recv::<In>(&mut stream)).await {
        Err(_) => return Err(ConnectError::Unexpected(format!("no answer to hello from {url}"))),
        Ok(Err(e)) => return Err(ConnectError::Unreachable(format!("{e:#}"))),
        Ok(Ok(None)) => return Err(ConnectError::Unexpected(format!("{url} closed the connection"))),
        Ok(Ok(Some(Err(e)))) => return Err(ConnectError::Unexpected(format!("unreadable answer: {e}"))),
        Ok(Ok(Some(Ok(frame)))) => frame,
    };
    let shown = format!("{first:?}");
    match welcome(first) {
        Ok(w) => Ok((stream, w)),
        Err(Some(error)) => Err(ConnectError::Refused(error)),
        Err(None) => Err(ConnectError::Unexpected(shown.chars().take(200).collect())),
    }
}

/// What a proxy's welcome says to a client.
#[derive(Debug, Clone)]
pub struct ClientWelcome {
    /// The token was accepted.
    pub admin: bool,
}

/// A client's connection to a proxy (`proxy` as host:port or a ws:// URL).
pub async fn open_client(
    proxy: &str,
    token: Option<String>,
) -> Result<(Stream, ClientWelcome), ConnectError> {
    let url = crate::addr::ws_url(proxy).map_err(|e| ConnectError::Unreachable(format!("{e:#}")))?;
    // The token in the upgrade request too: a proxy whose room of viewers is full still lets
    // the holder in.
    let mut request =
        url.as_str().into_client_request().map_err(|e| ConnectError::Unreachable(e.to_string()))?;
    if let Some(token) = token.as_deref().filter(|t| !t.is_empty()) {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ConnectError::Unreachable("a token must be printable".into()))?;
        request.headers_mut().insert(tungstenite::http::header::AUTHORIZATION, value);
    }
    let hello = ClientFrame::Hello { version: PROTOCOL_VERSION, token, subscribe: false };
    open(request, &hello, |frame: ProxyFrame| match frame {
        ProxyFrame::Welcome { admin, .. } => Ok(ClientWelcome { admin }),
        ProxyFrame::Error { error, .. } => Err(Some(error)),
        _ => Err(None),
    })
    .await
}

/// Accepts a connection's hello: waits for it at most `HELLO_DEADLINE`, and lets `check`
/// judge it. A refusal (`check`'s error, an unreadable frame, no hello in time) is answered
/// with the error as `error_frame` makes it and a Close frame; `None` then means "done here".
pub async fn handshake<In, Out, T>(
    socket: &mut axum::extract::ws::WebSocket,
    check: impl FnOnce(In) -> Result<T, ApiError>,
    error_frame: impl Fn(ApiError) -> Out,
) -> Option<T>
where
    In: DeserializeOwned,
    Out: Serialize,
{
    let refusal = match tokio::time::timeout(HELLO_DEADLINE, first_frame::<In>(socket)).await {
        Err(_) => {
            ApiError::new(ErrorKind::BadRequest, format!("no hello within {} s", HELLO_DEADLINE.as_secs()))
        }
        Ok(None) => return None,
        Ok(Some(Err(error))) => error,
        Ok(Some(Ok(hello))) => match check(hello) {
            Ok(accepted) => return Some(accepted),
            Err(error) => error,
        },
    };
    let code = match refusal.kind {
        ErrorKind::FrameTooLarge => CLOSE_TOO_BIG,
        ErrorKind::Unauthorized | ErrorKind::VersionMismatch => CLOSE_POLICY,
        _ => CLOSE_PROTOCOL,
    };
    answer(socket, &error_frame(refusal.clone())).await;
    close(socket, code, &refusal.message).await;
    None
}

/// The first frame of an accepted connection. Unlike `accept_frame`, a read that fails (the
/// bytes allowed before a hello ran out in the middle of it) is an error to answer with a Close
/// frame and its reason, not a silent end.
async fn first_frame<T: DeserializeOwned>(
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
            Ok(AxumMessage::Close(_)) => return None,
            Ok(_) => continue,
            Err(e) => {
                let message = format!(
                    "the hello could not be read ({e}): at most {} KiB may come before a valid hello",
                    crate::listener::BEFORE_HELLO_BYTES >> 10
                );
                return Some(Err(ApiError::new(ErrorKind::FrameTooLarge, message)));
            }
        }
    }
}

/// The version check every endpoint makes.
pub fn check_version(version: u32, who: &str) -> Result<(), ApiError> {
    if version == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(ApiError::new(
            ErrorKind::VersionMismatch,
            format!("protocol version {version} is not supported; this {who} speaks {PROTOCOL_VERSION}"),
        ))
    }
}

/// The token check for endpoints that need it (servers and the supervisor).
pub fn check_token(given: &str, expected: &str) -> Result<(), ApiError> {
    if crate::secret::same_token(given, expected) {
        Ok(())
    } else {
        tracing::warn!("refused a connection with a wrong token");
        Err(ApiError::new(ErrorKind::Unauthorized, "wrong token"))
    }
}

/// Close codes (RFC 6455 §7.4.1).
pub const CLOSE_PROTOCOL: u16 = 1002;
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
pub const CLOSE_TRY_LATER: u16 = 1013;

/// Ends an accepted connection with a Close frame saying why (the reason is cut to what a
/// Close frame may carry).
pub async fn close(socket: &mut axum::extract::ws::WebSocket, code: u16, reason: &str) {
    let mut cut = reason.len().min(120);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let frame = axum::extract::ws::CloseFrame { code, reason: reason[..cut].to_string().into() };
    let _ = socket.send(axum::extract::ws::Message::Close(Some(frame))).await;
}

/// The transport accepts frames up to twice the protocol limit, so that an oversized frame can
/// still be read and answered with a typed `frame_too_large` error instead of a dropped
/// connection. Anything beyond that is refused by the transport itself.
pub const TRANSPORT_LIMIT: usize = 2 * MAX_FRAME_BYTES;

/// How much the WebSocket layer reads at once. Its read buffer is zeroed up to this size before
/// every read, so tungstenite's default (128 KiB) costs a 128 KiB `memset` per small frame —
/// about a tenth of the proxy's CPU at 64 clients. Large frames still arrive, in more reads.
pub const READ_BUFFER_BYTES: usize = 16 << 10;

pub fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(TRANSPORT_LIMIT))
        .max_frame_size(Some(TRANSPORT_LIMIT))
        .read_buffer_size(READ_BUFFER_BYTES)
}

/// Opens a WebSocket for `request`, giving up after `timeout`.
async fn connect(
    request: tungstenite::handshake::client::Request,
    timeout: Duration,
) -> anyhow::Result<Stream> {
    let url = request.uri().to_string();
    let attempt = tokio_tungstenite::connect_async_with_config(request, Some(client_config()), true);
    let (stream, _) = tokio::time::timeout(timeout, attempt)
        .await
        .with_context(|| format!("connecting to {url} timed out"))?
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok(stream)
}

pub async fn send<T: Serialize>(ws: &mut Stream, frame: &T) -> anyhow::Result<()> {
    ws.send(Message::text(encode(frame))).await.context("connection lost while sending")
}

/// Sends `first` and every frame already waiting in `more` (up to 64) in one write: a busy
/// link makes one syscall per batch instead of one per frame.
pub async fn send_ready<T: Serialize>(
    ws: &mut Stream,
    first: T,
    more: &mut tokio::sync::mpsc::UnboundedReceiver<T>,
) -> anyhow::Result<()> {
    ws.feed(Message::text(encode(&first))).await.context("connection lost while sending")?;
    for _ in 0..63 {
        let Ok(frame) = more.try_recv() else { break };
        ws.feed(Message::text(encode(&frame))).await.context("connection lost while sending")?;
    }
    ws.flush().await.context("connection lost while sending")
}

/// The next JSON frame, skipping pings and pongs. `Ok(None)` when the peer closed.
pub async fn recv<T: DeserializeOwned>(ws: &mut Stream) -> anyhow::Result<Option<Result<T, ApiError>>> {
    recv_with(ws, parse::<T>).await
}

/// `recv`, read by a parser of the frame's own (`shared::protocol::parse_server`).
pub async fn recv_with<T>(
    ws: &mut Stream,
    parse: fn(&str) -> Result<T, ApiError>,
) -> anyhow::Result<Option<Result<T, ApiError>>> {
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
