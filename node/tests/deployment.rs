//! The Kubernetes manifest's start-up logic, run with real processes and the very flags the pods
//! get (read from deploy/kubernetes/consenso.yaml; only DNS names, ports and paths are mapped
//! to this machine): the Job creates the cluster once, a pod that lost its volume comes back
//! outside the cluster and costs no write until it is removed and added again, and scaling up
//! goes through add-server.

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use shared::protocol::ClusterStatus;
use support::{BIN, TOKEN, free_ports, serial, wait_for};

/// The `args:` lists of the manifest, in order: the StatefulSet's server, the Job's init, the
/// proxies' Deployment.
fn manifest_args() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(support::repo_root().join("deploy/kubernetes/consenso.yaml")).unwrap();
    let mut blocks = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() != "args:" {
            continue;
        }
        let mut args = Vec::new();
        while let Some(next) = lines.peek() {
            let Some(arg) = next.trim().strip_prefix("- ") else { break };
            args.push(arg.to_string());
            lines.next();
        }
        blocks.push(args);
    }
    assert_eq!(blocks.len(), 3, "server, init and proxy args in the manifest: {blocks:?}");
    blocks
}

/// This machine's stand-in for the cluster's network: pod `consenso-K` at a port of its own.
struct Place {
    base: u16,
    dir: tempfile::TempDir,
}

impl Place {
    fn pod_port(&self, ordinal: u16) -> u16 {
        self.base + 10 + ordinal
    }

    /// A manifest argument as it reads on this machine.
    fn map(&self, arg: &str, ordinal: Option<u16>) -> Option<String> {
        let mut arg = arg.to_string();
        if let Some(k) = ordinal {
            arg = arg.replace("$(POD_NAME)", &format!("consenso-{k}"));
            if arg == "--listen=0.0.0.0:7001" {
                return Some(format!("--listen=127.0.0.1:{}", self.pod_port(k)));
            }
            if arg == "--data-dir=/data" {
                return Some(format!("--data-dir={}", self.dir.path().join(format!("pod-{k}")).display()));
            }
        }
        if arg == "--listen=0.0.0.0:8080" {
            return Some(format!("--listen=127.0.0.1:{}", self.base));
        }
        if arg.starts_with("--web-dir=") {
            return None;
        }
        for k in 0..8 {
            arg = arg.replace(
                &format!("consenso-{k}.consenso-peers:7001"),
                &format!("127.0.0.1:{}", self.pod_port(k)),
            );
        }
        Some(arg)
    }

    fn data(&self, ordinal: u16) -> std::path::PathBuf {
        self.dir.path().join(format!("pod-{ordinal}"))
    }
}

struct Pods {
    place: Place,
    server: Vec<String>,
    init: Vec<String>,
    children: Vec<Child>,
}

impl Pods {
    fn start_pod(&mut self, ordinal: u16) -> usize {
        let args: Vec<String> = self.server.iter().filter_map(|a| self.place.map(a, Some(ordinal))).collect();
        let log = std::fs::File::create(self.place.dir.path().join(format!("pod-{ordinal}.log"))).unwrap();
        let child = Command::new(BIN)
            .args(&args)
            .env("HOSTNAME", format!("consenso-{ordinal}"))
            .env("CONSENSO_TOKEN", TOKEN)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(child);
        self.children.len() - 1
    }

    fn run_init(&self) -> Output {
        let args: Vec<String> = self.init.iter().filter_map(|a| self.place.map(a, None)).collect();
        Command::new(BIN).args(&args).env("CONSENSO_TOKEN", TOKEN).output().unwrap()
    }

    fn client(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(["client", "--proxy", &format!("127.0.0.1:{}", self.place.base), "--token", TOKEN])
            .args(["--timeout", "10"])
            .args(args)
            .output()
            .unwrap()
    }

    fn status(&self) -> Option<ClusterStatus> {
        serde_json::from_slice(&self.client(&["status", "--json"]).stdout).ok()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.client(args);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(out.status.success(), "{args:?}: {text}{}", String::from_utf8_lossy(&out.stderr));
        text
    }

    /// The voters are `voters`, all admitted and at the leader's commit index.
    fn settled(&self, voters: &[u64]) -> Option<ClusterStatus> {
        let s = self.status()?;
        let leader = s.leader?;
        let commit = s.nodes.iter().find(|n| n.id == leader)?.commit?;
        let caught_up = voters.iter().all(|v| {
            s.nodes.iter().any(|n| n.id == *v && n.commit == Some(commit) && n.admitted == Some(true))
        });
        (s.members.voters == voters && s.members.learners.is_empty() && caught_up).then_some(s)
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn empty(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap()
        } else {
            std::fs::remove_file(path).unwrap()
        }
    }
}

#[test]
fn the_kubernetes_start_up_creates_the_cluster_once_keeps_a_wiped_pod_out_and_grows_by_add_server() {
    let _turn = serial();
    let [server, init, proxy]: [Vec<String>; 3] = manifest_args().try_into().unwrap();
    assert!(!server.iter().any(|a| a == "--join" || a.starts_with("--voters")), "{server:?}");
    let mut pods = Pods {
        place: Place { base: free_ports(), dir: tempfile::tempdir().unwrap() },
        server,
        init,
        children: Vec::new(),
    };
    let pod: Vec<usize> = (0..3).map(|k| pods.start_pod(k)).collect();
    let proxy_args: Vec<String> = proxy.iter().filter_map(|a| pods.place.map(a, None)).collect();
    let child = Command::new(BIN)
        .args(&proxy_args)
        .env("CONSENSO_TOKEN", TOKEN)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    pods.children.push(child);

    // Pods alone form no cluster: nobody leads until the Job has run.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pods.status().and_then(|s| s.leader), None, "servers made themselves voters");
    let created = pods.run_init();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert!(String::from_utf8_lossy(&created.stdout).contains("created"));
    wait_for(Duration::from_secs(30), "the cluster the Job created", || pods.settled(&[1, 2, 3]));
    for i in 0..20 {
        pods.ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    // The Job run again (a retry, a re-apply) changes nothing.
    let again = pods.run_init();
    assert!(again.status.success() && String::from_utf8_lossy(&again.stdout).contains("already exists"));

    // Pod consenso-1 (node 2) loses its volume and comes back with the same flags.
    let _ = pods.children[pod[1]].kill();
    let _ = pods.children[pod[1]].wait();
    empty(&pods.place.data(1));
    pods.start_pod(1);
    let outside = wait_for(Duration::from_secs(20), "node 2 back, outside the cluster", || {
        let s = pods.status()?;
        let out = s.nodes.iter().any(|n| n.id == 2 && n.term.is_some() && n.admitted == Some(false));
        out.then_some(s)
    });
    assert!(outside.members.voters.contains(&2), "still a voter in the configuration until removed");
    for i in 20..25 {
        pods.ok(&["put", &format!("k{i}"), &format!("v{i}")]);
    }
    // The safe way back: remove it, then add it again under its pod's name.
    pods.ok(&["remove-server", "2"]);
    pods.ok(&["add-server", "2", "--address", &format!("127.0.0.1:{}", pods.place.pod_port(1))]);
    wait_for(Duration::from_secs(60), "node 2 a voter again, caught up", || pods.settled(&[1, 2, 3]));

    // Scaling up: pod consenso-3 starts with the same flags, waits, and joins when added.
    pods.start_pod(3);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(pods.status().unwrap().members.voters, vec![1, 2, 3], "a new pod never makes itself a voter");
    pods.ok(&["add-server", "4", "--address", &format!("127.0.0.1:{}", pods.place.pod_port(3))]);
    wait_for(Duration::from_secs(60), "node 4 a voter, caught up", || pods.settled(&[1, 2, 3, 4]));
    for i in 0..25 {
        let out = pods.ok(&["get", &format!("k{i}"), "--consistency", "linearizable"]);
        assert!(out.contains(&format!("v{i}")), "k{i}: {out}");
    }
}
