//! A small executor for the proxy core: requests, admin commands and lessons are `async`
//! code (waiting for a server's answer, for time to pass, for a lesson's *Next*), but the core
//! has no runtime, no threads and no clock. Tasks live here and are polled only when woken —
//! by an answer, a timer, or an input their waits name — right after the input that wakes them,
//! so the same inputs in the same order always give the same outputs (the simulator relies on
//! it), and a page or a proxy thread can drive it alike.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Wake, Waker};

pub(crate) type TaskId = u64;
type Task = Pin<Box<dyn Future<Output = ()>>>;

/// Tasks, and the ones woken since they were last polled.
pub(crate) struct Tasks {
    tasks: BTreeMap<TaskId, Task>,
    next: TaskId,
    woken: Arc<Mutex<Vec<TaskId>>>,
    /// Tasks spawned by running tasks (they cannot reach `Tasks` while it polls them).
    spawned: SpawnQueue,
}

/// Where tasks (and the core, on their behalf) put new tasks.
#[derive(Clone, Default)]
pub(crate) struct SpawnQueue(Arc<Mutex<Vec<(TaskId, Task)>>>, Arc<Mutex<TaskId>>);

impl SpawnQueue {
    /// Queues a task; it runs at the next `Tasks::run`. Returns its id (to cancel it).
    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) -> TaskId {
        let mut next = self.1.lock().expect("not poisoned");
        *next += 1;
        let id = *next;
        self.0.lock().expect("not poisoned").push((id, Box::pin(task)));
        id
    }

    fn take(&self) -> Vec<(TaskId, Task)> {
        std::mem::take(&mut self.0.lock().expect("not poisoned"))
    }
}

struct TaskWaker {
    id: TaskId,
    woken: Arc<Mutex<Vec<TaskId>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.woken.lock().expect("not poisoned").push(self.id);
    }
}

/// Polls of tasks in one `run` at most: a task that keeps waking itself cannot hang a page.
const MAX_POLLS_PER_RUN: usize = 100_000;

impl Tasks {
    pub fn new(spawned: SpawnQueue) -> Tasks {
        Tasks { tasks: BTreeMap::new(), next: 0, woken: Arc::new(Mutex::new(Vec::new())), spawned }
    }

    /// Stops a task (a lesson abandoned): it is dropped, never polled again.
    pub fn cancel(&mut self, id: TaskId) {
        self.tasks.remove(&id);
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Polls new tasks and woken ones until none is left to poll.
    pub fn run(&mut self) {
        let mut polls = 0;
        loop {
            for (id, task) in self.spawned.take() {
                self.next = self.next.max(id);
                self.tasks.insert(id, task);
                self.woken.lock().expect("not poisoned").push(id);
            }
            let mut woken = std::mem::take(&mut *self.woken.lock().expect("not poisoned"));
            if woken.is_empty() {
                return;
            }
            woken.sort_unstable();
            woken.dedup();
            for id in woken {
                let Some(task) = self.tasks.get_mut(&id) else { continue };
                let waker = Waker::from(Arc::new(TaskWaker { id, woken: self.woken.clone() }));
                if task.as_mut().poll(&mut Context::from_waker(&waker)).is_ready() {
                    self.tasks.remove(&id);
                }
                polls += 1;
            }
            if polls >= MAX_POLLS_PER_RUN {
                // What is still woken runs at the next input.
                return;
            }
        }
    }
}
