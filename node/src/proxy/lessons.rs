//! Lessons on the real cluster: the proxy runs one of `shared::lesson`'s scripts at a time,
//! acting through its own admin commands and router, and shows its captions to every page (in
//! the status). A page advances it with *Next*; `consenso scenario run` starts it in automatic
//! mode and reads the captions from the status.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::event::{Consistency, LogMirror};
use shared::kv::{Command, WriteOp};
use shared::lesson::{self, Driver, Failure, LessonAction, LessonStatus, Outcome, Text, say};
use shared::protocol::{AdminCommand, ApiError, ClusterStatus, ErrorKind, ProxyFrame};
use shared::raft::{Index, NodeId};
use shared::replica::{Reply, Request};
use shared::session::ClientSession;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::routing::{Outcome as Asked, ask};
use super::{Hub, admin, routing, status};

/// How long a read sent to one server by a lesson may wait, in running time.
const READ_PATIENCE: Duration = Duration::from_secs(3);

/// The lesson of this proxy: its status for pages, and the task that runs it.
#[derive(Default)]
pub struct Lessons {
    state: Mutex<Slot>,
    next: Notify,
}

#[derive(Default)]
struct Slot {
    status: Option<LessonStatus>,
    task: Option<JoinHandle<()>>,
}

impl Lessons {
    pub fn status(&self) -> Option<LessonStatus> {
        self.state.lock().expect("lessons lock").status.clone()
    }

    fn update(&self, change: impl FnOnce(&mut LessonStatus)) {
        if let Some(status) = self.state.lock().expect("lessons lock").status.as_mut() {
            change(status);
        }
    }

    /// Abandons the running lesson, if any (its last caption stays until the next starts).
    pub fn stop(&self) {
        let mut slot = self.state.lock().expect("lessons lock");
        if let Some(task) = slot.task.take() {
            task.abort();
        }
        if let Some(status) = slot.status.as_mut().filter(|s| s.outcome.is_none()) {
            status.waiting = false;
            status.outcome = Some(Outcome {
                passed: false,
                message: say("stopped before the end", "detenida antes del final"),
            });
        }
    }
}

pub async fn control(hub: &Arc<Hub>, action: LessonAction) -> Result<String, ApiError> {
    match action {
        LessonAction::Start { name, auto } => {
            let status = LessonStatus::starting(&name, auto)?;
            hub.lessons.stop();
            let task = tokio::spawn(run(hub.clone(), name.clone(), auto));
            let mut slot = hub.lessons.state.lock().expect("lessons lock");
            slot.status = Some(status);
            slot.task = Some(task);
            drop(slot);
            publish(hub);
            Ok(format!("lesson {name} started"))
        }
        LessonAction::Next => {
            let waiting = hub.lessons.status().is_some_and(|s| s.waiting);
            if !waiting {
                return Err(ApiError::new(ErrorKind::BadRequest, "no lesson is waiting for Next"));
            }
            hub.lessons.next.notify_one();
            Ok("next".to_string())
        }
        LessonAction::Stop => {
            hub.lessons.stop();
            publish(hub);
            Ok("lesson stopped".to_string())
        }
    }
}

async fn run(hub: Arc<Hub>, name: String, auto: bool) {
    let mut driver = ProxyDriver {
        hub: hub.clone(),
        auto,
        session: ClientSession::new(crate::secret::random_u64() >> 12),
    };
    let result = lesson::run(&name, &mut driver).await;
    let outcome = match result {
        Ok(message) => Outcome { passed: true, message },
        Err(message) => Outcome { passed: false, message },
    };
    tracing::info!(
        "lesson {name}: {} — {}",
        if outcome.passed { "passed" } else { "failed" },
        outcome.message
    );
    hub.lessons.update(|s| {
        s.waiting = false;
        s.outcome = Some(outcome);
    });
    publish(&hub);
}

/// Pages see a lesson's progress at once, not at the next periodic status.
fn publish(hub: &Hub) {
    hub.publish(ProxyFrame::Status { id: None, cluster: Box::new(status::cluster_status(hub)) });
}

struct ProxyDriver {
    hub: Arc<Hub>,
    auto: bool,
    /// The lesson's own client session, for its writes. Only writes whose outcome came back
    /// count as answered: saying more (as this once did) made a store that never saw the
    /// first write — it timed out, or went to a server that crashed — refuse the next one as
    /// a forgotten session.
    session: ClientSession,
}

impl ProxyDriver {
    fn command(&mut self, key: &str, value: &str) -> Command {
        let numbered = self.session.number();
        Command {
            client: self.session.client(),
            seq: numbered.seq,
            op: WriteOp::Put { key: key.to_string(), value: value.to_string() },
            answered_below: numbered.answered_below,
        }
    }
}

fn failed(error: ApiError) -> Failure {
    say(error.to_string(), error.to_string())
}

impl Driver for ProxyDriver {
    async fn status(&mut self) -> Result<ClusterStatus, Failure> {
        Ok(status::cluster_status(&self.hub))
    }

    async fn admin(&mut self, command: AdminCommand) -> Result<String, Failure> {
        let id = self.hub.next_id();
        let description = command.describe();
        let result = admin::run(&self.hub, id, command).await;
        tracing::info!("lesson: {description}: {result:?}");
        result.map_err(failed)
    }

    async fn write(&mut self, key: &str, value: &str) -> Result<Index, Failure> {
        let command = self.command(key, value);
        let seq = command.seq;
        match routing::write(&self.hub, self.hub.next_id(), command).await {
            ProxyFrame::Done { index, .. } => {
                self.session.settled(seq);
                Ok(index)
            }
            ProxyFrame::Error { error, .. } => {
                if error.kind.outcome_is_known() {
                    self.session.settled(seq);
                }
                Err(failed(error))
            }
            other => {
                Err(say(format!("unexpected answer {other:?}"), format!("respuesta inesperada {other:?}")))
            }
        }
    }

    fn write_via(&mut self, node: NodeId, key: &str, value: &str) {
        let command = self.command(key, value);
        if let Some(backend) = self.hub.backends.get(&node) {
            // The answer does not matter: the lesson watches the log.
            drop(backend.request(self.hub.next_id(), Request::Write { command }));
        }
    }

    async fn read_via(
        &mut self,
        node: NodeId,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<String>, String> {
        let request = Request::Read { key: key.to_string(), consistency };
        match ask(&self.hub, node, request, READ_PATIENCE).await {
            Asked::Reply(Reply::Value { value, .. }) => Ok(value),
            Asked::Reply(Reply::Error { error }) => Err(error.to_string()),
            Asked::Reply(other) => Err(format!("unexpected answer {other:?}")),
            Asked::NoAnswer => Err(format!("node {node} did not answer")),
        }
    }

    async fn log(&mut self, node: NodeId) -> LogMirror {
        self.hub.backends.get(&node).map(|b| b.log()).unwrap_or_default()
    }

    async fn sleep(&mut self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }

    async fn caption(&mut self, text: Text) {
        tracing::info!("lesson: {}", text.en);
        let auto = self.auto;
        self.hub.lessons.update(|s| {
            s.captions.push(text);
            s.waiting = !auto;
        });
        publish(&self.hub);
        if !auto {
            self.hub.lessons.next.notified().await;
            self.hub.lessons.update(|s| s.waiting = false);
            publish(&self.hub);
        }
    }
}
