//! `consenso server --server-cmd CMD`: the server is a student's node, a process speaking
//! Maelstrom's JSON lines (`shared::hosted`, `docs/node-protocol.md`), and this task is its
//! host in place of the Raft loop, on the server's one thread.
//!
//! Everything around the node is a Consenso server's: the same links to peers and proxies, the
//! same outbox (so its messages are held, stepped, delayed, dropped and cut like any server's),
//! the same clock and fault settings, the same statuses and observation events — built from the
//! node's status lines — so the page, the monitor, lessons and recordings work unchanged.
//! Client requests become `lin-kv` operations; a node that does not answer one in time gets an
//! *unknown outcome* for it (it keeps no sessions, so the proxy must not retry a write).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use shared::event::Event;
use shared::hosted::{
    ClientOp, FromNode, Tracker, client_line, deliver_line, init_line, parse_line, time_line,
};
use shared::protocol::{
    ClockStatus, HostedStatus, ServerOutbound, ServerStatus, TimeCommand, TimeReport, encode,
};
use shared::raft::{Body, Message, Millis, NodeId};
use shared::replica::{Reply, ReplyError};

use super::Shared;
use super::child::NodeProcess;
use super::clock::Clock;
use super::faults::policy;
use super::outbox::{Link, Outbox};
use super::raft_loop::{Input, InputReceiver, next_inputs};

/// How often subscribers get a status report.
const STATUS_EVERY: Duration = Duration::from_millis(250);
/// How long (on the server's clock) a node may take to answer a client operation.
const ANSWER_WITHIN_MS: Millis = 2_000;
/// How long (real time) a node may take to answer `init` before it is reported.
const INIT_WITHIN: Duration = Duration::from_secs(5);
/// Operations given up on, remembered so that a late answer is not taken for a wrong one.
const EXPIRED_KEPT: usize = 4096;
/// A reported election timer this close to the last one is the same timer.
const TIMER_SLACK_MS: Millis = 5;
/// Problems reported to observers at most this often (all are counted in the status).
const PROBLEMS_EVERY: Duration = Duration::from_secs(1);

pub struct Options {
    pub command: String,
    pub data_dir: std::path::PathBuf,
    pub voters: Vec<NodeId>,
    pub election_timeout: Millis,
    pub heartbeat: Millis,
    pub seed: u64,
    pub links: BTreeMap<NodeId, Link>,
    pub inputs: InputReceiver,
}

/// A client operation sent to the node.
struct Pending {
    connection: u64,
    id: u64,
    op: ClientOp,
    deadline: Millis,
}

struct Host {
    shared: Arc<Shared>,
    node: NodeProcess,
    tracker: Tracker,
    outbox: Outbox,
    clock: Clock,
    election_timeout: Millis,
    heartbeat: Millis,
    /// When the node's election timer fires, on the server's clock, if it reported one.
    election_deadline: Option<Millis>,
    pending: BTreeMap<u64, Pending>,
    /// Operations given up on, whose answers may still come (and are then ignored).
    expired: std::collections::VecDeque<u64>,
    next_msg_id: u64,
    blocked_from: Vec<NodeId>,
    events: Vec<Event>,
    status: HostedStatus,
    started: Instant,
    /// The node was told late for `init_ok`.
    init_late: bool,
    last_problem_reported: Option<Instant>,
    next_status: Instant,
    published: super::EventBatch,
}

pub async fn run(shared: Arc<Shared>, options: Options) -> anyhow::Result<()> {
    let Options { command, data_dir, voters, election_timeout, heartbeat, seed, links, mut inputs } = options;
    let faults = shared.faults.get();
    let clock = Clock::new(faults.time_scale);
    let node = NodeProcess::start(&command, shared.id, &data_dir, shared.inputs.clone())?;
    let me = shared.id;
    let settings = serde_json::json!({
        "time_scale": faults.time_scale,
        "time_stopped": faults.time_stopped,
        "data_dir": data_dir,
        "election_timeout_ms": election_timeout,
        "heartbeat_ms": heartbeat,
    });
    node.send(init_line(me, &voters, settings));
    let mut host = Host {
        outbox: Outbox::new(seed, policy(&faults, election_timeout), links),
        tracker: Tracker::new(me, voters),
        clock,
        election_timeout,
        heartbeat,
        election_deadline: None,
        pending: BTreeMap::new(),
        expired: std::collections::VecDeque::new(),
        next_msg_id: 1,
        blocked_from: Vec::new(),
        events: Vec::new(),
        status: HostedStatus { command, ..HostedStatus::default() },
        started: Instant::now(),
        init_late: false,
        last_problem_reported: None,
        next_status: Instant::now(),
        published: super::EventBatch::default(),
        node,
        shared,
    };
    host.apply_faults(false);
    loop {
        let Some(batch) = next_inputs(&mut inputs, host.wait()).await else { return Ok(()) };
        for input in batch {
            if host.input(input)? {
                return Ok(());
            }
        }
        host.turn()?;
        // Let the network tasks write this turn's replies and messages before the next one.
        tokio::task::yield_now().await;
    }
}

impl Host {
    fn wait(&self) -> Duration {
        let status = self.next_status.saturating_duration_since(Instant::now());
        let answer = self.pending.values().map(|p| p.deadline).min().and_then(|d| self.clock.until(d));
        [answer, self.outbox.next_wake(&self.clock)].into_iter().flatten().fold(status, Duration::min)
    }

    /// Handles one input; true when the loop should end.
    fn input(&mut self, input: Input) -> anyhow::Result<bool> {
        match input {
            Input::FromNode { line, pending } => {
                pending.fetch_sub(1, Ordering::Relaxed);
                match line.and_then(|l| parse_line(&l, self.shared.id)) {
                    Ok(said) => self.heard(said),
                    Err(problem) => self.problem(problem),
                }
            }
            Input::NodeOutputClosed => {
                // It exited (said at the next turn), or it lives on mute: it can never answer.
                // (The reader waited a moment before saying so, so that an exit shows first.)
                if self.node.exited().is_none() {
                    self.problem("the node closed its output: it can send nothing any more".to_string());
                }
            }
            Input::Peer(msg) if self.blocked_from.contains(&msg.from) => self.outbox.lost_on_arrival(&msg),
            Input::Peer(Message { from, to, body: Body::Foreign { body, .. }, .. }) => {
                self.tell(deliver_line(from, to, &body));
            }
            Input::Peer(msg) => {
                self.problem(format!("a Consenso server's {} reached a hosted node", msg.body.kind().name()));
            }
            Input::Request { connection, id, request } => {
                let msg_id = self.next_msg_id;
                self.next_msg_id += 1;
                match client_line(self.shared.id, msg_id, &request) {
                    Ok((op, line)) => {
                        let deadline = self.clock.now() + ANSWER_WITHIN_MS;
                        self.pending.insert(msg_id, Pending { connection, id, op, deadline });
                        self.tell(line);
                    }
                    Err(reply) => self.reply(connection, id, reply),
                }
            }
            Input::Subscribe => {
                self.publish_events();
                self.publish_log();
                self.next_status = Instant::now();
            }
            Input::FaultsChanged => {
                self.apply_faults(true);
                self.next_status = Instant::now();
            }
            Input::Time { connection, id, command } => self.time(connection, id, command),
            Input::Bootstrap { connection, id, cluster, .. } => {
                // The node's cluster is its `node_ids`; the name keeps peers of other clusters out.
                *self.shared.cluster.lock().expect("cluster lock") = Some(cluster.clone());
                let result = Ok(format!("node {} (hosted) is in cluster {cluster}", self.shared.id));
                self.shared.send_to(connection, encode(&ServerOutbound::Done { id, result }).into());
            }
            Input::Transfer(_) | Input::Snapshot | Input::AdoptCluster(_) => {}
            Input::Shutdown => return Ok(true),
        }
        Ok(false)
    }

    fn heard(&mut self, said: FromNode) {
        match said {
            FromNode::Peer { to, name, body } => {
                let term = body.get("term").and_then(serde_json::Value::as_u64).unwrap_or(0);
                let msg =
                    Message { id: 0, from: self.shared.id, to, term, body: Body::Foreign { name, body } };
                self.shared.metrics.sent(msg.body.kind());
                self.outbox.send(&self.clock, vec![msg]);
            }
            FromNode::Reply { in_reply_to, body } => match self.pending.remove(&in_reply_to) {
                Some(p) => {
                    let reply = p.op.reply(&body);
                    self.reply(p.connection, p.id, reply);
                }
                // Too late: the client was told the outcome is unknown. Not the node's fault.
                None if self.expired.contains(&in_reply_to) => {}
                None => self.problem(format!("an answer to msg_id {in_reply_to}, which Consenso never sent")),
            },
            FromNode::InitOk { durable } => {
                self.status.ready = true;
                self.status.durable = durable;
                self.next_status = Instant::now();
            }
            FromNode::Status(report) => match self.status_line(report) {
                Ok(events) => {
                    if !events.is_empty() && self.clock.is_stopped() {
                        self.next_status = Instant::now();
                    }
                    self.events.extend(events);
                }
                Err(problem) => self.problem(format!("a status line Consenso cannot draw: {problem}")),
            },
        }
    }

    fn tell(&mut self, line: String) {
        if !self.node.send(line) {
            let dropped = self.node.dropped.load(Ordering::Relaxed);
            self.problem(format!("the node is not reading its input ({dropped} lines dropped)"));
        }
    }

    /// A line the node got wrong: counted, and told to observers now and then.
    fn problem(&mut self, problem: String) {
        self.status.bad_lines += 1;
        let due = self.last_problem_reported.is_none_or(|at| at.elapsed() >= PROBLEMS_EVERY);
        if due {
            tracing::warn!("node {}: {problem}", self.shared.id);
            self.last_problem_reported = Some(Instant::now());
            self.events.push(Event::NodeProblem { problem: problem.clone(), count: self.status.bad_lines });
            self.next_status = Instant::now();
        }
        self.status.last_problem = Some(problem);
    }

    fn reply(&self, connection: u64, id: u64, reply: Reply) {
        self.shared.send_to(connection, encode(&ServerOutbound::Reply { id, reply }).into());
    }

    fn time(&mut self, connection: u64, id: u64, command: TimeCommand) {
        let acted = match command {
            TimeCommand::Report => Vec::new(),
            TimeCommand::Release { ids } => self.outbox.release(&self.clock, &ids),
            TimeCommand::Drop { ids } => self.outbox.drop_messages(&ids),
            TimeCommand::Advance { ms } => {
                self.clock.advance(ms);
                self.events.push(Event::ClockAdvanced { by: ms });
                let line = time_line(self.shared.id, self.clock.scale(), self.clock.is_stopped(), ms);
                self.tell(line);
                Vec::new()
            }
        };
        self.outbox.dispatch(&self.clock);
        self.events.extend(self.outbox.take_events(&self.clock));
        let report = TimeReport {
            node: self.shared.id,
            now: self.clock.now(),
            stopped: self.clock.is_stopped(),
            next_deadline: self.next_deadline(),
            held: self.outbox.held(),
            acted,
        };
        self.shared.send_to(connection, encode(&ServerOutbound::Time { id, report }).into());
        self.next_status = Instant::now();
    }

    /// Takes the fault settings into the clock and the network policy, and tells the node
    /// about its clock (`consenso_time`) when `tell`.
    fn apply_faults(&mut self, tell: bool) {
        let faults = self.shared.faults.get();
        let scale_changed = (faults.time_scale - self.clock.scale()).abs() > f64::EPSILON;
        if scale_changed {
            self.clock.set_scale(faults.time_scale);
        }
        let stop_changed = faults.time_stopped != self.clock.is_stopped();
        if faults.time_stopped && !self.clock.is_stopped() {
            self.clock.stop();
            self.events.push(Event::ClockStopped);
        } else if !faults.time_stopped && self.clock.is_stopped() {
            self.clock.start();
            self.events.push(Event::ClockStarted);
        }
        if tell && (scale_changed || stop_changed) {
            self.tell(time_line(self.shared.id, faults.time_scale, faults.time_stopped, 0));
        }
        self.outbox.policy = policy(&faults, self.election_timeout);
        self.blocked_from = faults.blocked_from;
    }

    fn turn(&mut self) -> anyhow::Result<()> {
        self.outbox.dispatch(&self.clock);
        self.expire();
        if !self.status.ready && !self.init_late && self.started.elapsed() > INIT_WITHIN {
            // Told once, to the log and the page; `ready` stays false in the status.
            self.init_late = true;
            let problem = format!("no init_ok {} s after init", INIT_WITHIN.as_secs());
            tracing::warn!("node {}: {problem}", self.shared.id);
            self.events.push(Event::NodeProblem { problem, count: self.status.bad_lines });
        }
        if let Some(why) = self.node.exited() {
            anyhow::bail!("{why}");
        }
        self.publish_events();
        if Instant::now() >= self.next_status {
            self.publish_status();
            self.next_status = Instant::now() + STATUS_EVERY;
        }
        Ok(())
    }

    /// Client operations the node did not answer in time: a read may be asked elsewhere; a
    /// write's outcome is unknown.
    fn expire(&mut self) {
        let now = self.clock.now();
        let late: Vec<u64> =
            self.pending.iter().filter(|(_, p)| p.deadline <= now).map(|(m, _)| *m).collect();
        for msg_id in late {
            let p = self.pending.remove(&msg_id).expect("listed above");
            self.status.unanswered += 1;
            self.expired.push_back(msg_id);
            if self.expired.len() > EXPIRED_KEPT {
                self.expired.pop_front();
            }
            let error = match p.op {
                ClientOp::Read => ReplyError::Behind,
                ClientOp::Write | ClientOp::Cas => ReplyError::Indeterminate {
                    reason: format!("the node did not answer within {ANSWER_WITHIN_MS} ms"),
                },
            };
            self.reply(p.connection, p.id, Reply::Error { error });
        }
    }

    /// A status line: the timer it reports, and the events that take observers to it.
    fn status_line(&mut self, report: shared::hosted::NodeReport) -> Result<Vec<Event>, String> {
        self.status.status_lines += 1;
        self.timer(report.election_timer_ms)?;
        self.tracker.update(report)
    }

    /// The node's election timer as it reports it: drawn when it is reset.
    fn timer(&mut self, left: Option<u64>) -> Result<(), String> {
        let deadline = left.map(|ms| self.clock.now() + ms);
        let moved = match (deadline, self.election_deadline) {
            (Some(new), Some(old)) => new.abs_diff(old) > TIMER_SLACK_MS,
            (new, old) => new.is_some() != old.is_some(),
        };
        if let Some(deadline) = deadline.filter(|_| moved) {
            self.events.push(Event::ElectionTimerReset { deadline, timeout: self.election_timeout });
        }
        if moved {
            self.election_deadline = deadline;
        }
        Ok(())
    }

    /// The node's next timer, which a step with nothing held runs the clocks to: a leader's
    /// next heartbeat, else the election timer it reported — or, if it reports none, far
    /// enough on that the timers of nodes that do report come first.
    fn next_deadline(&self) -> Millis {
        let now = self.clock.now();
        if self.tracker.heard() && self.tracker.role() == shared::raft::Role::Leader {
            return now + self.heartbeat;
        }
        self.election_deadline.filter(|d| *d > now).unwrap_or(now + 10 * self.heartbeat)
    }

    fn publish_events(&mut self) {
        self.events.extend(self.outbox.take_events(&self.clock));
        self.published.add(self.shared.id, self.clock.now(), &mut self.events);
        self.published.flush(&self.shared);
    }

    fn publish_log(&self) {
        let entries = self.tracker.log().to_vec();
        let frame = ServerOutbound::Log { snapshot_index: 0, snapshot_term: 0, skipped: 0, entries };
        let _ = self.shared.observers.send(encode(&frame).into());
    }

    fn publish_status(&self) {
        let policy = &self.outbox.policy;
        let status = ServerStatus {
            replica: self.tracker.status(self.election_timeout, self.election_deadline.unwrap_or(0)),
            pid: std::process::id(),
            address: self.shared.address.clone(),
            now: self.clock.now(),
            faults: self.shared.faults.get(),
            kv: Some(Vec::new()),
            kv_truncated: false,
            rss_bytes: None,
            clock: ClockStatus {
                stopped: self.clock.is_stopped(),
                next_deadline: self.next_deadline(),
                latency_ms: policy.latency,
                jitter_ms: policy.jitter,
                held_count: self.outbox.held_count() as u64,
                held: self.outbox.held(),
                messages_sent: self.outbox.sent(),
            },
            bugs: Vec::new(),
            hosted: Some(HostedStatus { pid: self.node.pid(), ..self.status.clone() }),
        };
        let frame = encode(&ServerOutbound::Status { status: Box::new(status) });
        let _ = self.shared.observers.send(frame.into());
    }
}
