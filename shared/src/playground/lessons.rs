//! The playground as the page sees it, with lessons: the same `shared::lesson` scripts the
//! proxy runs on real processes, run here against the simulated cluster through a `Driver`.
//!
//! A lesson is an async script. The playground runs it without any executor: it polls the
//! script after every `advance` and every frame from the page, and the script's waits (a
//! sleep, a caption waiting for *Next*, an answer to a request) are futures that are ready once
//! the playground's state says so. No waker is needed, because the page advances the
//! playground every few milliseconds anyway.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use crate::event::{Consistency, LogMirror};
use crate::lesson::{self, Driver, Failure, LessonAction, LessonStatus, Outcome, Text, say};
use crate::protocol::{AdminCommand, ApiError, ClientFrame, ClusterStatus, ErrorKind, OpResult, ProxyFrame};
use crate::raft::{Bug, Index, Millis, NodeId};
use crate::replica::Request;

use super::Core;
use super::clients::AnswerTo;

type Script = Pin<Box<dyn Future<Output = Result<Text, Failure>>>>;

/// A simulated cluster that speaks the proxy's frames (see the module `playground`).
pub struct Playground {
    core: Rc<RefCell<Core>>,
    script: Option<Script>,
    /// Set by *Next*, taken by the caption waiting for it.
    next: Rc<Cell<bool>>,
    /// Ids for a lesson's own requests (never shown to the page).
    next_request: Rc<Cell<u64>>,
}

impl Playground {
    /// A cluster of `servers` (clamped to 3–7) that runs with the deliberate defects `bugs`.
    pub fn new(servers: usize, seed: u64, bugs: &[Bug]) -> Playground {
        Playground {
            core: Rc::new(RefCell::new(Core::new(servers, seed, bugs))),
            script: None,
            next: Rc::new(Cell::new(false)),
            next_request: Rc::new(Cell::new(1)),
        }
    }

    /// Takes a frame from the page. Answers come out of `take_frames`.
    pub fn handle(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Admin { id, command: AdminCommand::Lesson { action } } => {
                let frame = match self.control(action) {
                    Ok(message) => ProxyFrame::AdminDone { id, message },
                    Err(error) => ProxyFrame::Error { id: Some(id), error },
                };
                self.core.borrow_mut().out.push(frame);
            }
            other => {
                // A reset from the page ends the lesson, as on the proxy (a lesson's own resets
                // go straight to the core).
                if matches!(other, ClientFrame::Admin { command: AdminCommand::Reset, .. }) {
                    self.stop();
                }
                self.core.borrow_mut().handle(other)
            }
        }
        self.poll_lesson();
    }

    /// Moves the cluster to the page's clock `wall_ms`, and the lesson with it.
    pub fn advance(&mut self, wall_ms: f64) {
        self.core.borrow_mut().advance(wall_ms);
        self.poll_lesson();
    }

    /// Frames for the page since the last call, in order.
    pub fn take_frames(&mut self) -> Vec<ProxyFrame> {
        self.core.borrow_mut().take_frames()
    }

    /// The first frame for a page: the whole picture.
    pub fn welcome(&mut self) -> ProxyFrame {
        self.core.borrow_mut().welcome()
    }

    /// A picture of the cluster now that changes nothing (a recording's keyframe).
    pub fn picture(&self) -> ProxyFrame {
        self.core.borrow().picture()
    }

    pub fn status(&self) -> ClusterStatus {
        self.core.borrow().status()
    }

    /// The cluster's clock (ms of cluster time).
    pub fn now(&self) -> Millis {
        self.core.borrow().now()
    }

    fn control(&mut self, action: LessonAction) -> Result<String, ApiError> {
        match action {
            LessonAction::Start { name, auto } => {
                let status = LessonStatus::starting(&name, auto)?;
                self.stop();
                self.core.borrow_mut().lesson = Some(status);
                self.next.set(false);
                let mut driver = PlaygroundDriver {
                    core: self.core.clone(),
                    next: self.next.clone(),
                    next_request: self.next_request.clone(),
                    auto,
                };
                let script_name = name.clone();
                self.script = Some(Box::pin(async move { lesson::run(&script_name, &mut driver).await }));
                Ok(format!("lesson {name} started"))
            }
            LessonAction::Next => {
                if !self.core.borrow().lesson.as_ref().is_some_and(|s| s.waiting) {
                    return Err(ApiError::new(ErrorKind::BadRequest, "no lesson is waiting for Next"));
                }
                self.next.set(true);
                Ok("next".to_string())
            }
            LessonAction::Stop => {
                self.stop();
                Ok("lesson stopped".to_string())
            }
        }
    }

    /// Abandons the running lesson (its last caption stays until the next starts).
    fn stop(&mut self) {
        self.script = None;
        let mut core = self.core.borrow_mut();
        if let Some(status) = core.lesson.as_mut().filter(|s| s.outcome.is_none()) {
            status.waiting = false;
            status.outcome = Some(Outcome {
                passed: false,
                message: say("stopped before the end", "detenida antes del final"),
            });
        }
    }

    /// Runs the lesson's script as far as it can go now.
    fn poll_lesson(&mut self) {
        let Some(script) = self.script.as_mut() else { return };
        let mut context = Context::from_waker(Waker::noop());
        if let Poll::Ready(result) = script.as_mut().poll(&mut context) {
            self.script = None;
            let outcome = match result {
                Ok(message) => Outcome { passed: true, message },
                Err(message) => Outcome { passed: false, message },
            };
            let mut core = self.core.borrow_mut();
            if let Some(status) = core.lesson.as_mut() {
                status.waiting = false;
                status.outcome = Some(outcome);
            }
        }
    }
}

/// What a lesson needs, on the playground.
struct PlaygroundDriver {
    core: Rc<RefCell<Core>>,
    next: Rc<Cell<bool>>,
    next_request: Rc<Cell<u64>>,
    auto: bool,
}

/// Ready once `ready` says so; checked at every poll (see the module documentation).
struct Until<F: FnMut() -> bool>(F);

impl<F: FnMut() -> bool + Unpin> Future for Until<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<()> {
        if (self.0)() { Poll::Ready(()) } else { Poll::Pending }
    }
}

/// Ready at the first poll after this one: lets the playground run in between.
async fn yield_once() {
    let mut first = true;
    Until(move || !std::mem::replace(&mut first, false)).await
}

impl PlaygroundDriver {
    /// Sends a request for the lesson and waits for its answer.
    async fn ask(&mut self, request: Request, only: Option<NodeId>) -> ProxyFrame {
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        self.core.borrow_mut().submit(id, request, AnswerTo::Lesson, only);
        let core = self.core.clone();
        Until(|| core.borrow().lesson_answers.contains_key(&id)).await;
        self.core.borrow_mut().lesson_answers.remove(&id).expect("waited for it")
    }
}

fn failed(error: ApiError) -> Failure {
    say(error.to_string(), error.to_string())
}

impl Driver for PlaygroundDriver {
    async fn status(&mut self) -> Result<ClusterStatus, Failure> {
        // A lesson polls the status in loops: let the cluster move between two looks.
        yield_once().await;
        Ok(self.core.borrow().status())
    }

    async fn admin(&mut self, command: AdminCommand) -> Result<String, Failure> {
        // As on the proxy, a step is done when the messages it released have arrived.
        let travels = matches!(command, AdminCommand::Step { .. } | AdminCommand::DeliverMessage { .. });
        let result = self.core.borrow_mut().admin(command).map_err(failed);
        if travels {
            let core = self.core.clone();
            Until(|| core.borrow().travelling.is_empty()).await;
        }
        yield_once().await;
        result
    }

    async fn write(&mut self, key: &str, value: &str) -> Result<Index, Failure> {
        let request = self.core.borrow_mut().lesson_write(key, value);
        match self.ask(request, None).await {
            ProxyFrame::Done { index, .. } => Ok(index),
            ProxyFrame::Error { error, .. } => Err(failed(error)),
            other => {
                Err(say(format!("unexpected answer {other:?}"), format!("respuesta inesperada {other:?}")))
            }
        }
    }

    fn write_via(&mut self, node: NodeId, key: &str, value: &str) {
        let mut core = self.core.borrow_mut();
        let request = core.lesson_write(key, value);
        let id = self.next_request.get();
        self.next_request.set(id + 1);
        // The answer does not matter: the lesson watches the log.
        core.submit(id, request, AnswerTo::Lesson, Some(node));
    }

    async fn read_via(
        &mut self,
        node: NodeId,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<String>, String> {
        let request = Request::Read { key: key.to_string(), consistency };
        match self.ask(request, Some(node)).await {
            ProxyFrame::Done { result: OpResult::Get { value }, .. } => Ok(value),
            ProxyFrame::Error { error, .. } => Err(error.message),
            other => Err(format!("unexpected answer {other:?}")),
        }
    }

    async fn log(&mut self, node: NodeId) -> LogMirror {
        self.core.borrow().servers.get(&node).and_then(super::Server::log).unwrap_or_default()
    }

    async fn sleep(&mut self, ms: u64) {
        let core = self.core.clone();
        let until = core.borrow().wall.unwrap_or(0.0) + ms as f64;
        Until(|| core.borrow().wall.unwrap_or(0.0) >= until).await;
    }

    async fn caption(&mut self, text: Text) {
        let auto = self.auto;
        if let Some(status) = self.core.borrow_mut().lesson.as_mut() {
            status.captions.push(text);
            status.waiting = !auto;
        }
        if !auto {
            let next = self.next.clone();
            Until(|| next.replace(false)).await;
            if let Some(status) = self.core.borrow_mut().lesson.as_mut() {
                status.waiting = false;
            }
        }
    }
}
