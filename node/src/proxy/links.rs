//! The proxy's links: one to each server (requests out; replies, events, status and log in)
//! and one to the supervisor when there is one. Each reconnects by itself and tells the core
//! when it comes up or drops — the core then fails what waited on it, so that requests are
//! retried elsewhere at once. A server link ends when the core drops its sender (the server
//! left the cluster).

use std::time::Duration;

use shared::protocol::{
    Caller, PROTOCOL_VERSION, ServerInbound, ServerOutbound, SupervisorInbound, SupervisorOutbound,
};
use shared::raft::NodeId;
use tokio::sync::mpsc;

use super::driver::{CoreHandle, Input};
use crate::ws;

/// Opens the link to server `node` at `address`; frames sent on the returned channel go to it.
pub fn open_server(
    core: CoreHandle,
    token: String,
    node: NodeId,
    address: String,
) -> mpsc::UnboundedSender<ServerInbound> {
    let (outbox, frames) = mpsc::unbounded_channel();
    tokio::spawn(run_server(core, token, node, address, frames));
    outbox
}

async fn run_server(
    core: CoreHandle,
    token: String,
    node: NodeId,
    address: String,
    mut frames: mpsc::UnboundedReceiver<ServerInbound>,
) {
    let url = match crate::addr::ws_url(&address) {
        Ok(url) => url,
        Err(e) => return tracing::error!("node {node}: {e}"),
    };
    let mut backoff = ws::Backoff::new(Duration::from_millis(250));
    let mut announced = false;
    loop {
        match connect_server(&token, &url).await {
            Ok(mut stream) => {
                tracing::info!("connected to node {node} at {address}");
                announced = false;
                backoff.reset();
                // Frames queued while the link was down were failed by the core already.
                while frames.try_recv().is_ok() {}
                core.send(Input::Link { node, up: true });
                let ended = serve_server(&core, node, &mut stream, &mut frames).await;
                core.send(Input::Link { node, up: false });
                match ended {
                    Ok(()) => return,
                    Err(e) => tracing::info!("lost node {node}: {e:#}"),
                }
            }
            Err(e) if !announced => {
                tracing::info!("cannot reach node {node} at {address}: {e:#}");
                announced = true;
            }
            Err(_) => {}
        }
        if frames.is_closed() {
            return;
        }
        backoff.wait().await;
    }
}

async fn connect_server(token: &str, url: &str) -> anyhow::Result<ws::Stream> {
    let hello =
        ServerInbound::Hello { version: PROTOCOL_VERSION, token: token.to_string(), caller: Caller::Proxy };
    let welcome = |frame: ServerOutbound| match frame {
        ServerOutbound::Welcome { .. } => Ok(()),
        ServerOutbound::Error { error } => Err(Some(error)),
        _ => Err(None),
    };
    let (mut stream, ()) = ws::open(url, &hello, welcome).await?;
    ws::send(&mut stream, &ServerInbound::Subscribe).await?;
    Ok(stream)
}

/// Carries frames both ways until the link drops (`Err`) or the core closes it (`Ok`).
async fn serve_server(
    core: &CoreHandle,
    node: NodeId,
    stream: &mut ws::Stream,
    frames: &mut mpsc::UnboundedReceiver<ServerInbound>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => ws::send_ready(stream, frame, frames).await?,
                None => return Ok(()),
            },
            incoming = ws::recv_with(stream, shared::protocol::parse_server) => match incoming? {
                None => anyhow::bail!("closed"),
                Some(Ok(frame)) => core.send(Input::Server { node, frame }),
                Some(Err(e)) => tracing::warn!("node {node} sent an unreadable frame: {e}"),
            },
        }
    }
}

/// Opens the link to the supervisor (`consenso cluster`) at `address`; `frames` are the core's
/// requests for it.
pub fn open_supervisor(
    core: CoreHandle,
    token: String,
    address: String,
    frames: mpsc::UnboundedReceiver<SupervisorInbound>,
) {
    tokio::spawn(run_supervisor(core, token, address, frames));
}

async fn run_supervisor(
    core: CoreHandle,
    token: String,
    address: String,
    mut frames: mpsc::UnboundedReceiver<SupervisorInbound>,
) {
    let url = match crate::addr::ws_url(&address) {
        Ok(url) => url,
        Err(e) => return tracing::error!("supervisor: {e}"),
    };
    let mut backoff = ws::Backoff::new(Duration::from_secs(1));
    loop {
        let hello = SupervisorInbound::Hello { version: PROTOCOL_VERSION, token: token.clone() };
        let welcome = |frame: SupervisorOutbound| match frame {
            SupervisorOutbound::Welcome { .. } => Ok(()),
            SupervisorOutbound::Error { error } => Err(Some(error)),
            _ => Err(None),
        };
        match ws::open(&url, &hello, welcome).await {
            Ok((mut stream, ())) => {
                backoff.reset();
                while frames.try_recv().is_ok() {}
                core.send(Input::SupervisorLink { up: true });
                if let Err(e) = serve_supervisor(&core, &mut stream, &mut frames).await {
                    tracing::info!("lost the supervisor: {e:#}");
                }
                core.send(Input::SupervisorLink { up: false });
            }
            Err(ws::ConnectError::Refused(error)) => {
                tracing::error!("the supervisor refused this proxy: {error}")
            }
            Err(_) => {}
        }
        backoff.wait().await;
    }
}

async fn serve_supervisor(
    core: &CoreHandle,
    stream: &mut ws::Stream,
    frames: &mut mpsc::UnboundedReceiver<SupervisorInbound>,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(frame) => ws::send(stream, &frame).await?,
                None => return Ok(()),
            },
            incoming = ws::recv::<SupervisorOutbound>(stream) => match incoming? {
                None => anyhow::bail!("closed"),
                Some(Ok(SupervisorOutbound::Error { error })) => anyhow::bail!("supervisor: {error}"),
                Some(Ok(frame)) => core.send(Input::Supervisor { frame }),
                Some(Err(e)) => tracing::warn!("supervisor sent an unreadable frame: {e}"),
            },
        }
    }
}
