//! One frame from a client connection, from validation to answer.
//!
//! Writes that come without a session (pages, simple clients) go on the connection's own: the
//! first registers it through the log (`route::register`), the others wait for that, and each
//! takes the next sequence number — but only once nothing can refuse it before the log: a write
//! too large for a frame between servers, or one a viewer may not make, takes no number (a
//! number that never reaches the log would make the session's next write look like one of a
//! session the store forgot).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::kv::{Command, WriteOp};
use crate::protocol::{AdminCommand, ApiError, ClientFrame, ErrorKind, ProxyFrame, Session};
use crate::session::ClientSession;

use super::core::Core;
use super::ready::ConnId;
use super::{admin, lessons, route};

/// Why a write (or the session for one) is refused to a viewer.
const WRITES_NEED_THE_TOKEN: &str = "writes need the cluster's token (the lecturer can open them to everyone: \
                                     `cluster --open-writes`, or 'students may write' in the page)";

fn error(id: Option<u64>, kind: ErrorKind, message: impl Into<String>) -> ProxyFrame {
    ProxyFrame::Error { id, error: ApiError::new(kind, message) }
}

/// Answers one client frame (other than hello) from connection `conn`.
pub(crate) async fn handle(core: Core, conn: ConnId, frame: ClientFrame) -> ProxyFrame {
    let (admin, writes_open) = {
        let state = core.state();
        let admin = state.conns.get(&conn).is_some_and(|c| c.admin);
        (admin, admin || state.open_writes)
    };
    match frame {
        ClientFrame::Hello { .. } => error(None, ErrorKind::BadRequest, "hello was already received"),
        ClientFrame::Put { id, .. }
        | ClientFrame::Delete { id, .. }
        | ClientFrame::Cas { id, .. }
        | ClientFrame::Register { id }
            if !writes_open =>
        {
            error(Some(id), ErrorKind::Unauthorized, WRITES_NEED_THE_TOKEN)
        }
        ClientFrame::Put { id, key, value, session } => {
            write(&core, conn, id, session, WriteOp::Put { key, value }).await
        }
        ClientFrame::Delete { id, key, session } => {
            write(&core, conn, id, session, WriteOp::Delete { key }).await
        }
        ClientFrame::Cas { id, key, expected, new, session } => {
            write(&core, conn, id, session, WriteOp::Cas { key, expected, new }).await
        }
        ClientFrame::Get { id, key, consistency } => match crate::protocol::key_too_large(&key) {
            Some(error) => ProxyFrame::Error { id: Some(id), error },
            None => route::read(&core, id, key, consistency).await,
        },
        ClientFrame::Register { id } => match route::register(&core).await {
            Ok(client) => ProxyFrame::Registered { id, client },
            Err(error) => ProxyFrame::Error { id: Some(id), error },
        },
        ClientFrame::Status { id } => {
            let cluster = Box::new(core.state().cluster_status());
            ProxyFrame::Status { id: Some(id), cluster }
        }
        ClientFrame::Admin { id, .. } if !admin => {
            error(Some(id), ErrorKind::Unauthorized, "admin commands need the cluster's token")
        }
        ClientFrame::Admin { id, command: AdminCommand::Lesson { action } } => {
            match lessons::control(&core, action) {
                Ok(message) => ProxyFrame::AdminDone { id, message },
                Err(error) => ProxyFrame::Error { id: Some(id), error },
            }
        }
        ClientFrame::Admin { id, command } => {
            if matches!(command, AdminCommand::Reset) {
                // Someone starts over by hand: a lesson in progress would fight them, and a
                // finished one's captions describe a cluster that is gone.
                lessons::close(&core);
            }
            admin::execute(&core, id, command).await
        }
    }
}

async fn write(core: &Core, conn: ConnId, id: u64, session: Option<Session>, op: WriteOp) -> ProxyFrame {
    if let Some(error) = crate::protocol::too_large(&op) {
        return ProxyFrame::Error { id: Some(id), error };
    }
    let session = match session {
        Some(session) => session,
        None => match numbered(core, conn).await {
            Ok(session) => session,
            Err(error) => return ProxyFrame::Error { id: Some(id), error },
        },
    };
    let command = Command {
        client: session.client,
        seq: session.seq,
        op,
        answered_below: session.answered_below.unwrap_or(0),
    };
    let reply = route::write(core, id, command).await;
    settle(core, conn, session, &reply);
    reply
}

/// The next number of the connection's own session, registering it first if need be.
async fn numbered(core: &Core, conn: ConnId) -> Result<Session, ApiError> {
    loop {
        {
            let mut state = core.state();
            let Some(connection) = state.conns.get_mut(&conn) else {
                return Err(ApiError::new(ErrorKind::Unavailable, "the connection closed"));
            };
            if let Some(session) = &mut connection.session {
                let numbered = session.number();
                return Ok(Session {
                    client: session.client(),
                    seq: numbered.seq,
                    answered_below: Some(numbered.answered_below),
                });
            }
            if !connection.registering {
                connection.registering = true;
                break;
            }
        }
        Registration { core: core.clone(), conn }.await;
    }
    let registered = route::register(core).await;
    let mut state = core.state();
    let Some(connection) = state.conns.get_mut(&conn) else {
        return Err(ApiError::new(ErrorKind::Unavailable, "the connection closed"));
    };
    connection.registering = false;
    for waker in connection.waiting.drain(..) {
        waker.wake();
    }
    let client = registered?;
    let mut session = ClientSession::new(client);
    let numbered = session.number();
    connection.session = Some(session);
    Ok(Session { client, seq: numbered.seq, answered_below: Some(numbered.answered_below) })
}

/// Waits while the connection's session is being registered.
struct Registration {
    core: Core,
    conn: ConnId,
}

impl Future for Registration {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.core.state();
        match state.conns.get_mut(&self.conn) {
            Some(connection) if connection.registering => {
                connection.waiting.push(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

/// Records what became of a write of the connection's own session: an outcome known lets the
/// store forget its result; a session the store forgot is dropped (the next write opens one).
fn settle(core: &Core, conn: ConnId, session: Session, reply: &ProxyFrame) {
    let mut state = core.state();
    let Some(connection) = state.conns.get_mut(&conn) else { return };
    let Some(own) = connection.session.as_mut().filter(|s| s.client() == session.client) else { return };
    match reply {
        ProxyFrame::Error { error, .. } if error.kind == ErrorKind::SessionExpired => {
            connection.session = None
        }
        ProxyFrame::Error { error, .. } if !error.kind.outcome_is_known() => {}
        _ => own.settled(session.seq),
    }
}
