//! Addresses as users type them: `host:port`, `ws://host:port`, `ws://host:port/ws`, and node
//! lists `1=host:port,2=host:port`.

use anyhow::{Context, bail};
use shared::raft::NodeId;

/// How the CLI tools reach a cluster: its proxies, and the admin token if any.
#[derive(clap::Args, Clone)]
pub struct ProxyArgs {
    /// Proxies to try, in order: host:port or ws://host:port, comma-separated
    #[arg(long, env = "CONSENSO_PROXY", default_value = "127.0.0.1:8080")]
    pub proxy: String,
    /// The cluster's token: needed to write and for admin commands (crash, restart, pause,
    /// partition, …, --kill-leader-every); without it, only reads
    #[arg(long, env = "CONSENSO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where to find the token when none is given: `consenso cluster` writes it, readable only
    /// by its owner, into its data directory
    #[arg(long, default_value = "consenso-data/token")]
    pub token_file: std::path::PathBuf,
}

impl ProxyArgs {
    /// The token given, else the one in the token file, if readable.
    pub fn token(&self) -> Option<String> {
        self.token.clone().filter(|t| !t.is_empty()).or_else(|| {
            let text = std::fs::read_to_string(&self.token_file).ok()?;
            Some(text.trim().to_string()).filter(|t| !t.is_empty())
        })
    }
}

/// A WebSocket URL for an address given as `host:port` or `ws://host:port[/path]`.
pub fn ws_url(address: &str) -> anyhow::Result<String> {
    let address = address.trim();
    let rest = address.strip_prefix("ws://").unwrap_or(address);
    if rest.starts_with("wss://") || address.starts_with("http") {
        bail!("'{address}': expected host:port or ws://host:port");
    }
    let (host_port, path) = match rest.split_once('/') {
        Some((hp, p)) if !p.is_empty() => (hp, format!("/{p}")),
        Some((hp, _)) => (hp, "/ws".to_string()),
        None => (rest, "/ws".to_string()),
    };
    let (host, port) = host_port.rsplit_once(':').with_context(|| format!("'{address}': missing :port"))?;
    if host.is_empty() {
        bail!("'{address}': missing host");
    }
    port.parse::<u16>().with_context(|| format!("'{address}': '{port}' is not a port"))?;
    Ok(format!("ws://{host_port}{path}"))
}

/// `host:port` of an address given in any accepted form.
pub fn host_port(address: &str) -> anyhow::Result<String> {
    let url = ws_url(address)?;
    let rest = url.trim_start_matches("ws://");
    Ok(rest.split('/').next().unwrap_or(rest).to_string())
}

/// Parses `1=host:port,2=host:port`.
pub fn node_list(spec: &str) -> anyhow::Result<Vec<(NodeId, String)>> {
    let mut nodes = Vec::new();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, address) =
            item.split_once('=').with_context(|| format!("'{item}': expected ID=HOST:PORT"))?;
        let id: NodeId = id.trim().parse().with_context(|| format!("'{id}' is not a node id"))?;
        if id == 0 {
            bail!("node ids start at 1");
        }
        host_port(address)?;
        if nodes.iter().any(|(other, _)| *other == id) {
            bail!("node {id} is listed twice");
        }
        nodes.push((id, address.trim().to_string()));
    }
    if nodes.is_empty() {
        bail!("no nodes in '{spec}'");
    }
    nodes.sort();
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_both_forms() {
        assert_eq!(ws_url("127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("ws://127.0.0.1:8080").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(ws_url("ws://127.0.0.1:8080/ws").unwrap(), "ws://127.0.0.1:8080/ws");
        assert_eq!(host_port("ws://localhost:9/ws").unwrap(), "localhost:9");
        assert!(ws_url("127.0.0.1").is_err());
        assert!(ws_url("127.0.0.1:notaport").is_err());
    }

    #[test]
    fn node_lists() {
        assert_eq!(node_list("2=a:2, 1=a:1").unwrap(), vec![(1, "a:1".into()), (2, "a:2".into())]);
        assert!(node_list("1=a:1,1=a:2").is_err());
        assert!(node_list("x=a:1").is_err());
        assert!(node_list("0=a:1").is_err());
    }
}
