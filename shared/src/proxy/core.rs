//! What the proxy knows: the servers as they last reported, the client connections, the
//! requests in flight to servers and the supervisor, timers, and the cluster's time as the proxy
//! counts it (running time only). What tasks wait on, as futures, is in `wait`. Tasks hold a
//! `Core` (a shared handle) and never hold a borrow of it across an `.await`.

use std::cell::{RefCell, RefMut};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::task::Waker;

use crate::check::Monitor;
use crate::event::LogMirror;
use crate::protocol::{
    ApiError, ErrorKind, FaultSettings, ProcessInfo, ServerInbound, ServerStatus, SupervisorInbound,
    TimeCommand, TimeReport,
};
use crate::raft::{MessageId, Millis, NodeId, Role, Term};
use crate::replica::{Reply, Request};
use crate::session::ClientSession;

use super::fanout::Fanout;
use super::ready::{ConnId, Ready, Settings};
use super::stats::StatsWindow;
use super::tasks::SpawnQueue;

/// A status older than this means the server is not answering (crashed, paused, cut off).
pub(crate) const STALE_AFTER_MS: Millis = 1_200;

/// The shared handle tasks hold.
#[derive(Clone)]
pub(crate) struct Core(Rc<RefCell<State>>);

impl Core {
    pub fn new(state: State) -> Core {
        Core(Rc::new(RefCell::new(state)))
    }

    pub fn state(&self) -> RefMut<'_, State> {
        self.0.borrow_mut()
    }

    pub fn now(&self) -> Millis {
        self.0.borrow().now
    }

    /// The state, unless it is borrowed already (a future dropped while the core runs).
    pub fn try_state(&self) -> Option<RefMut<'_, State>> {
        self.0.try_borrow_mut().ok()
    }
}

/// A request in flight, and what became of it.
enum Slot<T> {
    Waiting {
        node: Option<NodeId>,
        waker: Option<Waker>,
    },
    Ready(T),
    /// Its link dropped (or the server was never reachable): no answer will come.
    Failed,
}

/// Answers awaited by id.
pub(crate) struct Pending<T> {
    slots: HashMap<u64, Slot<T>>,
}

impl<T> Default for Pending<T> {
    fn default() -> Pending<T> {
        Pending { slots: HashMap::new() }
    }
}

impl<T> Pending<T> {
    fn expect(&mut self, id: u64, node: Option<NodeId>) {
        self.slots.insert(id, Slot::Waiting { node, waker: None });
    }

    /// An answer came; false if nobody waits for it (late, or forgotten).
    fn answer(&mut self, id: u64, value: T) -> bool {
        match self.slots.get_mut(&id) {
            Some(slot @ Slot::Waiting { .. }) => {
                if let Slot::Waiting { waker: Some(w), .. } = std::mem::replace(slot, Slot::Ready(value)) {
                    w.wake();
                }
                true
            }
            _ => false,
        }
    }

    /// Every request waiting on `node` (or on the supervisor, `None`) fails.
    fn fail(&mut self, node: Option<NodeId>) {
        for slot in self.slots.values_mut() {
            if matches!(slot, Slot::Waiting { node: n, .. } if *n == node) {
                if let Slot::Waiting { waker: Some(w), .. } = std::mem::replace(slot, Slot::Failed) {
                    w.wake();
                }
            }
        }
    }

    /// `Some(Ok)` with the answer, `Some(Err)` if it failed, `None` while waiting (registering
    /// the waker).
    pub(super) fn take(&mut self, id: u64, waker: &Waker) -> Option<Result<T, ()>> {
        match self.slots.get_mut(&id) {
            None => Some(Err(())),
            Some(Slot::Waiting { waker: w, .. }) => {
                *w = Some(waker.clone());
                None
            }
            Some(_) => match self.slots.remove(&id) {
                Some(Slot::Ready(value)) => Some(Ok(value)),
                _ => Some(Err(())),
            },
        }
    }

    fn forget(&mut self, id: u64) {
        self.slots.remove(&id);
    }
}

/// What the proxy knows about one server.
#[derive(Debug, Default)]
pub(crate) struct ServerView {
    pub address: String,
    /// The link to it is up.
    pub up: bool,
    /// Its last status, and when it came.
    pub status: Option<(ServerStatus, Millis)>,
    /// A role it announced in its events since that status, with the term.
    announced: Option<(Role, Term)>,
    pub log: LogMirror,
    /// The number of the last event frame received (0: none since the log).
    pub events_seq: u64,
    /// Messages it had sent at its last status, and its rate since the one before.
    sent: Option<(u64, Millis)>,
    pub message_rate: f64,
    /// Faults this proxy asked for; sent again when the link comes back.
    pub desired_faults: Option<FaultSettings>,
}

impl ServerView {
    pub fn new(address: String) -> ServerView {
        ServerView { address, ..ServerView::default() }
    }

    /// A recent status over a live link.
    pub fn fresh(&self, now: Millis) -> Option<&ServerStatus> {
        match &self.status {
            Some((status, at)) if self.up && now.saturating_sub(*at) < STALE_AFTER_MS => Some(status),
            _ => None,
        }
    }

    pub fn last_status(&self) -> Option<&ServerStatus> {
        self.status.as_ref().map(|(s, _)| s)
    }

    /// The faults to build on when changing this server's settings.
    pub fn current_faults(&self, time_scale: f64) -> FaultSettings {
        self.desired_faults
            .clone()
            .or_else(|| self.last_status().map(|s| s.faults.clone()))
            .unwrap_or(FaultSettings { time_scale, ..FaultSettings::normal() })
    }

    /// A change of role reported in its events, newer than its last status: who leads is
    /// known at once rather than at the next status (routing waits on it). Only routing reads
    /// it (`roles`); the rest of the status (members, commit) stays as the server reported it.
    pub fn took_role(&mut self, role: Role, term: Term) {
        let status_term = self.status.as_ref().map_or(0, |(s, _)| s.replica.raft.term);
        if term >= status_term {
            self.announced = Some((role, term));
        }
    }

    /// It announced that it leads, and said nothing since that took it back.
    pub fn announced_leading(&self) -> bool {
        self.announced.is_some_and(|(role, _)| role == Role::Leader)
    }

    /// Its role and term as routing sees them: the last announced, else the last status's.
    pub fn role(&self, now: Millis) -> Option<(Role, Term)> {
        let status = self.fresh(now)?;
        Some(self.announced.unwrap_or((status.replica.raft.role, status.replica.raft.term)))
    }

    pub fn took_status(&mut self, status: ServerStatus, now: Millis) {
        // Sent after the events before it: it says what they said, and more.
        self.announced = None;
        let sent = status.clock.messages_sent;
        match self.sent {
            Some((before, at)) if now > at + 50 => {
                self.message_rate = sent.saturating_sub(before) as f64 * 1000.0 / (now - at) as f64;
                self.sent = Some((sent, now));
            }
            Some(_) => {}
            None => self.sent = Some((sent, now)),
        }
        self.status = Some((status, now));
    }

    /// The cluster was reset: what it said is void.
    pub fn forget(&mut self) {
        self.status = None;
        self.announced = None;
        self.log = LogMirror::default();
        self.events_seq = 0;
        self.sent = None;
        self.message_rate = 0.0;
    }
}

/// The supervisor, when the proxy has one.
#[derive(Debug, Default)]
pub(crate) struct SupervisorView {
    pub exists: bool,
    pub up: bool,
    pub processes: BTreeMap<NodeId, ProcessInfo>,
    /// Its reset count, as last seen.
    pub epoch: Option<u64>,
    /// Ids of servers that left for good (never given again).
    pub retired: std::collections::BTreeSet<NodeId>,
}

/// A client connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub admin: bool,
    /// The session of its writes that come without one, once registered (`None` before, and
    /// while it registers).
    pub session: Option<ClientSession>,
    pub registering: bool,
    /// Writes waiting for the registration.
    pub waiting: Vec<Waker>,
}

/// Whether the cluster's time runs, and for how long it stood still: the proxy's patience
/// counts only running time, so that a request waiting on a stopped cluster does not give up.
#[derive(Debug, Default)]
pub(crate) struct TimeGate {
    stopped_since: Option<Millis>,
    stopped_total: Millis,
    /// Messages released recently (a status may still list them as held), with when.
    released: BTreeMap<MessageId, Millis>,
}

/// A moment from which running time is measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    at: Millis,
    stopped_before: Millis,
}

/// A released message stays out of the held list this long, whatever late statuses say.
const RELEASED_MEMORY_MS: Millis = 5_000;

impl TimeGate {
    pub fn set_stopped(&mut self, stopped: bool, now: Millis) {
        match (stopped, self.stopped_since) {
            (true, None) => self.stopped_since = Some(now),
            (false, Some(since)) => {
                self.stopped_total += now.saturating_sub(since);
                self.stopped_since = None;
            }
            _ => {}
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped_since.is_some()
    }

    fn stopped_until(&self, now: Millis) -> Millis {
        self.stopped_total + self.stopped_since.map_or(0, |since| now.saturating_sub(since))
    }

    pub fn mark(&self, now: Millis) -> Mark {
        Mark { at: now, stopped_before: self.stopped_until(now) }
    }

    /// Time since `mark` during which the cluster's time ran.
    pub fn running_since(&self, mark: Mark, now: Millis) -> Millis {
        let stopped = self.stopped_until(now).saturating_sub(mark.stopped_before);
        now.saturating_sub(mark.at).saturating_sub(stopped)
    }

    pub fn note_released(&mut self, id: MessageId, now: Millis) {
        self.released.retain(|_, at| now.saturating_sub(*at) < RELEASED_MEMORY_MS);
        self.released.insert(id, now);
    }

    pub fn was_released(&self, id: MessageId, now: Millis) -> bool {
        self.released.get(&id).is_some_and(|at| now.saturating_sub(*at) < RELEASED_MEMORY_MS)
    }
}

/// The lesson of this proxy: its status for pages, the task running it, and *Next*.
#[derive(Default)]
pub(crate) struct LessonSlot {
    pub status: Option<crate::lesson::LessonStatus>,
    pub task: Option<super::tasks::TaskId>,
    pub next: bool,
    pub next_waker: Option<Waker>,
}

pub(crate) struct State {
    pub now: Millis,
    pub settings: Settings,
    pub servers: BTreeMap<NodeId, ServerView>,
    pub conns: BTreeMap<ConnId, Connection>,
    pub supervisor: SupervisorView,
    next_id: u64,
    pub(super) replies: Pending<Reply>,
    pub(super) reports: Pending<TimeReport>,
    pub(super) supervisor_answers: Pending<Result<String, ApiError>>,
    pub(super) timers: BTreeMap<(Millis, u64), Waker>,
    timer_seq: u64,
    /// How many times a server announced that it leads; requests settling wait on it.
    pub(super) leader_news: u64,
    /// The server that announced it last.
    pub(super) announced_leader: Option<NodeId>,
    pub(super) news_waiters: BTreeMap<u64, Waker>,
    pub gate: TimeGate,
    pub monitor: Monitor,
    pub stats: StatsWindow,
    pub fanout: Fanout,
    pub lesson: LessonSlot,
    pub open_writes: bool,
    pub out: Ready,
    pub spawn: SpawnQueue,
    read_turn: usize,
    pub next_status: Millis,
    /// Store samples in the status last published, per server (left out when unchanged).
    pub sent_kv: HashMap<NodeId, Vec<(String, String)>>,
    /// Servers whose removal was asked: stopped once it is committed.
    pub removing: std::collections::BTreeSet<NodeId>,
    /// Tasks to drop (a lesson abandoned), at the end of the current run.
    pub cancelled: Vec<super::tasks::TaskId>,
}

impl State {
    pub fn new(settings: Settings, spawn: SpawnQueue) -> State {
        let servers =
            settings.servers.iter().map(|(id, address)| (*id, ServerView::new(address.clone()))).collect();
        let supervisor = SupervisorView { exists: settings.supervised, ..SupervisorView::default() };
        State {
            now: 0,
            open_writes: settings.open_writes,
            servers,
            conns: BTreeMap::new(),
            supervisor,
            next_id: 1,
            replies: Pending::default(),
            reports: Pending::default(),
            supervisor_answers: Pending::default(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            leader_news: 0,
            announced_leader: None,
            news_waiters: BTreeMap::new(),
            gate: TimeGate::default(),
            monitor: Monitor::new(),
            stats: StatsWindow::default(),
            fanout: Fanout::default(),
            lesson: LessonSlot::default(),
            out: Ready::default(),
            spawn,
            read_turn: 0,
            next_status: 0,
            sent_kv: HashMap::new(),
            removing: Default::default(),
            cancelled: Vec::new(),
            settings,
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// A rotating counter for spreading reads over followers.
    pub fn next_turn(&mut self) -> usize {
        self.read_turn = self.read_turn.wrapping_add(1);
        self.read_turn
    }

    /// The time scale the servers run at (the proxy's patience stretches with it).
    pub fn time_scale(&self) -> f64 {
        self.servers
            .values()
            .filter_map(|s| s.fresh(self.now).map(|st| st.faults.time_scale))
            .fold(None, |acc: Option<f64>, s| Some(acc.map_or(s, |a| a.max(s))))
            .unwrap_or(1.0)
    }

    pub fn send(&mut self, node: NodeId, frame: ServerInbound) {
        self.out.to_servers.push((node, frame));
    }

    pub fn set_faults(&mut self, node: NodeId, faults: FaultSettings) {
        if let Some(server) = self.servers.get_mut(&node) {
            server.desired_faults = Some(faults.clone());
            self.out.to_servers.push((node, ServerInbound::Faults { faults }));
        }
    }

    /// Sends a request to `node`; `None` if its link is down (waiting for a dead server would
    /// only delay the retry elsewhere).
    pub fn request(&mut self, node: NodeId, request: Request) -> Option<u64> {
        if !self.servers.get(&node).is_some_and(|s| s.up) {
            return None;
        }
        let id = self.next_id();
        self.replies.expect(id, Some(node));
        self.send(node, ServerInbound::Request { id, request });
        Some(id)
    }

    /// Sends a time command to `node`; `None` if its link is down.
    pub fn time_command(&mut self, node: NodeId, command: TimeCommand) -> Option<u64> {
        if !self.servers.get(&node).is_some_and(|s| s.up) {
            return None;
        }
        let id = self.next_id();
        self.reports.expect(id, Some(node));
        self.send(node, ServerInbound::Time { id, command });
        Some(id)
    }

    /// Sends a request to the supervisor (its `id` is set here).
    pub fn ask_supervisor(&mut self, make: impl FnOnce(u64) -> SupervisorInbound) -> Result<u64, ApiError> {
        if !self.supervisor.exists {
            return Err(ApiError::new(
                ErrorKind::NotSupported,
                "this proxy has no supervisor (`consenso cluster`)",
            ));
        }
        if !self.supervisor.up {
            return Err(ApiError::new(ErrorKind::Unavailable, "the supervisor is not reachable"));
        }
        let id = self.next_id();
        self.supervisor_answers.expect(id, None);
        self.out.to_supervisor.push(make(id));
        Ok(id)
    }

    pub fn answer_request(&mut self, id: u64, reply: Reply) {
        self.replies.answer(id, reply);
    }

    pub fn answer_time(&mut self, id: u64, report: TimeReport) {
        self.reports.answer(id, report);
    }

    pub fn answer_supervisor(&mut self, id: u64, result: Result<String, ApiError>) {
        self.supervisor_answers.answer(id, result);
    }

    /// A server's link dropped: its requests fail at once, so that they are retried elsewhere.
    pub fn link_lost(&mut self, node: NodeId) {
        self.replies.fail(Some(node));
        self.reports.fail(Some(node));
    }

    pub fn supervisor_lost(&mut self) {
        self.supervisor_answers.fail(None);
    }

    pub fn forget_request(&mut self, id: u64) {
        self.replies.forget(id);
    }

    pub fn forget_report(&mut self, id: u64) {
        self.reports.forget(id);
    }

    pub fn forget_supervisor(&mut self, id: u64) {
        self.supervisor_answers.forget(id);
    }

    pub(super) fn add_timer(&mut self, at: Millis, waker: &Waker) -> (Millis, u64) {
        self.timer_seq += 1;
        let key = (at, self.timer_seq);
        self.timers.insert(key, waker.clone());
        key
    }

    pub(super) fn remove_timer(&mut self, key: (Millis, u64)) {
        self.timers.remove(&key);
    }

    /// Wakes `waker` at the next leader news; a task that waits again passes its `key` back.
    pub(super) fn add_news_waiter(&mut self, key: Option<u64>, waker: &Waker) -> u64 {
        let key = key.unwrap_or_else(|| {
            self.timer_seq += 1;
            self.timer_seq
        });
        self.news_waiters.insert(key, waker.clone());
        key
    }

    pub(super) fn remove_news_waiter(&mut self, key: u64) {
        self.news_waiters.remove(&key);
    }

    /// Time moved to `now`: timers due wake their tasks.
    pub fn advance(&mut self, now: Millis) {
        self.now = self.now.max(now);
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            entry.remove().wake();
        }
    }

    /// Server `node` announced that it leads: requests waiting for a leader look again.
    pub fn leader_announced(&mut self, node: NodeId) {
        self.leader_news += 1;
        self.announced_leader = Some(node);
        for waker in std::mem::take(&mut self.news_waiters).into_values() {
            waker.wake();
        }
    }

    /// The earliest timer, if any.
    pub fn next_timer(&self) -> Option<Millis> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// The server is a hosted node (`crate::hosted`), by its last status.
    pub fn is_hosted(&self, node: NodeId) -> bool {
        self.servers.get(&node).and_then(|s| s.status.as_ref()).is_some_and(|(s, _)| s.hosted.is_some())
    }

    pub fn mark(&self) -> Mark {
        self.gate.mark(self.now)
    }

    pub fn running_since(&self, mark: Mark) -> Millis {
        self.gate.running_since(mark, self.now)
    }

    /// Pages see a change (a lesson's caption, a reset) at once, not at the next status.
    pub fn publish_status_now(&mut self) {
        self.next_status = self.now;
    }

    pub fn note(&mut self, line: impl Into<String>) {
        self.out.log.push(line.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FaultSettings;
    use crate::raft::{Config, Persisted};
    use crate::replica::Replica;

    fn state() -> State {
        let servers = [(1, "a".to_string()), (2, "b".to_string())].into_iter().collect();
        State::new(Settings { servers, ..Settings::default() }, SpawnQueue::default())
    }

    /// A status of server `id`, a follower of `term`, over a live link.
    fn report(state: &mut State, id: NodeId, term: Term) {
        let replica = Replica::new(Config::new(id, vec![1, 2]), Persisted::default(), 1, 0, 0);
        let mut status = ServerStatus {
            replica: replica.status(),
            pid: 0,
            address: String::new(),
            now: 0,
            faults: FaultSettings::normal(),
            kv: None,
            kv_truncated: false,
            rss_bytes: None,
            clock: Default::default(),
            bugs: Vec::new(),
            hosted: None,
        };
        status.replica.raft.term = term;
        let now = state.now;
        let server = state.servers.get_mut(&id).unwrap();
        server.up = true;
        server.took_status(status, now);
    }

    #[test]
    fn a_leader_announced_in_events_routes_before_its_next_status_and_an_older_term_does_not() {
        let mut state = state();
        report(&mut state, 1, 3);
        report(&mut state, 2, 3);
        assert_eq!(state.roles(|_| false).0, None);
        state.servers.get_mut(&2).unwrap().took_role(Role::Leader, 4);
        assert_eq!(state.roles(|_| false).0, Some(2), "the announcement, before any status says so");
        state.servers.get_mut(&1).unwrap().took_role(Role::Leader, 2);
        assert_eq!(state.roles(|_| false).0, Some(2), "a term older than the status is news of nothing");
        report(&mut state, 2, 4);
        assert_eq!(state.roles(|_| false).0, None, "a later status says more than the events before it");
    }

    #[test]
    fn only_a_frame_that_leaves_a_server_leading_is_leader_news() {
        use crate::event::{Event, Observed, RoleReason};
        use crate::protocol::ServerOutbound;
        let mut state = state();
        report(&mut state, 1, 3);
        let frame = |seq, roles: &[(Role, Term)]| ServerOutbound::Events {
            events: roles
                .iter()
                .map(|&(role, term)| Observed {
                    node: 1,
                    at: 0,
                    event: Event::RoleChanged { role, term, leader: None, reason: RoleReason::Reported },
                })
                .collect(),
            seq,
        };
        super::super::from_server(&mut state, 1, frame(1, &[(Role::Leader, 2)]));
        assert_eq!(state.leader_news, 0, "an announcement older than the last status");
        super::super::from_server(&mut state, 1, frame(2, &[(Role::Leader, 4), (Role::Follower, 5)]));
        assert_eq!(state.leader_news, 0, "stepped down within the same frame");
        super::super::from_server(&mut state, 1, frame(3, &[(Role::Leader, 6)]));
        assert_eq!((state.leader_news, state.announced_leader), (1, Some(1)));
    }
}
