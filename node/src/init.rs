//! `consenso init`: creates a cluster out of servers that hold nothing yet.
//!
//! Servers never make themselves voters of a new cluster: one restarted on an empty disk
//! could not tell that from a first start, and voting then could cost the cluster a
//! committed write (see `HardState::admitted` in the core). Creating a cluster is an act of
//! its own, done once: this command asks every server of the first configuration whether it
//! belongs to a cluster already; if none does, it makes up a cluster id and asks each to
//! become a voter of it (`bootstrap`), which each writes to disk before anything else. If any
//! belongs to a cluster, it changes nothing and says so — running it again is harmless, which
//! is what a Kubernetes Job needs. The local supervisor (`consenso cluster`) runs the same
//! steps when it creates a cluster.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shared::protocol::{ApiError, Caller, PROTOCOL_VERSION, ServerInbound, ServerOutbound};
use shared::raft::NodeId;

use crate::output::outln;
use crate::ws;

#[derive(clap::Args)]
pub struct Args {
    /// The servers of the first configuration: 1=10.0.0.1:7001,2=...
    #[arg(long)]
    servers: String,
    /// The cluster's token
    #[arg(long, env = "CONSENSO_TOKEN", hide_env_values = true)]
    token: String,
    /// How long to wait for every server to answer (seconds)
    #[arg(long, default_value_t = 60)]
    wait: u64,
}

/// What `initialize` found or did.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A new cluster with this id; every server is a voter of it.
    Created { cluster: String },
    /// The servers already belong to this cluster; `outside` lists those that do not (a server
    /// added to nothing, or one that lost its disk).
    Exists { cluster: String, outside: Vec<NodeId> },
}

pub fn main(args: Args) -> anyhow::Result<()> {
    let servers = crate::addr::node_list(&args.servers)?;
    let runtime = crate::runtime()?;
    let outcome = runtime.block_on(initialize(&servers, &args.token, Duration::from_secs(args.wait)))?;
    match outcome {
        Outcome::Created { cluster } => {
            let ids: Vec<NodeId> = servers.iter().map(|(id, _)| *id).collect();
            outln!("cluster {cluster} created: voters {ids:?}");
        }
        Outcome::Exists { cluster, outside } if outside.is_empty() => {
            outln!("cluster {cluster} already exists: nothing to do");
        }
        Outcome::Exists { cluster, outside } => {
            outln!("cluster {cluster} already exists; nothing changed.");
            for id in outside {
                outln!(
                    "  node {id} is not part of it (a new server, or one that lost its disk): add it with \
                     `consenso client add-server {id} --address ADDRESS`, after `consenso client remove-server {id}` \
                     if it was a member"
                );
            }
        }
    }
    Ok(())
}

/// Creates the cluster of `servers` unless one exists (see the module documentation).
pub async fn initialize(
    servers: &[(NodeId, String)],
    token: &str,
    wait: Duration,
) -> anyhow::Result<Outcome> {
    if servers.is_empty() {
        bail!("no servers to initialize");
    }
    let deadline = Instant::now() + wait;
    let mut links = Vec::new();
    for (id, address) in servers {
        let (stream, cluster) = reach(*id, address, token, deadline).await?;
        links.push((*id, stream, cluster));
    }
    let known: std::collections::BTreeSet<&String> =
        links.iter().filter_map(|(_, _, c)| c.as_ref()).collect();
    match known.len() {
        0 => {}
        1 => {
            let cluster = known.into_iter().next().expect("one").clone();
            let outside = links.iter().filter(|(_, _, c)| c.is_none()).map(|(id, _, _)| *id).collect();
            return Ok(Outcome::Exists { cluster, outside });
        }
        _ => {
            let list: Vec<String> = links
                .iter()
                .map(|(id, _, c)| format!("node {id}: {}", c.as_deref().unwrap_or("none")))
                .collect();
            bail!("these servers belong to different clusters ({}): nothing changed", list.join(", "));
        }
    }
    let cluster = format!("c{:016x}", crate::secret::random_u64());
    let voters: Vec<NodeId> = servers.iter().map(|(id, _)| *id).collect();
    for (id, mut stream, _) in links {
        let ask = ServerInbound::Bootstrap { id: 1, cluster: cluster.clone(), voters: voters.clone() };
        ws::send(&mut stream, &ask).await.with_context(|| format!("node {id} went away"))?;
        let answer = tokio::time::timeout(ws::CONNECT_TIMEOUT * 3, done(&mut stream))
            .await
            .with_context(|| format!("node {id} did not answer the bootstrap"))??;
        answer.map_err(|e| anyhow::anyhow!("node {id} refused: {e}"))?;
    }
    Ok(Outcome::Created { cluster })
}

/// Connects to server `id`, retrying until `deadline`; returns the link and its cluster.
async fn reach(
    id: NodeId,
    address: &str,
    token: &str,
    deadline: Instant,
) -> anyhow::Result<(ws::Stream, Option<String>)> {
    let url = crate::addr::ws_url(address)?;
    let hello =
        ServerInbound::Hello { version: PROTOCOL_VERSION, token: token.to_string(), caller: Caller::Proxy };
    let mut backoff = ws::Backoff::new(Duration::from_secs(2));
    loop {
        let welcome = |frame: ServerOutbound| match frame {
            ServerOutbound::Welcome { node, cluster, .. } => Ok((node, cluster)),
            ServerOutbound::Error { error } => Err(Some(error)),
            _ => Err(None),
        };
        match ws::open(&url, &hello, welcome).await {
            Ok((stream, (node, cluster))) => {
                if node != id {
                    bail!("the server at {address} says it is node {node}, not node {id}");
                }
                return Ok((stream, cluster));
            }
            Err(ws::ConnectError::Refused(error)) => bail!("node {id} at {address} refused: {error}"),
            Err(e) if Instant::now() >= deadline => bail!("node {id} at {address} did not answer: {e}"),
            Err(_) => backoff.wait().await,
        }
    }
}

async fn done(stream: &mut ws::Stream) -> anyhow::Result<Result<String, ApiError>> {
    loop {
        match ws::recv::<ServerOutbound>(stream).await? {
            None => bail!("the server closed the connection"),
            Some(Ok(ServerOutbound::Done { result, .. })) => return Ok(result),
            Some(Ok(ServerOutbound::Error { error })) => return Ok(Err(error)),
            Some(_) => continue,
        }
    }
}
