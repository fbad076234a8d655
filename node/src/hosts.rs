//! `consenso cluster --hosts netns`: every server on a "host" of its own — a Linux network
//! namespace with its own address on a bridge — so that its messages cross a real (virtual)
//! network instead of 127.0.0.1. Where the kernel has the netem qdisc, hosts sit in three
//! "regions" 10, 20 and 40 ms (one way, with jitter) from the bridge, so a class sees real
//! network latency. Needs root and `ip`; everything is removed when the cluster stops.
//!
//! Layout: a bridge `cn<port>` in the supervisor's namespace at 10.88.<k>.1/24 (the proxies
//! reach the servers through it); server N in namespace `cn<port>-N` at 10.88.<k>.(10+N).

use std::process::Command;

use anyhow::{Context, bail};
use shared::raft::NodeId;

/// The namespaces and links of one cluster.
pub struct Lan {
    bridge: String,
    subnet: u8,
    namespaces: std::sync::Mutex<Vec<String>>,
    /// Whether latency could be added (the kernel has netem).
    pub netem: bool,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// One-way delay of server `id`'s region, in ms: three regions in turn.
pub fn region_delay(id: NodeId) -> u32 {
    [10, 20, 40][(id as usize + 2) % 3]
}

impl Lan {
    /// The bridge for the cluster on `port`.
    pub fn create(port: u16) -> anyhow::Result<Lan> {
        let bridge = format!("cn{port}");
        let subnet = (port % 250) as u8 + 1;
        ip(&["link", "add", &bridge, "type", "bridge"]).context(
            "--hosts netns needs root (network namespaces, a bridge and veth pairs): run as root, or without \
             --hosts",
        )?;
        let lan = Lan { bridge, subnet, namespaces: std::sync::Mutex::new(Vec::new()), netem: true };
        ip(&["addr", "add", &format!("10.88.{subnet}.1/24"), "dev", &lan.bridge])?;
        ip(&["link", "set", &lan.bridge, "up"])?;
        Ok(lan)
    }

    fn namespace(&self, id: NodeId) -> String {
        format!("{}-{id}", self.bridge)
    }

    /// Server `id`'s address (its port is always 7001: each host has its own IP).
    pub fn address(&self, id: NodeId) -> String {
        format!("10.88.{}.{}:7001", self.subnet, 10 + id)
    }

    /// Creates server `id`'s host, plugged into the bridge, in its region (a host left from
    /// an earlier life of the id is replaced).
    pub fn add_host(&mut self, id: NodeId) -> anyhow::Result<()> {
        let ns = self.namespace(id);
        self.remove_host(id);
        let _ = ip(&["link", "del", &format!("{}-{id}b", self.bridge)]);
        ip(&["netns", "add", &ns])?;
        self.namespaces.lock().expect("namespaces lock").push(ns.clone());
        let (inside, outside) = (format!("{}-{id}a", self.bridge), format!("{}-{id}b", self.bridge));
        ip(&["link", "add", &inside, "type", "veth", "peer", "name", &outside])?;
        ip(&["link", "set", &inside, "netns", &ns])?;
        ip(&["link", "set", &outside, "master", &self.bridge])?;
        ip(&["link", "set", &outside, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("10.88.{}.{}/24", self.subnet, 10 + id), "dev", &inside])?;
        ip(&["-n", &ns, "link", "set", &inside, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let delay = region_delay(id);
        let netem = Command::new("ip")
            .args(["netns", "exec", &ns, "tc", "qdisc", "add", "dev", &inside, "root", "netem"])
            .args(["delay", &format!("{delay}ms"), &format!("{}ms", delay / 5)])
            .output()
            .context("cannot run `tc`")?;
        self.netem &= netem.status.success();
        Ok(())
    }

    /// Removes server `id`'s host (it left the cluster).
    pub fn remove_host(&mut self, id: NodeId) {
        let ns = self.namespace(id);
        let _ = ip(&["netns", "del", &ns]);
        self.namespaces.lock().expect("namespaces lock").retain(|n| *n != ns);
    }

    /// The command that runs `exe` on server `id`'s host.
    pub fn command(&self, id: NodeId, exe: &std::path::Path) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command.args(["netns", "exec", &self.namespace(id)]).arg(exe);
        command
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in self.namespaces.lock().expect("namespaces lock").iter() {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
