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
        let player =
            Player { lines: one_event_per_line(lines), next: 0, at: 0.0, anchor: wall, playing: true, speed };
        let stopped = Rc::new(std::cell::Cell::new(false));
        let replay =
            Replay { text: Rc::new(text), player: Rc::new(RefCell::new(player)), store, touch, stopped };
        replay.rebuild(0.0);
        replay.store.borrow_mut().link = Link::Replay { name };
        let running = replay.clone();
        yew::platform::spawn_local(async move {
            while !running.stopped.get() {
                running.tick();
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
        {
            let mut p = self.player.borrow_mut();
            let now = p.clock(wall);
            p.at = now;
            p.anchor = wall;
            match action {
                ReplayAction::Play => {
                    if now >= p.duration() {
                        drop(p);
                        self.rebuild(0.0);
                        p = self.player.borrow_mut();
                    }
                    p.playing = true;
                }
                ReplayAction::Pause => p.playing = false,
                ReplayAction::Speed(speed) => p.speed = speed.clamp(0.01, 100.0),
                ReplayAction::Step => {
                    // Exactly one more line: one event (or one status, one log).
                    p.playing = false;
                    if let Some(line) = p.lines.get(p.next).cloned() {
                        p.at = line.t as f64;
                        let (frame, t) = (line.frame, p.page_time(line.t as f64, wall));
                        p.next += 1;
                        drop(p);
                        self.store.borrow_mut().receive(frame, t);
                        self.store.borrow_mut().admin = false;
                        self.publish(wall);
                        self.touch.emit(());
                        return;
                    }
                }
                ReplayAction::Seek(t) => {
                    drop(p);
                    self.rebuild(t);
                    self.touch.emit(());
                    return;
                }
                ReplayAction::Jump(landmark) => {
                    let found =
                        p.lines[p.next..].iter().find(|l| landmark.in_frame(&l.frame)).map(|l| l.t as f64);
                    if let Some(t) = found {
                        p.at = t;
                    }
                }
            }
        }
        self.feed(wall);
        self.publish(wall);
        self.touch.emit(());
    }

    fn tick(&self) {
        let wall = now_ms();
        if self.player.borrow().playing {
            self.feed(wall);
            let mut p = self.player.borrow_mut();
            if p.clock(wall) >= p.duration() && p.next >= p.lines.len() {
                p.at = p.duration();
                p.playing = false;
            }
        }
        self.publish(wall);
    }

    /// Shows every frame recorded up to the recording time now.
    fn feed(&self, wall: f64) {
        let p = &mut *self.player.borrow_mut();
        let until = p.clock(wall);
        let mut store = self.store.borrow_mut();
        while let Some(line) = p.lines.get(p.next).filter(|l| l.t as f64 <= until) {
            store.receive(line.frame.clone(), p.page_time(line.t as f64, wall));
            p.next += 1;
        }
        // A recording is watched, never driven: no admin controls.
        store.admin = false;
    }

    /// A new store showing the moment `t` of the recording.
    fn rebuild(&self, t: f64) {
        let wall = now_ms();
        {
            let mut p = self.player.borrow_mut();
            // Never before the first frame: it holds the picture everything else builds on.
            let first = p.lines.first().map_or(0.0, |l| l.t as f64);
            p.at = t.clamp(first, p.duration().max(first));
            p.anchor = wall;
            p.next = 0;
            let mut store = self.store.borrow_mut();
            let link = store.link.clone();
            *store = Store::default();
            store.link = link;
        }
        self.feed(wall);
        self.publish(wall);
    }

    fn publish(&self, wall: f64) {
        let view = {
            let p = self.player.borrow();
            ReplayView {
                at_ms: p.clock(wall),
                duration_ms: p.duration(),
                playing: p.playing,
                speed: p.speed,
                frame: p.next,
                frames: p.lines.len(),
            }
        };
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

/// Fetches a recording from `url` (`?replay=URL`).
pub async fn fetch(url: &str) -> Result<String, String> {
    use wasm_bindgen::JsCast;
    let window = web_sys::window().ok_or("no window")?;
    let response = wasm_bindgen_futures::JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(|e| format!("cannot fetch {url}: {e:?}"))?;
    let response: web_sys::Response = response.dyn_into().map_err(|_| "not a response".to_string())?;
    if !response.ok() {
        return Err(format!("cannot fetch {url}: HTTP {}", response.status()));
    }
    let text = response.text().map_err(|e| format!("{e:?}"))?;
    let text = wasm_bindgen_futures::JsFuture::from(text).await.map_err(|e| format!("{e:?}"))?;
    text.as_string().ok_or_else(|| "the recording is not text".to_string())
}

/// Reads a file the user picked or dropped.
pub async fn read_file(file: web_sys::File) -> Result<String, String> {
    let text = wasm_bindgen_futures::JsFuture::from(file.text()).await.map_err(|e| format!("{e:?}"))?;
    text.as_string().ok_or_else(|| "the file is not text".to_string())
}
