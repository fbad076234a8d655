//! The cluster inside the page, driven as the page drives it: frames in, frames out, the
//! page's clock advancing in animation-frame steps.

use shared::event::{Event, Observed};
use shared::playground::Playground;
use shared::protocol::{AdminCommand, ClientFrame, ClusterStatus, OpResult, ProxyFrame};
use shared::raft::{Bug, NodeId, Role};

/// The page's side: a clock, and every frame received.
struct Page {
    playground: Playground,
    wall: f64,
    frames: Vec<ProxyFrame>,
    next_id: u64,
}

const ADMIN_PATIENCE_MS: u64 = 5_000;

impl Page {
    fn open(servers: usize, seed: u64, bugs: &[Bug]) -> Page {
        Page::open_with(Playground::new(servers, seed, bugs))
    }

    fn open_with(mut playground: Playground) -> Page {
        playground.handle(ClientFrame::Hello {
            version: shared::protocol::PROTOCOL_VERSION,
            token: None,
            subscribe: true,
        });
        let mut page = Page { playground, wall: 0.0, frames: Vec::new(), next_id: 1 };
        page.run(0.0);
        page
    }

    /// Lets `ms` of the page's time pass, 16 ms at a time.
    fn run(&mut self, ms: f64) {
        let end = self.wall + ms;
        loop {
            self.playground.advance(self.wall);
            self.frames.extend(self.playground.take_frames());
            if self.wall >= end {
                break;
            }
            self.wall = (self.wall + 16.0).min(end);
        }
    }

    fn send(&mut self, frame: impl FnOnce(u64) -> ClientFrame) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.playground.handle(frame(id));
        self.frames.extend(self.playground.take_frames());
        id
    }

    /// An admin command, answered within `ADMIN_PATIENCE_MS` of page time (a step waits for
    /// its message to arrive, as on a real proxy).
    fn admin(&mut self, command: AdminCommand) {
        let id = self.send(|id| ClientFrame::Admin { id, command });
        for _ in 0..ADMIN_PATIENCE_MS / 16 {
            if self.answer(id).is_some() {
                break;
            }
            self.run(16.0);
        }
        let answer = self.answer(id).unwrap_or_else(|| panic!("admin {id} not answered"));
        assert!(matches!(answer, ProxyFrame::AdminDone { .. }), "{answer:?}");
    }

    fn answer(&self, id: u64) -> Option<ProxyFrame> {
        self.frames
            .iter()
            .rev()
            .find(|f| match f {
                ProxyFrame::Done { id: i, .. } | ProxyFrame::AdminDone { id: i, .. } => *i == id,
                ProxyFrame::Error { id: Some(i), .. } => *i == id,
                _ => false,
            })
            .cloned()
    }

    fn status(&self) -> ClusterStatus {
        self.playground.status()
    }

    fn leaders(&self) -> Vec<NodeId> {
        self.status().nodes.iter().filter(|n| n.role == Some(Role::Leader)).map(|n| n.id).collect()
    }

    /// Runs until exactly one leader of the highest term is up, for at most `within` ms.
    fn wait_leader(&mut self, within: f64) -> NodeId {
        let end = self.wall + within;
        while self.wall < end {
            self.run(50.0);
            let status = self.status();
            if let Some(leader) = status.leader
                && status
                    .nodes
                    .iter()
                    .filter(|n| n.role == Some(Role::Leader) && n.term == Some(status.term))
                    .count()
                    == 1
            {
                return leader;
            }
        }
        panic!("no single leader after {within} ms: {:?}", self.leaders());
    }

    fn events(&self) -> impl Iterator<Item = &Observed> {
        self.frames.iter().flat_map(|f| match f {
            ProxyFrame::Events { events } => events.as_slice(),
            _ => &[],
        })
    }
}

#[test]
fn the_page_is_welcomed_with_a_picture_of_every_server() {
    let page = Page::open(5, 1, &[]);
    match &page.frames[0] {
        ProxyFrame::Welcome { admin, nodes, picture: Some(picture), .. } => {
            assert!(admin);
            assert_eq!(nodes.len(), 5);
            assert_eq!(picture.cluster.nodes.len(), 5);
        }
        other => panic!("first frame {other:?}"),
    }
}

#[test]
fn a_simulated_cluster_elects_one_leader_and_reports_it_in_statuses() {
    let mut page = Page::open(3, 7, &[]);
    let leader = page.wait_leader(5_000.0);
    page.run(1_000.0);
    let statuses = page.frames.iter().filter(|f| matches!(f, ProxyFrame::Status { id: None, .. })).count();
    assert!(statuses >= 4, "a status every quarter second: {statuses}");
    let rate = page.status().messages_per_s;
    assert!(rate > 10.0, "heartbeats flow: {rate} messages/s");
    assert!(
        page.events()
            .any(|o| o.node == leader && matches!(o.event, Event::RoleChanged { role: Role::Leader, .. }))
    );
}

#[test]
fn a_write_commits_on_every_server_and_a_read_sees_it() {
    let mut page = Page::open(3, 2, &[]);
    page.wait_leader(5_000.0);
    let put = page.send(|id| ClientFrame::Put { id, key: "x".into(), value: "1".into(), session: None });
    page.run(500.0);
    assert!(
        matches!(page.answer(put), Some(ProxyFrame::Done { result: OpResult::Put { previous: None }, .. })),
        "{:?}",
        page.answer(put)
    );
    let get = page.send(|id| ClientFrame::Get { id, key: "x".into(), consistency: Default::default() });
    page.run(500.0);
    assert!(
        matches!(page.answer(get), Some(ProxyFrame::Done { result: OpResult::Get { value: Some(ref v) }, .. }) if v == "1"),
        "{:?}",
        page.answer(get)
    );
    let status = page.status();
    let commit = status.nodes.iter().filter_map(|n| n.commit).min().unwrap();
    assert!(commit >= 2, "every server committed the no-op and the write: {commit}");
}

#[test]
fn crashing_the_leader_elects_another_and_a_restart_catches_up() {
    let mut page = Page::open(5, 3, &[]);
    let old = page.wait_leader(5_000.0);
    page.send(|id| ClientFrame::Put { id, key: "k".into(), value: "before".into(), session: None });
    page.run(300.0);
    page.admin(AdminCommand::Crash { node: old });
    let new = page.wait_leader(10_000.0);
    assert_ne!(new, old);
    let put = page.send(|id| ClientFrame::Put { id, key: "k".into(), value: "after".into(), session: None });
    page.run(500.0);
    assert!(matches!(page.answer(put), Some(ProxyFrame::Done { .. })), "{:?}", page.answer(put));
    page.admin(AdminCommand::Restart { node: old });
    page.run(2_000.0);
    let status = page.status();
    let leader_last = status.nodes.iter().find(|n| n.id == new).and_then(|n| n.last_log_index).unwrap();
    let restarted = status.nodes.iter().find(|n| n.id == old).unwrap();
    assert_eq!(restarted.last_log_index, Some(leader_last), "the restarted server caught up");
    assert_eq!(restarted.role, Some(Role::Follower));
}

#[test]
fn with_time_stopped_a_write_is_held_until_steps_and_start_time_let_it_through() {
    let mut page = Page::open(3, 4, &[]);
    page.wait_leader(5_000.0);
    page.admin(AdminCommand::StopTime);
    let terms = |p: &Page| p.status().nodes.iter().map(|n| n.term).collect::<Vec<_>>();
    let before = terms(&page);
    let put = page.send(|id| ClientFrame::Put { id, key: "held".into(), value: "v".into(), session: None });
    page.run(20_000.0);
    assert_eq!(terms(&page), before, "no timer fired");
    assert!(page.answer(put).is_none(), "the write waits");
    let status = page.status();
    assert!(status.time.stopped && status.time.held >= 2, "{:?}", status.time);
    page.admin(AdminCommand::Step { count: 1 });
    assert!(page.events().any(|o| matches!(o.event, Event::MessageStepped { .. })));
    assert!(page.answer(put).is_none(), "one message is not enough for a write");
    page.admin(AdminCommand::StartTime);
    page.run(1_000.0);
    assert!(matches!(page.answer(put), Some(ProxyFrame::Done { .. })), "{:?}", page.answer(put));
}

#[test]
fn a_partitioned_leader_is_replaced_by_the_majority() {
    let mut page = Page::open(5, 5, &[]);
    let old = page.wait_leader(5_000.0);
    page.admin(AdminCommand::Partition { groups: vec![vec![old]] });
    page.run(3_000.0);
    let status = page.status();
    let majority_leader =
        status.nodes.iter().find(|n| n.id != old && n.role == Some(Role::Leader)).map(|n| n.id);
    assert!(majority_leader.is_some(), "the majority elected a leader");
    page.admin(AdminCommand::Heal);
    page.run(3_000.0);
    assert_eq!(page.leaders().len(), 1);
}

#[test]
fn one_seed_and_one_sequence_of_actions_give_one_run() {
    let run = || {
        let mut page = Page::open(5, 42, &[]);
        page.wait_leader(5_000.0);
        page.send(|id| ClientFrame::Put { id, key: "a".into(), value: "1".into(), session: None });
        page.run(700.0);
        page.admin(AdminCommand::Crash { node: 1 });
        page.run(3_000.0);
        page.frames.iter().map(|f| serde_json::to_string(f).unwrap()).collect::<Vec<_>>()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.len(), b.len());
    assert!(a == b, "two runs of seed 42 differ");
    let mut other = Page::open(5, 43, &[]);
    other.run(3_000.0);
    let c: Vec<String> = other.frames.iter().map(|f| serde_json::to_string(f).unwrap()).collect();
    assert_ne!(a[..c.len().min(a.len())], c[..c.len().min(a.len())], "another seed, another run");
}

#[test]
fn unknown_nodes_and_bad_values_are_refused_with_a_reason() {
    let mut page = Page::open(3, 6, &[]);
    let id = page.send(|id| ClientFrame::Admin { id, command: AdminCommand::Crash { node: 9 } });
    assert!(
        matches!(page.answer(id), Some(ProxyFrame::Error { ref error, .. }) if error.message.contains("no node 9"))
    );
    let id = page.send(|id| ClientFrame::Admin { id, command: AdminCommand::Drop { node: None, rate: 2.0 } });
    assert!(matches!(page.answer(id), Some(ProxyFrame::Error { .. })));
    page.admin(AdminCommand::Crash { node: 2 });
    let id = page.send(|id| ClientFrame::Admin { id, command: AdminCommand::Pause { node: 2 } });
    assert!(
        matches!(page.answer(id), Some(ProxyFrame::Error { ref error, .. }) if error.message.contains("not running"))
    );
    // Restart kills a running process first, as the supervisor does.
    page.admin(AdminCommand::Restart { node: 2 });
    page.admin(AdminCommand::Restart { node: 2 });
    assert_eq!(page.status().nodes[1].state, shared::protocol::ProcessState::Up);
    let id = page
        .send(|id| ClientFrame::Admin { id, command: AdminCommand::Advance { node: None, ms: u64::MAX } });
    assert!(matches!(page.answer(id), Some(ProxyFrame::Error { .. })), "a clock cannot jump without bound");
}

/// Runs a lesson in automatic mode; its outcome, and what the page was shown.
fn run_lesson(page: &mut Page, name: &str) -> (shared::lesson::Outcome, usize) {
    let action = shared::lesson::LessonAction::Start { name: name.into(), auto: true };
    page.admin(AdminCommand::Lesson { action });
    for _ in 0..2_400 {
        page.run(50.0);
        if let Some(lesson) = page.status().lesson
            && let Some(outcome) = lesson.outcome
        {
            return (outcome, lesson.captions.len());
        }
    }
    panic!("lesson {name} did not end within 120 s of page time: {:?}", page.status().lesson);
}

#[test]
fn every_lesson_runs_and_holds_on_the_simulated_cluster() {
    let mut failed = Vec::new();
    for info in shared::lesson::CATALOG {
        let mut page = Page::open(5, 11, &[]);
        page.wait_leader(5_000.0);
        let (outcome, captions) = run_lesson(&mut page, info.name);
        if !outcome.passed || captions == 0 {
            failed.push(format!("{}: {}", info.name, outcome.message.en));
        }
    }
    assert!(failed.is_empty(), "lessons that failed on the simulated cluster: {failed:#?}");
}

/// A lecturer runs one lesson after another on one page, without reloading: every lesson must
/// start from whatever the one before left (sessions, stopped time, a changed membership).
#[test]
fn all_lessons_chain_on_one_simulated_cluster() {
    let mut page = Page::open(5, 17, &[]);
    page.wait_leader(5_000.0);
    let mut failed = Vec::new();
    for info in shared::lesson::CATALOG {
        let (outcome, _) = run_lesson(&mut page, info.name);
        if !outcome.passed {
            failed.push(format!("{}: {}", info.name, outcome.message.en));
        }
        page.admin(AdminCommand::Lesson { action: shared::lesson::LessonAction::Stop });
    }
    assert!(failed.is_empty(), "lessons that failed when chained: {failed:#?}");
}

#[test]
fn the_figure_8_defect_is_caught_live_on_the_simulated_cluster() {
    let mut page = Page::open(5, 12, &[Bug::CommitOldTerm]);
    page.wait_leader(5_000.0);
    let (outcome, _) = run_lesson(&mut page, "figure-8");
    assert!(!outcome.passed, "the lesson's check failed: {}", outcome.message.en);
    assert!(!page.status().alarms.is_empty(), "the monitor raised an alarm");
}

/// A finished lesson's caption stays until someone closes it — Stop on a finished lesson, as
/// the page's *Close lesson* and Escape send — and a reset by hand takes it away too.
#[test]
fn a_finished_lesson_is_closed_by_stop_and_by_a_reset() {
    let mut page = Page::open(3, 13, &[]);
    page.wait_leader(5_000.0);
    let (outcome, _) = run_lesson(&mut page, "replication");
    assert!(outcome.passed, "{}", outcome.message.en);
    page.run(500.0);
    assert!(page.status().lesson.is_some(), "the outcome stays on screen until closed");
    page.admin(AdminCommand::Lesson { action: shared::lesson::LessonAction::Stop });
    assert!(page.status().lesson.is_none(), "Stop closed the finished lesson");
    let (outcome, _) = run_lesson(&mut page, "replication");
    assert!(outcome.passed, "{}", outcome.message.en);
    page.admin(AdminCommand::Reset);
    assert!(page.status().lesson.is_none(), "a reset took the old lesson's captions away");
}

/// `?sim&prevote=off`: elections without the pre-vote round — no server is ever a
/// pre-candidate — and with it (the default) every election starts with one.
#[test]
fn pre_vote_can_be_left_out_of_the_in_page_cluster() {
    let pre_candidates = |page: &Page| {
        page.events()
            .filter(|o| matches!(o.event, Event::RoleChanged { role: Role::PreCandidate, .. }))
            .count()
    };
    let mut bare = Page::open_with(Playground::with_pre_vote(3, 21, &[], false));
    bare.wait_leader(5_000.0);
    assert_eq!(pre_candidates(&bare), 0, "a pre-vote round without pre-vote");
    let mut usual = Page::open(3, 21, &[]);
    usual.wait_leader(5_000.0);
    assert!(pre_candidates(&usual) > 0, "the first election starts with a pre-vote round");
}
