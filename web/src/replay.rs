//! Replaying a recording (docs/recording.md) in the page: the recorded frames are fed to the
//! store at their recorded pace, so every view shows the session as it was. Play, pause, step
//! frame by frame, change speed, scrub anywhere in the run, jump to the next election, commit or
//! fault. No proxy needed: a recording opens from a file, by drag-and-drop, or `?replay=URL`.
//!
//! Going back rebuilds the store from the start of the recording up to the moment chosen (the
//! store is plain Rust, so thousands of frames take milliseconds).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use shared::event::Event;
use shared::protocol::ProxyFrame;
use shared::raft::Role;
use shared::recording::Line;
use yew::Callback;

use crate::app::now_ms;
use crate::store::{Link, ReplayView, Store};

/// How often playback moves on.
const TICK: Duration = Duration::from_millis(30);
pub const SPEEDS: [f64; 7] = [0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 10.0];

/// What the replay bar asks for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ReplayAction {
    Play,
    Pause,
    /// Show the next frame, and pause.
    Step,
    Speed(f64),
    /// Go to this many ms from the start of the recording.
    Seek(f64),
    Jump(Landmark),
}

/// Moments worth jumping to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Landmark {
    Election,
    Commit,
    Fault,
}

impl Landmark {
    fn in_frame(self, frame: &ProxyFrame) -> bool {
        let ProxyFrame::Events { events } = frame else { return false };
        events.iter().any(|o| match self {
            Landmark::Election => matches!(o.event, Event::RoleChanged { role: Role::Leader, .. }),
            Landmark::Commit => matches!(o.event, Event::CommitAdvanced { .. }),
            Landmark::Fault => matches!(o.event, Event::Fault { .. } | Event::Alarm { .. }),
        })
    }
}

/// The playback itself — where in the recording, playing or not, how fast — feeding a store.
/// Plain Rust with the page clock (`wall`) as an input, so it is tested natively.
struct Player {
    lines: Vec<Line>,
    /// The next line to show.
    next: usize,
    /// Recording time shown now, and when (page clock) it was.
    at: f64,
    anchor: f64,
    playing: bool,
    speed: f64,
}

impl Player {
    /// A player at the start of `lines`, playing at `speed`, with `store` showing the start.
    fn new(lines: Vec<Line>, speed: f64, wall: f64, store: &mut Store) -> Player {
        let lines = one_event_per_line(lines);
        let mut player = Player { lines, next: 0, at: 0.0, anchor: wall, playing: true, speed };
        player.rebuild(0.0, wall, store);
        player
    }

    fn duration(&self) -> f64 {
        self.lines.last().map_or(0.0, |l| l.t as f64)
    }

    /// Recording time now.
    fn clock(&self, wall: f64) -> f64 {
        if self.playing {
            (self.at + (wall - self.anchor) * self.speed).min(self.duration())
        } else {
            self.at
        }
    }

    /// The page time at which a recorded moment is shown, so that animations keep their pace.
    fn page_time(&self, t: f64, wall: f64) -> f64 {
        wall - (self.clock(wall) - t) / self.speed
    }

    fn act(&mut self, action: ReplayAction, wall: f64, store: &mut Store) {
        let now = self.clock(wall);
        self.at = now;
        self.anchor = wall;
        match action {
            ReplayAction::Play => {
                if now >= self.duration() {
                    self.rebuild(0.0, wall, store);
                }
                self.playing = true;
            }
            ReplayAction::Pause => self.playing = false,
            ReplayAction::Speed(speed) => self.speed = speed.clamp(0.01, 100.0),
            ReplayAction::Step => {
                // Exactly one more line: one event (or one status, one log).
                self.playing = false;
                if let Some(line) = self.lines.get(self.next).cloned() {
                    self.at = line.t as f64;
                    let t = self.page_time(self.at, wall);
                    self.next += 1;
                    store.receive(line.frame, t);
                    store.admin = false;
                }
                return;
            }
            ReplayAction::Seek(t) => return self.rebuild(t, wall, store),
            ReplayAction::Jump(landmark) => {
                let found = self.lines[self.next..].iter().find(|l| landmark.in_frame(&l.frame));
                if let Some(line) = found {
                    self.at = line.t as f64;
                }
            }
        }
        self.feed(wall, store);
    }

    /// Moves playback on to the page time `wall`; stops at the end.
    fn tick(&mut self, wall: f64, store: &mut Store) {
        if !self.playing {
            return;
        }
        self.feed(wall, store);
        if self.clock(wall) >= self.duration() && self.next >= self.lines.len() {
            self.at = self.duration();
            self.playing = false;
        }
    }

    /// Shows every frame recorded up to the recording time now.
    fn feed(&mut self, wall: f64, store: &mut Store) {
        let until = self.clock(wall);
        while let Some(line) = self.lines.get(self.next).filter(|l| l.t as f64 <= until) {
            store.receive(line.frame.clone(), self.page_time(line.t as f64, wall));
            self.next += 1;
        }
        // A recording is watched, never driven: no admin controls.
        store.admin = false;
    }

    /// A new store showing the moment `t` of the recording.
    fn rebuild(&mut self, t: f64, wall: f64, store: &mut Store) {
        // Never before the first frame: it holds the picture everything else builds on.
        let first = self.lines.first().map_or(0.0, |l| l.t as f64);
        self.at = t.clamp(first, self.duration().max(first));
        self.anchor = wall;
        self.next = 0;
        let link = store.link.clone();
        *store = Store::default();
        store.link = link;
        self.feed(wall, store);
    }

    fn view(&self, wall: f64) -> ReplayView {
        ReplayView {
            at_ms: self.clock(wall),
            duration_ms: self.duration(),
            playing: self.playing,
            speed: self.speed,
            frame: self.next,
            frames: self.lines.len(),
        }
    }
}

#[derive(Clone)]
pub struct Replay {
    /// The recording as opened, for diagrams of a window of it.
    text: Rc<String>,
    player: Rc<RefCell<Player>>,
    store: Rc<RefCell<Store>>,
    touch: Callback<()>,
    /// Set when the page turns to another source: the playback loop ends.
    stopped: Rc<std::cell::Cell<bool>>,
}

impl Replay {
    /// Starts playing `lines` (a parsed recording) into `store` from the beginning.
    pub fn start(
        text: String,
        lines: Vec<Line>,
        store: Rc<RefCell<Store>>,
        touch: Callback<()>,
        name: String,
    ) -> Replay {
        let wall = now_ms();
        // `?replay=URL&speed=10` plays faster from the start.
        let speed = web_sys::window()
            .and_then(|w| w.location().search().ok())
            .and_then(|s| web_sys::UrlSearchParams::new_with_str(&s).ok())
            .and_then(|p| p.get("speed"))
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .unwrap_or(1.0);
        store.borrow_mut().link = Link::Replay { name };
        let player = Player::new(lines, speed, wall, &mut store.borrow_mut());
        let stopped = Rc::new(std::cell::Cell::new(false));
        let replay =
            Replay { text: Rc::new(text), player: Rc::new(RefCell::new(player)), store, touch, stopped };
        replay.publish(wall);
        let running = replay.clone();
        yew::platform::spawn_local(async move {
            while !running.stopped.get() {
                let wall = now_ms();
                running.player.borrow_mut().tick(wall, &mut running.store.borrow_mut());
                running.publish(wall);
                yew::platform::time::sleep(TICK).await;
            }
        });
        replay
    }

    pub fn stop(&self) {
        self.stopped.set(true);
    }

    /// The recording, and the moment shown (seconds from its start).
    pub fn recording(&self) -> (Rc<String>, f64) {
        (self.text.clone(), self.player.borrow().clock(now_ms()) / 1000.0)
    }

    pub fn act(&self, action: ReplayAction) {
        if self.stopped.get() {
            return;
        }
        let wall = now_ms();
        self.player.borrow_mut().act(action, wall, &mut self.store.borrow_mut());
        self.publish(wall);
        self.touch.emit(());
    }

    /// Tells the replay bar where playback is, when that changed.
    fn publish(&self, wall: f64) {
        let view = self.player.borrow().view(wall);
        let mut store = self.store.borrow_mut();
        if store.replay.as_ref() != Some(&view) {
            store.replay = Some(view);
            drop(store);
            self.touch.emit(());
        }
    }
}

/// Splits frames of several events into one line per event (same time), so that stepping goes
/// one event at a time.
fn one_event_per_line(lines: Vec<Line>) -> Vec<Line> {
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        match line.frame {
            ProxyFrame::Events { events } if events.len() > 1 => {
                out.extend(
                    events
                        .into_iter()
                        .map(|e| Line { t: line.t, frame: ProxyFrame::Events { events: vec![e] } }),
                );
            }
            frame => out.push(Line { t: line.t, frame }),
        }
    }
    out
}

/// What a JavaScript error says, without its stack trace: a browser refusing another origin's
/// file says "Failed to fetch", which the page shows as is.
fn js_message(e: &wasm_bindgen::JsValue) -> String {
    use wasm_bindgen::JsCast;
    match e.dyn_ref::<js_sys::Error>() {
        Some(error) => String::from(error.message()),
        None => e.as_string().unwrap_or_else(|| "the browser refused".to_string()),
    }
}

/// Fetches a recording from `url` (`?replay=URL`).
pub async fn fetch(url: &str) -> Result<String, String> {
    use wasm_bindgen::JsCast;
    let window = web_sys::window().ok_or("no window")?;
    let response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url)).await.map_err(|e| {
        format!(
            "cannot fetch {url}: {} (a file on another site opens only if that site allows it: \
                 download it and drop it on the page instead)",
            js_message(&e)
        )
    })?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response".to_string())?;
    if !response.ok() {
        return Err(format!("cannot fetch {url}: HTTP {}", response.status()));
    }
    let text = response.text().map_err(|e| js_message(&e))?;
    let text = wasm_bindgen_futures::JsFuture::from(text).await.map_err(|e| js_message(&e))?;
    text.as_string().ok_or_else(|| "the recording is not text".to_string())
}

/// Reads a file the user picked or dropped.
pub async fn read_file(file: web_sys::File) -> Result<String, String> {
    let text = wasm_bindgen_futures::JsFuture::from(file.text()).await.map_err(|e| js_message(&e))?;
    text.as_string().ok_or_else(|| "the file is not text".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::event::{Observed, RoleReason};

    fn event(node: u64, event: Event) -> ProxyFrame {
        ProxyFrame::Events { events: vec![Observed { node, at: 0, event }] }
    }

    fn became(node: u64, role: Role, term: u64) -> ProxyFrame {
        event(node, Event::RoleChanged { role, term, leader: None, reason: RoleReason::ElectionTimeout })
    }

    /// A recording of ten seconds: node 1 leads term 1 at 0 s, node 2 campaigns at 4 s and
    /// leads term 2 at 6 s, and both events of 8 s came in one frame.
    fn recording() -> Vec<Line> {
        let both = ProxyFrame::Events {
            events: vec![
                Observed { node: 2, at: 0, event: Event::CommitAdvanced { from: 0, to: 3, term: 2 } },
                Observed { node: 1, at: 0, event: Event::CommitAdvanced { from: 0, to: 3, term: 2 } },
            ],
        };
        vec![
            Line { t: 0, frame: became(1, Role::Leader, 1) },
            Line { t: 4_000, frame: became(2, Role::Candidate, 2) },
            Line { t: 6_000, frame: became(2, Role::Leader, 2) },
            Line { t: 8_000, frame: both },
            Line { t: 10_000, frame: became(3, Role::Follower, 2) },
        ]
    }

    fn role(store: &Store, node: u64) -> Option<Role> {
        store.view().nodes.get(&node).and_then(|n| n.role)
    }

    #[test]
    fn playing_shows_each_frame_at_its_recorded_pace_and_stops_at_the_end() {
        let mut store = Store::default();
        let mut player = Player::new(recording(), 1.0, 1_000.0, &mut store);
        assert_eq!(role(&store, 1), Some(Role::Leader));
        assert_eq!(role(&store, 2), None, "nothing of 4 s yet");
        player.tick(5_500.0, &mut store);
        assert_eq!(role(&store, 2), Some(Role::Candidate));
        player.tick(20_000.0, &mut store);
        assert_eq!(role(&store, 2), Some(Role::Leader));
        assert!(!player.playing, "the end pauses");
        assert_eq!(player.view(30_000.0).at_ms, 10_000.0);
    }

    #[test]
    fn stepping_shows_one_event_at_a_time_even_from_a_frame_of_several() {
        let mut store = Store::default();
        let mut player = Player::new(recording(), 1.0, 0.0, &mut store);
        player.act(ReplayAction::Pause, 0.0, &mut store);
        for _ in 0..2 {
            player.act(ReplayAction::Step, 0.0, &mut store);
        }
        assert_eq!(role(&store, 2), Some(Role::Leader));
        player.act(ReplayAction::Step, 0.0, &mut store);
        let commits = |s: &Store| (s.view().nodes[&2].commit, s.view().nodes.get(&1).map(|n| n.commit));
        assert_eq!(commits(&store), (3, Some(0)), "one of the two events of 8 s");
        player.act(ReplayAction::Step, 0.0, &mut store);
        assert_eq!(commits(&store), (3, Some(3)));
        assert_eq!(player.view(0.0).frames, 6, "five lines, one of them split in two");
    }

    #[test]
    fn seeking_back_rebuilds_the_moment_and_forward_plays_up_to_it() {
        let mut store = Store::default();
        let mut player = Player::new(recording(), 1.0, 0.0, &mut store);
        player.act(ReplayAction::Seek(7_000.0), 0.0, &mut store);
        assert_eq!(role(&store, 2), Some(Role::Leader));
        player.act(ReplayAction::Seek(5_000.0), 0.0, &mut store);
        assert_eq!(role(&store, 2), Some(Role::Candidate), "going back forgets what came later");
        player.act(ReplayAction::Seek(-50.0), 0.0, &mut store);
        assert_eq!(role(&store, 1), Some(Role::Leader), "never before the first frame");
    }

    #[test]
    fn jumping_to_the_next_election_skips_the_campaign() {
        let mut store = Store::default();
        let mut player = Player::new(recording(), 1.0, 0.0, &mut store);
        player.act(ReplayAction::Pause, 0.0, &mut store);
        player.act(ReplayAction::Jump(Landmark::Election), 0.0, &mut store);
        assert_eq!(role(&store, 2), Some(Role::Leader));
        assert_eq!(player.view(0.0).at_ms, 6_000.0);
    }

    #[test]
    fn ten_times_faster_covers_the_recording_in_a_tenth_of_the_time() {
        let mut store = Store::default();
        let mut player = Player::new(recording(), 10.0, 0.0, &mut store);
        player.tick(650.0, &mut store);
        assert_eq!(role(&store, 2), Some(Role::Leader));
        assert!(player.playing);
    }

    #[test]
    fn play_at_the_end_starts_over() {
        let mut store = Store::default();
        let mut player = Player::new(recording(), 1.0, 0.0, &mut store);
        player.tick(60_000.0, &mut store);
        player.act(ReplayAction::Play, 60_000.0, &mut store);
        assert_eq!(role(&store, 2), None, "back at the start");
        assert!(player.playing);
    }

    #[test]
    fn a_recording_is_only_watched_even_if_it_was_made_with_the_token() {
        let mut store = Store::default();
        store.admin = true;
        let _player = Player::new(recording(), 1.0, 0.0, &mut store);
        assert!(!store.admin);
    }
}
