//! Lessons: the proxy runs one of `crate::lesson`'s scripts at a time as a task, acting through
//! its own admin commands and router, and shows its captions to every page (in the status). A
//! page advances it with *Next*; `consenso scenario run` starts it in automatic mode and reads
//! the captions from the status. The same code runs a lesson on real processes and in the page.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::event::{Consistency, LogMirror};
use crate::kv::{Command, WriteOp};
use crate::lesson::{self, Driver, Failure, LessonAction, LessonStatus, Outcome, ReadRefused, Text, say};
use crate::protocol::{AdminCommand, ApiError, ClusterStatus, ErrorKind, ProxyFrame};
use crate::raft::{Index, Millis, NodeId};
use crate::replica::{Reply, Request};
use crate::session::ClientSession;

use super::core::Core;
use super::route::{self, Outcome as Asked};
use super::wait::sleep;

/// How long a read sent to one server by a lesson may wait, in running time.
const READ_PATIENCE_MS: Millis = 3_000;

pub(crate) fn control(core: &Core, action: LessonAction) -> Result<String, ApiError> {
    match action {
        LessonAction::Start { name, auto } => {
            let status = LessonStatus::starting(&name, auto)?;
            stop(core);
            let task = core.clone();
            let script = name.clone();
            let mut state = core.state();
            state.lesson.status = Some(status);
            state.lesson.next = false;
            let id = state.spawn.spawn(async move { run(task, script, auto).await });
            state.lesson.task = Some(id);
            state.publish_status_now();
            Ok(format!("lesson {name} started"))
        }
        LessonAction::Next => {
            let mut state = core.state();
            if !state.lesson.status.as_ref().is_some_and(|s| s.waiting) {
                return Err(ApiError::new(ErrorKind::BadRequest, "no lesson is waiting for Next"));
            }
            state.lesson.next = true;
            if let Some(waker) = state.lesson.next_waker.take() {
                waker.wake();
            }
            Ok("next".to_string())
        }
        // Stop a running lesson; on one that has finished, close it: its caption leaves every
        // page (a class should not read last lesson's outcome under the next demonstration).
        LessonAction::Stop => {
            let running = core.state().lesson.task.is_some();
            let message = if running {
                stop(core);
                "lesson stopped"
            } else {
                close(core);
                "lesson closed"
            };
            core.state().publish_status_now();
            Ok(message.to_string())
        }
    }
}

/// Abandons the running lesson, if any, and takes its captions off every page.
pub(crate) fn close(core: &Core) {
    stop(core);
    core.state().lesson.status = None;
}

/// Abandons the running lesson, if any (its last caption stays until the next starts).
pub(crate) fn stop(core: &Core) {
    let mut state = core.state();
    if let Some(task) = state.lesson.task.take() {
        state.cancelled.push(task);
    }
    if let Some(status) = state.lesson.status.as_mut().filter(|s| s.outcome.is_none()) {
        status.waiting = false;
        status.outcome = Some(Outcome {
            passed: false,
            message: say("stopped before the end", "detenida antes del final"),
        });
    }
}

async fn run(core: Core, name: String, auto: bool) {
    let mut driver = ProxyDriver { core: core.clone(), auto, session: None };
    let result = lesson::run(&name, &mut driver).await;
    let outcome = match result {
        Ok(message) => Outcome { passed: true, message },
        Err(message) => Outcome { passed: false, message },
    };
    let mut state = core.state();
    state.note(format!(
        "lesson {name}: {} — {}",
        if outcome.passed { "passed" } else { "failed" },
        outcome.message
    ));
    state.lesson.task = None;
    if let Some(status) = state.lesson.status.as_mut() {
        status.waiting = false;
        status.outcome = Some(outcome);
    }
    state.publish_status_now();
}

struct ProxyDriver {
    core: Core,
    auto: bool,
    /// The lesson's own client session, for its writes, opened at its first write (and again
    /// after a reset, which empties the store). Only writes whose outcome came back count as
    /// answered.
    session: Option<ClientSession>,
}

impl ProxyDriver {
    async fn open_session(&mut self) -> Result<(), Failure> {
        if self.session.is_none() {
            let client = route::register(&self.core).await.map_err(failed)?;
            self.session = Some(ClientSession::new(client));
        }
        Ok(())
    }

    async fn command(&mut self, key: &str, value: &str) -> Result<Command, Failure> {
        self.open_session().await?;
        let session = self.session.as_mut().expect("opened above");
        let numbered = session.number();
        Ok(Command {
            client: session.client(),
            seq: numbered.seq,
            op: WriteOp::Put { key: key.to_string(), value: value.to_string() },
            answered_below: numbered.answered_below,
        })
    }

    fn settled(&mut self, seq: u64) {
        if let Some(session) = self.session.as_mut() {
            session.settled(seq);
        }
    }
}

fn failed(error: ApiError) -> Failure {
    say(error.to_string(), error.to_string())
}

/// Waits for the lesson's *Next*.
struct Next(Core);

impl Future for Next {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.0.state();
        if std::mem::take(&mut state.lesson.next) {
            return Poll::Ready(());
        }
        state.lesson.next_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Driver for ProxyDriver {
    async fn status(&mut self) -> Result<ClusterStatus, Failure> {
        Ok(self.core.state().cluster_status())
    }

    async fn admin(&mut self, command: AdminCommand) -> Result<String, Failure> {
        let reset = matches!(command, AdminCommand::Reset);
        let description = command.describe();
        let result = super::admin::run(&self.core, command).await;
        self.core.state().note(format!("lesson: {description}: {result:?}"));
        if reset && result.is_ok() {
            // The store starts empty, without the lesson's session: a new one is opened now,
            // while time runs (a lesson may stop it before its next write).
            self.session = None;
            self.open_session().await?;
        }
        result.map_err(failed)
    }

    fn admin_started(&mut self, command: AdminCommand) {
        let core = self.core.clone();
        let description = command.describe();
        self.core.state().spawn.spawn(async move {
            let result = super::admin::run(&core, command).await;
            core.state().note(format!("lesson (started): {description}: {result:?}"));
        });
    }

    async fn write(&mut self, key: &str, value: &str) -> Result<Index, Failure> {
        let command = self.command(key, value).await?;
        let seq = command.seq;
        let id = self.core.state().next_id();
        match route::write(&self.core, id, command).await {
            ProxyFrame::Done { index, .. } => {
                self.settled(seq);
                Ok(index)
            }
            ProxyFrame::Error { error, .. } => {
                if error.kind == ErrorKind::SessionExpired {
                    self.session = None;
                } else if error.kind.outcome_is_known() {
                    self.settled(seq);
                }
                Err(failed(error))
            }
            other => {
                Err(say(format!("unexpected answer {other:?}"), format!("respuesta inesperada {other:?}")))
            }
        }
    }

    async fn write_via(&mut self, node: NodeId, key: &str, value: &str) -> Result<(), Failure> {
        let command = self.command(key, value).await?;
        let mut state = self.core.state();
        // The answer does not matter: the lesson watches the log.
        if let Some(id) = state.request(node, Request::Write { command }) {
            state.forget_request(id);
        }
        Ok(())
    }

    async fn read_via(
        &mut self,
        node: NodeId,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<String>, ReadRefused> {
        let request = Request::Read { key: key.to_string(), consistency };
        match route::ask(&self.core, node, request, READ_PATIENCE_MS).await {
            Asked::Reply(Reply::Value { value, .. }) => Ok(value),
            Asked::Reply(Reply::Error { error }) => Err(ReadRefused::Refused(error)),
            // A server answers a read with a value or an error; nothing else counts as an answer.
            Asked::Reply(_) | Asked::NoAnswer => Err(ReadRefused::NoAnswer(node)),
        }
    }

    async fn log(&mut self, node: NodeId) -> LogMirror {
        self.core.state().servers.get(&node).map(|s| s.log.clone()).unwrap_or_default()
    }

    async fn sleep(&mut self, ms: u64) {
        sleep(&self.core, ms).await;
    }

    fn now(&mut self) -> u64 {
        self.core.now()
    }

    async fn caption(&mut self, text: Text) {
        {
            let mut state = self.core.state();
            state.note(format!("lesson: {}", text.en));
            if let Some(status) = state.lesson.status.as_mut() {
                status.captions.push(text);
                status.waiting = !self.auto;
            }
            state.publish_status_now();
        }
        if !self.auto {
            Next(self.core.clone()).await;
            let mut state = self.core.state();
            if let Some(status) = state.lesson.status.as_mut() {
                status.waiting = false;
            }
            state.publish_status_now();
        }
    }
}
