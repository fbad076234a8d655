//! What the in-page servers and their supervisor do with the frames a proxy sends them — as
//! `consenso server` and `consenso cluster` do with the same frames: requests go to the
//! replica, fault settings change the server's network and clock, time commands act on its
//! clock and held messages; the supervisor crashes, restarts, pauses, resumes, resets, starts
//! and stops servers.

use crate::event::Event;
use crate::protocol::{
    ApiError, ErrorKind, FaultSettings, ProcessAction, ProcessInfo, ProcessState, ServerInbound,
    ServerOutbound, SupervisorInbound, SupervisorOutbound, TimeCommand, TimeReport,
};
use crate::raft::{Config, NodeId};

use super::cluster::Cluster;
use super::server::{Server, address};

/// Servers an in-page cluster may have.
pub const MIN_SERVERS: usize = 3;
pub const MAX_SERVERS: usize = 7;
/// A stepped message travels this long in real time, so that it is seen arriving.
const STEP_TRAVEL_MS: f64 = 600.0;

impl Cluster {
    /// A frame from the proxy for server `node`. A server that is down has no link: the frame
    /// is lost (the proxy already failed what waited on it).
    pub fn server_hears(&mut self, node: NodeId, frame: ServerInbound) {
        let Some(server) = self.servers.get_mut(&node).filter(|s| s.is_up()) else { return };
        let now = self.now;
        match frame {
            // A paused process reads nothing: the proxy's patience runs out.
            ServerInbound::Request { .. } if server.paused => {}
            ServerInbound::Request { id, request } => {
                server.request(now, id, request);
                self.work(node);
            }
            ServerInbound::Faults { faults } => self.apply_faults(node, faults),
            ServerInbound::Transfer { to } => {
                let local = server.now(now);
                if let Some(replica) = server.replica.as_mut() {
                    let _ = replica.transfer_leadership(local, to);
                }
                self.work(node);
            }
            ServerInbound::Crash => {
                self.crash(node);
                self.report_processes();
            }
            ServerInbound::Time { id, command } => self.time(node, id, command),
            ServerInbound::Snapshot => {
                if let Some(snapshot) = server.replica.as_mut().and_then(|r| r.compact_now()) {
                    server.disk.compact(&snapshot);
                }
                self.work(node);
            }
            ServerInbound::Hello { .. }
            | ServerInbound::Subscribe
            | ServerInbound::Raft { .. }
            | ServerInbound::Bootstrap { .. } => {}
        }
    }

    /// Takes fault settings into the server: its network, its clock, its batches.
    pub fn apply_faults(&mut self, node: NodeId, faults: FaultSettings) {
        let Some(server) = self.servers.get_mut(&node) else { return };
        if faults.time_stopped != server.faults.time_stopped && server.is_up() {
            server.events.push(if faults.time_stopped { Event::ClockStopped } else { Event::ClockStarted });
        }
        if let Some(replica) = server.replica.as_mut() {
            let default = Config::new(node, vec![]).max_entries_per_message;
            replica.set_max_entries_per_message(faults.max_entries.map_or(default, |n| n as usize));
        }
        server.faults = faults;
    }

    fn time(&mut self, node: NodeId, id: u64, command: TimeCommand) {
        let wall = self.wall.unwrap_or(0.0);
        let server = self.servers.get_mut(&node).expect("checked by the caller");
        let acted = match command {
            TimeCommand::Report => Vec::new(),
            TimeCommand::Release { ids } => {
                let mut acted = Vec::new();
                for id in ids {
                    if let Some(message) = server.transit.release(id, STEP_TRAVEL_MS as u64) {
                        self.travelling.push((wall + STEP_TRAVEL_MS, message));
                        acted.push((id, STEP_TRAVEL_MS as u64));
                    }
                }
                acted
            }
            TimeCommand::Drop { ids } => {
                ids.into_iter().filter(|id| server.transit.drop_message(*id)).map(|id| (id, 0)).collect()
            }
            TimeCommand::Advance { ms } => {
                server.skew += ms;
                server.events.push(Event::ClockAdvanced { by: ms });
                // Timers come due; messages stay where they are (held, while time is stopped).
                self.fire_timers();
                Vec::new()
            }
        };
        let server = &self.servers[&node];
        let Some(replica) = server.replica.as_ref() else { return };
        let report = TimeReport {
            node,
            now: server.now(self.now),
            stopped: server.faults.time_stopped,
            next_deadline: replica.next_deadline(),
            held: server.held(),
            acted,
        };
        self.outbound.push((node, ServerOutbound::Time { id, report }));
        self.flush_events();
        self.send_status(node);
    }

    /// A request for the supervisor; its answer, and the processes as they are then.
    pub fn supervise(&mut self, frame: SupervisorInbound) {
        let (id, result) = match frame {
            SupervisorInbound::Process { id, node, action, faults } => {
                (id, self.process(node, action, faults))
            }
            SupervisorInbound::Reset { id, faults } => {
                let count = self.voters.len();
                self.boot(count, faults.unwrap_or_else(FaultSettings::normal));
                self.epoch += 1;
                (id, Ok(format!("the cluster restarted: {count} servers on empty disks")))
            }
            SupervisorInbound::StartServer { id, node } => (id, self.start_new(node)),
            SupervisorInbound::StopServer { id, node } => {
                if let Some(mut server) = self.servers.remove(&node) {
                    server.crash();
                    self.links.push((node, false));
                    self.retired.insert(node);
                }
                (id, Ok(format!("node {node} stopped")))
            }
            SupervisorInbound::Hello { .. } => return,
        };
        self.supervisor_out.push(SupervisorOutbound::Done { id, result });
        self.report_processes();
    }

    fn process(
        &mut self,
        node: NodeId,
        action: ProcessAction,
        faults: Option<FaultSettings>,
    ) -> Result<String, ApiError> {
        let Some(up) = self.servers.get(&node).map(Server::is_up) else {
            return Err(ApiError::new(ErrorKind::BadRequest, format!("no process for node {node}")));
        };
        Ok(match action {
            ProcessAction::Crash => {
                self.crash(node);
                format!("node {node} crashed")
            }
            ProcessAction::Restart => {
                self.crash(node);
                if let Some(faults) = faults {
                    self.servers.get_mut(&node).expect("checked").faults = faults;
                }
                self.start_server(node);
                format!("node {node} restarted from its disk")
            }
            ProcessAction::Pause if up => {
                self.servers.get_mut(&node).expect("checked").paused = true;
                format!("node {node} paused")
            }
            ProcessAction::Resume if up => {
                self.resume(node);
                format!("node {node} resumed")
            }
            ProcessAction::Pause | ProcessAction::Resume => {
                return Err(ApiError::new(ErrorKind::BadRequest, format!("node {node} is not running")));
            }
        })
    }

    /// A paused server runs again and reads what waited in its socket buffers.
    fn resume(&mut self, node: NodeId) {
        let now = self.now;
        let server = self.servers.get_mut(&node).expect("checked by the caller");
        server.paused = false;
        let inbox = std::mem::take(&mut server.inbox);
        let local = server.now(now);
        if let Some(replica) = &mut server.replica {
            for message in inbox {
                replica.step(local, message);
            }
        }
        self.work(node);
    }

    /// Starts a new server on an empty disk, waiting to be added; answers its address.
    fn start_new(&mut self, node: NodeId) -> Result<String, ApiError> {
        if self.servers.len() >= MAX_SERVERS {
            return Err(ApiError::new(
                ErrorKind::BadRequest,
                format!("the in-page cluster has at most {MAX_SERVERS} servers"),
            ));
        }
        if self.servers.contains_key(&node) || self.retired.contains(&node) {
            return Err(ApiError::new(ErrorKind::BadRequest, format!("node {node} is or was a member")));
        }
        let faults =
            self.servers.values().next().map(|s| s.faults.clone()).unwrap_or_else(FaultSettings::normal);
        let faults = FaultSettings { blocked_to: Vec::new(), blocked_from: Vec::new(), ..faults };
        self.servers.insert(node, Server::new(node, faults));
        self.start_server(node);
        Ok(address(node))
    }

    /// The processes as the supervisor reports them, with every change.
    pub fn report_processes(&mut self) {
        let processes = self
            .servers
            .values()
            .map(|s| ProcessInfo {
                node: s.id,
                pid: None,
                state: match (s.is_up(), s.paused) {
                    (false, _) => ProcessState::Crashed,
                    (true, true) => ProcessState::Paused,
                    (true, false) => ProcessState::Up,
                },
                address: Some(address(s.id)),
            })
            .collect();
        let retired = self.retired.iter().copied().collect();
        self.supervisor_out.push(SupervisorOutbound::Processes { processes, epoch: self.epoch, retired });
    }
}
