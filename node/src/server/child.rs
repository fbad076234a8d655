//! A hosted node's process: started with a shell command, fed lines on its stdin, read line
//! by line on its stdout, its stderr passed to this server's log.
//!
//! Nothing the node does may stop the server: lines are written by a thread of their own
//! through a bounded queue (a node that never reads its input loses lines, counted, instead of
//! blocking the server), lines are read with a length limit (a longer one is skipped and
//! reported), and a node that floods its output is slowed down by its own pipe, never by an
//! unbounded queue here. The node dies with this server: a `kill -9` of the server is a crash of
//! the node: the supervisor signals the server's process group, which
//! the node is in, and a node whose input closes should exit (Maelstrom's nodes do).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use shared::hosted::MAX_LINE_BYTES;
use shared::raft::NodeId;

use super::Input;
use super::raft_loop::InputSender;

/// Lines waiting to be written to the node at most; more are dropped (the node is not reading).
const STDIN_QUEUE: usize = 4096;
/// Lines read from the node and not yet handled at most; reading waits beyond this.
const STDOUT_QUEUE: usize = 4096;
/// The node's last stderr lines kept, to say why it exited.
const STDERR_KEPT: usize = 12;

pub struct NodeProcess {
    child: Child,
    to_node: SyncSender<String>,
    /// Lines dropped because the node did not read its input.
    pub dropped: Arc<AtomicU64>,
    /// The node's last stderr lines.
    pub stderr_tail: Arc<Mutex<Vec<String>>>,
    stderr_reader: std::thread::JoinHandle<()>,
}

impl NodeProcess {
    /// Starts `command` (through `sh -c`) as node `me`, with `data_dir` to keep its state in.
    /// What it writes arrives as `Input::FromNode`; its exit as `Input::NodeExited`.
    pub fn start(
        command: &str,
        me: NodeId,
        data_dir: &std::path::Path,
        inputs: InputSender,
    ) -> anyhow::Result<NodeProcess> {
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let mut shell = Command::new("sh");
        shell
            .arg("-c")
            .arg(format!("exec {command}"))
            .env("CONSENSO_NODE_ID", shared::hosted::node_name(me))
            .env("CONSENSO_DATA_DIR", data_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child =
            shell.spawn().with_context(|| format!("cannot start the node's command `{command}`"))?;
        tracing::info!("node {me}: started `{command}` (pid {})", child.id());
        let stdin = child.stdin.take().expect("piped");
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let (to_node, queue) = sync_channel(STDIN_QUEUE);
        std::thread::Builder::new().name("node-stdin".into()).spawn(move || write_lines(stdin, queue))?;
        let pending = Arc::new(AtomicUsize::new(0));
        let reader_inputs = inputs.clone();
        std::thread::Builder::new()
            .name("node-stdout".into())
            .spawn(move || read_lines(stdout, reader_inputs, pending))?;
        let stderr_tail = Arc::new(Mutex::new(Vec::new()));
        let tail = stderr_tail.clone();
        let stderr_reader = std::thread::Builder::new().name("node-stderr".into()).spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                tracing::info!("node {me} says: {line}");
                let mut tail = tail.lock().expect("stderr tail lock");
                tail.push(line);
                if tail.len() > STDERR_KEPT {
                    tail.remove(0);
                }
            }
        })?;
        Ok(NodeProcess { child, to_node, dropped: Arc::new(AtomicU64::new(0)), stderr_tail, stderr_reader })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Queues a line for the node; false if it was dropped (the node is not reading).
    pub fn send(&self, line: String) -> bool {
        match self.to_node.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Whether the process ended, and how.
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        // Its last words may still be in the pipe: give the reader a moment to take them.
        for _ in 0..20 {
            if self.stderr_reader.is_finished() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let tail = self.stderr_tail.lock().expect("stderr tail lock").join("\n  ");
        let tail = if tail.is_empty() { String::new() } else { format!("; its last words:\n  {tail}") };
        Some(format!("the node's process exited ({status}){tail}"))
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_lines(stdin: ChildStdin, queue: std::sync::mpsc::Receiver<String>) {
    let mut out = std::io::BufWriter::new(stdin);
    while let Ok(line) = queue.recv() {
        let mut ok = writeln!(out, "{line}").is_ok();
        // Write whatever else is waiting before one flush.
        while let Ok(more) = queue.try_recv() {
            ok &= writeln!(out, "{more}").is_ok();
        }
        if !ok || out.flush().is_err() {
            return; // The node closed its input or exited: its exit is reported elsewhere.
        }
    }
}

/// Reads the node's output a line at a time (at most `MAX_LINE_BYTES`; longer ones are
/// skipped and reported), and reports its end.
fn read_lines(stdout: std::process::ChildStdout, inputs: InputSender, pending: Arc<AtomicUsize>) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader).take(MAX_LINE_BYTES as u64 + 1).read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let complete = line.last() == Some(&b'\n');
        let item = if !complete && line.len() > MAX_LINE_BYTES {
            // Skip the rest of the overlong line.
            let mut rest = Vec::new();
            let _ = reader.read_until(b'\n', &mut rest);
            Err(format!("a line longer than {MAX_LINE_BYTES} bytes"))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) => Ok(text.trim_end().to_string()),
                Err(_) => Err(format!(
                    "a line that is not UTF-8: {:?}",
                    String::from_utf8_lossy(&line[..line.len().min(80)])
                )),
            }
        };
        if matches!(&item, Ok(text) if text.is_empty()) {
            continue;
        }
        // A flooding node waits here (and then in its own writes), not in memory.
        while pending.load(Ordering::Relaxed) >= STDOUT_QUEUE {
            std::thread::sleep(Duration::from_millis(1));
        }
        pending.fetch_add(1, Ordering::Relaxed);
        if inputs.send(Input::FromNode { line: item, pending: pending.clone() }).is_err() {
            return;
        }
    }
    // A node that exits closes its output first: give the exit a moment to be seen, here on
    // this reader's thread rather than on the server's one thread.
    std::thread::sleep(Duration::from_millis(50));
    let _ = inputs.send(Input::NodeOutputClosed);
}
