//! The cluster across "machines": every server and the proxy in its own network namespace
//! with its own address on a bridge, like hosts on a LAN, and — where the kernel has netem —
//! latency, jitter and loss between them (three "regions", 20–80 ms round trips). Election,
//! replication, failover, a partition made by taking a link down (not the built-in fault
//! layer) and a membership change, all over that network.
//!
//! Needs root and `ip`; without them it says why and checks nothing (it cannot).

mod support;

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{BIN, TOKEN, serial};

/// One run's namespaces and links, removed on drop.
struct Lan {
    tag: String,
    namespaces: Vec<String>,
    processes: Vec<Child>,
    netem: bool,
    dir: tempfile::TempDir,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Lan {
    /// A bridge in its own namespace, and nothing attached yet.
    fn new() -> Result<Lan, String> {
        let tag = format!("c{}", std::process::id() % 100_000);
        let lan = Lan {
            tag: tag.clone(),
            namespaces: Vec::new(),
            processes: Vec::new(),
            netem: false,
            dir: tempfile::tempdir().unwrap(),
        };
        let mut lan = lan;
        let hub = format!("{tag}-hub");
        ip(&["netns", "add", &hub])?;
        lan.namespaces.push(hub.clone());
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        Ok(lan)
    }

    fn hub(&self) -> String {
        format!("{}-hub", self.tag)
    }

    /// A host `name` at 10.88.0.`host`, plugged into the bridge, with `delay_ms` one way (and
    /// a fifth of it as jitter, and 0.5 % loss) when netem exists.
    fn host(&mut self, name: &str, host: u8, delay_ms: u32) -> Result<String, String> {
        let ns = format!("{}-{name}", self.tag);
        ip(&["netns", "add", &ns])?;
        self.namespaces.push(ns.clone());
        let (inside, outside) = (format!("{}{name}a", self.tag), format!("{}{name}b", self.tag));
        ip(&["link", "add", &inside, "type", "veth", "peer", "name", &outside])?;
        ip(&["link", "set", &inside, "netns", &ns])?;
        ip(&["link", "set", &outside, "netns", &self.hub()])?;
        ip(&["-n", &self.hub(), "link", "set", &outside, "master", "br0"])?;
        ip(&["-n", &self.hub(), "link", "set", &outside, "up"])?;
        ip(&["-n", &ns, "addr", "add", &format!("10.88.0.{host}/24"), "dev", &inside])?;
        ip(&["-n", &ns, "link", "set", &inside, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        let netem = Command::new("ip")
            .args(["netns", "exec", &ns, "tc", "qdisc", "add", "dev", &inside, "root", "netem"])
            .args(["delay", &format!("{delay_ms}ms"), &format!("{}ms", delay_ms / 5), "loss", "0.5%"])
            .output()
            .map_err(|e| e.to_string())?;
        self.netem = netem.status.success();
        Ok(format!("10.88.0.{host}"))
    }

    /// Takes `name`'s cable out of the bridge (or plugs it back).
    fn cable(&self, name: &str, plugged: bool) {
        let outside = format!("{}{name}b", self.tag);
        ip(&["-n", &self.hub(), "link", "set", &outside, if plugged { "up" } else { "down" }]).unwrap();
    }

    fn spawn(&mut self, name: &str, args: &[String]) -> usize {
        let ns = format!("{}-{name}", self.tag);
        let log = std::fs::File::create(self.dir.path().join(format!("{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns, BIN])
            .args(args)
            .env("CONSENSO_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.processes.push(child);
        self.processes.len() - 1
    }

    /// `consenso client` from the proxy's namespace.
    fn client(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &format!("{}-proxy", self.tag), BIN, "client"])
            .args(["--proxy", "10.88.0.2:8080", "--token", TOKEN, "--timeout", "10"])
            .args(args)
            .output()
            .unwrap()
    }

    fn status(&self) -> Option<serde_json::Value> {
        let out = self.client(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).ok()
    }

    fn leader(&self) -> Option<u64> {
        let s = self.status()?;
        let leader = s["leader"].as_u64()?;
        s["nodes"].as_array()?.iter().any(|n| n["id"] == leader && n["role"] == "leader").then_some(leader)
    }

    fn commit_of(&self, node: u64) -> Option<u64> {
        let s = self.status()?;
        s["nodes"].as_array()?.iter().find(|n| n["id"] == node)?["commit"].as_u64()
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for p in &mut self.processes {
            let _ = p.kill();
            let _ = p.wait();
        }
        for ns in self.namespaces.iter().rev() {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

fn wait<T>(within: Duration, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn put(lan: &Lan, key: &str) {
    let out = lan.client(&["put", key, "v"]);
    assert!(out.status.success(), "put {key}: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_cluster_of_network_namespaces_elects_replicates_fails_over_heals_and_grows() {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    if !root {
        eprintln!("SKIPPED: network namespaces need root; nothing was checked");
        return;
    }
    let _turn = serial();
    let mut lan = match Lan::new() {
        Ok(lan) => lan,
        Err(e) => {
            eprintln!("SKIPPED: cannot create network namespaces here ({e}); nothing was checked");
            return;
        }
    };
    // Three regions: one-way 10, 20 and 40 ms from the bridge, so 20–80 ms round trips.
    let servers: Vec<(u64, String)> = [(1, 10), (2, 20), (3, 40)]
        .into_iter()
        .map(|(id, delay)| (id, lan.host(&format!("n{id}"), 10 + id as u8, delay).unwrap()))
        .collect();
    let proxy = lan.host("proxy", 2, 5).unwrap();
    if lan.netem {
        eprintln!("netem: 10/20/40 ms one way (±20 %), 0.5 % loss per host");
    } else {
        eprintln!("NOTE: this kernel has no netem qdisc: no latency or loss was added between hosts");
    }
    let peers = servers.iter().map(|(id, a)| format!("{id}={a}:7001")).collect::<Vec<_>>().join(",");
    let data = lan.dir.path().to_path_buf();
    let mut pids = std::collections::BTreeMap::new();
    for (id, address) in &servers {
        let args = vec![
            "server".to_string(),
            format!("--id={id}"),
            format!("--peers={peers}"),
            format!("--listen={address}:7001"),
            format!("--data-dir={}", data.join(format!("n{id}")).display()),
            // Timeouts for a WAN: well above the slowest round trip.
            "--election-timeout=500".to_string(),
            "--heartbeat=100".to_string(),
        ];
        pids.insert(*id, lan.spawn(&format!("n{id}"), &args));
    }
    lan.spawn("proxy", &["proxy".into(), format!("--listen={proxy}:8080"), format!("--nodes={peers}")]);
    // Servers started by hand form a cluster once it is created from them, as on real machines.
    let init = Command::new("ip")
        .args(["netns", "exec", &format!("{}-proxy", lan.tag), BIN, "init", "--servers", &peers])
        .env("CONSENSO_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(init.status.success(), "consenso init: {}", String::from_utf8_lossy(&init.stderr));

    // Election, then replication across the regions.
    let leader = wait(Duration::from_secs(30), "a leader", || lan.leader());
    for i in 0..20 {
        put(&lan, &format!("lan-{i}"));
    }
    let get = lan.client(&["get", "lan-7", "--consistency", "linearizable"]);
    assert!(String::from_utf8_lossy(&get.stdout).contains('v'));

    // Failover: the leader's process dies; another region takes over, nothing is lost.
    let _ = lan.processes[pids[&leader]].kill();
    let second = wait(Duration::from_secs(30), "a new leader", || lan.leader().filter(|l| *l != leader));
    put(&lan, "after-failover");

    // A partition made by the network itself: one server's cable out of the bridge.
    let cut = [1, 2, 3].into_iter().find(|n| *n != leader && *n != second).unwrap();
    // Bring the killed server back first, so that a majority stays without the cut one.
    let (old_id, old_address) = servers.iter().find(|(id, _)| *id == leader).unwrap().clone();
    let restart = vec![
        "server".to_string(),
        format!("--id={old_id}"),
        format!("--peers={peers}"),
        format!("--listen={old_address}:7001"),
        format!("--data-dir={}", data.join(format!("n{old_id}")).display()),
        "--election-timeout=500".to_string(),
        "--heartbeat=100".to_string(),
    ];
    lan.spawn(&format!("n{old_id}"), &restart);
    wait(Duration::from_secs(30), "the restarted server caught up", || {
        let l = lan.leader()?;
        (lan.commit_of(old_id)? == lan.commit_of(l)?).then_some(())
    });
    lan.cable(&format!("n{cut}"), false);
    let before = wait(Duration::from_secs(10), "the cut server's commit", || lan.commit_of(cut));
    for i in 0..5 {
        put(&lan, &format!("during-cut-{i}"));
    }
    std::thread::sleep(Duration::from_secs(1));
    if let Some(now) = lan.commit_of(cut) {
        assert_eq!(now, before, "a server without a cable received entries");
    }
    lan.cable(&format!("n{cut}"), true);
    wait(Duration::from_secs(30), "the reconnected server to catch up", || {
        let l = lan.leader()?;
        (lan.commit_of(cut)? == lan.commit_of(l)?).then_some(())
    });

    // Membership across the LAN: a fourth host joins and becomes a voter.
    let fourth = lan.host("n4", 14, 20).unwrap();
    let joining = vec![
        "server".to_string(),
        "--id=4".to_string(),
        format!("--peers={peers},4={fourth}:7001"),
        format!("--listen={fourth}:7001"),
        format!("--data-dir={}", data.join("n4").display()),
        "--election-timeout=500".to_string(),
        "--heartbeat=100".to_string(),
    ];
    lan.spawn("n4", &joining);
    let added = lan.client(&["add-server", "4", "--address", &format!("{fourth}:7001")]);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    wait(Duration::from_secs(60), "node 4 a voter, caught up", || {
        let s = lan.status()?;
        let voters = s["members"]["voters"].as_array()?.len();
        let l = lan.leader()?;
        (voters == 4 && lan.commit_of(4)? == lan.commit_of(l)?).then_some(())
    });
    for i in 0..20 {
        let out = lan.client(&["get", &format!("lan-{i}"), "--consistency", "linearizable"]);
        assert!(String::from_utf8_lossy(&out.stdout).contains('v'), "lan-{i} lost");
    }
}

#[test]
fn consenso_cluster_with_hosts_netns_runs_each_server_on_its_own_address_and_cleans_up() {
    let root = Command::new("id").arg("-u").output().map(|o| o.stdout == b"0\n").unwrap_or(false);
    // Root is not enough in every container: try what the cluster will do.
    let probe = format!("cp{}", std::process::id() % 100_000);
    let can = root && ip(&["link", "add", &probe, "type", "bridge"]).is_ok();
    let _ = ip(&["link", "del", &probe]);
    let can = can && ip(&["netns", "add", &probe]).is_ok();
    let _ = ip(&["netns", "del", &probe]);
    if !can {
        eprintln!(
            "SKIPPED: `cluster --hosts netns` needs root, `ip`, bridges and namespaces; nothing was checked"
        );
        return;
    }
    let _turn = serial();
    let cluster = support::Cluster::start_with(3, 1, &["--hosts", "netns"]);
    let status = cluster.status().unwrap();
    for node in &status.nodes {
        assert!(node.address.starts_with("10.88."), "node {} at {}", node.id, node.address);
    }
    let out = Command::new(BIN)
        .args(["client", "--proxy", &cluster.proxy(0), "--token", TOKEN, "put", "across", "hosts"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bridge = format!("cn{}", cluster.port);
    drop(cluster);
    let namespaces =
        String::from_utf8(Command::new("ip").args(["netns", "list"]).output().unwrap().stdout).unwrap();
    assert!(!namespaces.contains(&bridge), "namespaces left behind:\n{namespaces}");
    let link = Command::new("ip").args(["link", "show", &bridge]).output().unwrap();
    assert!(!link.status.success(), "the bridge {bridge} was left behind");
}
