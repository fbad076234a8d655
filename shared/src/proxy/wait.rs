//! What the proxy's tasks wait on: the core's time (`sleep`), a new leader (`settle`) and the
//! answers of servers and the supervisor (`wait_reply` and its siblings). Each is a future
//! polled only by the core's inputs; a dropped one takes its timer and waiter with it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use crate::protocol::{ApiError, TimeReport};
use crate::raft::{Millis, NodeId};
use crate::replica::Reply;

use super::core::{Core, State};

/// Waits until `now` reaches `at`.
pub(crate) fn sleep_until(core: &Core, at: Millis) -> Timer {
    Timer { core: core.clone(), at, key: None }
}

/// Waits `ms`.
pub(crate) fn sleep(core: &Core, ms: Millis) -> Timer {
    let at = core.now() + ms;
    sleep_until(core, at)
}

/// Waits `ms`, or less if a server announces meanwhile that it leads: after a leader's failure
/// a request waits for the election, not for a polling interval. The server that announced
/// it, if one did.
pub(crate) async fn settle(core: &Core, ms: Millis) -> Option<NodeId> {
    let news = LeaderNews { core: core.clone(), seen: core.state().leader_news, key: None };
    let (mut news, mut timer) = (std::pin::pin!(news), std::pin::pin!(sleep(core, ms)));
    std::future::poll_fn(|cx| {
        if news.as_mut().poll(cx).is_ready() {
            return Poll::Ready(core.state().announced_leader);
        }
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Ready once a server announces that it leads (after `seen` announcements).
struct LeaderNews {
    core: Core,
    seen: u64,
    key: Option<u64>,
}

impl Future for LeaderNews {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.core.state();
        if state.leader_news != self.seen {
            return Poll::Ready(());
        }
        let key = state.add_news_waiter(self.key, cx.waker());
        drop(state);
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for LeaderNews {
    fn drop(&mut self) {
        if let (Some(key), Some(mut state)) = (self.key, self.core.try_state()) {
            state.remove_news_waiter(key);
        }
    }
}

pub(crate) struct Timer {
    core: Core,
    at: Millis,
    key: Option<(Millis, u64)>,
}

impl Future for Timer {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.core.state();
        if let Some(key) = self.key {
            state.remove_timer(key);
        }
        if state.now >= self.at {
            return Poll::Ready(());
        }
        let key = state.add_timer(self.at, cx.waker());
        drop(state);
        self.key = Some(key);
        Poll::Pending
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let (Some(key), Some(mut state)) = (self.key, self.core.try_state()) {
            state.remove_timer(key);
        }
    }
}

/// Which answer a wait is for.
#[derive(Clone, Copy)]
pub(crate) enum Awaited {
    Reply(u64),
    Report(u64),
    Supervisor(u64),
}

/// What a wait for an answer ended with.
pub(crate) enum Answered<T> {
    Yes(T),
    /// The link dropped: no answer will come.
    No,
    /// The deadline passed first (the answer may still come: wait again, or forget it).
    Late,
}

/// Waits for an answer until `deadline` (the core's time).
pub(crate) struct WaitAnswer<T> {
    core: Core,
    what: Awaited,
    deadline: Millis,
    timer: Option<(Millis, u64)>,
    _answer: std::marker::PhantomData<fn() -> T>,
}

pub(crate) fn wait_reply(core: &Core, id: u64, deadline: Millis) -> WaitAnswer<Reply> {
    WaitAnswer {
        core: core.clone(),
        what: Awaited::Reply(id),
        deadline,
        timer: None,
        _answer: Default::default(),
    }
}

pub(crate) fn wait_report(core: &Core, id: u64, deadline: Millis) -> WaitAnswer<TimeReport> {
    WaitAnswer {
        core: core.clone(),
        what: Awaited::Report(id),
        deadline,
        timer: None,
        _answer: Default::default(),
    }
}

pub(crate) fn wait_supervisor(
    core: &Core,
    id: u64,
    deadline: Millis,
) -> WaitAnswer<Result<String, ApiError>> {
    WaitAnswer {
        core: core.clone(),
        what: Awaited::Supervisor(id),
        deadline,
        timer: None,
        _answer: Default::default(),
    }
}

trait Take<T> {
    fn take_answer(state: &mut State, what: Awaited, waker: &Waker) -> Option<Result<T, ()>>;
}

impl Take<Reply> for Reply {
    fn take_answer(state: &mut State, what: Awaited, waker: &Waker) -> Option<Result<Reply, ()>> {
        let Awaited::Reply(id) = what else { unreachable!("a reply wait") };
        state.replies.take(id, waker)
    }
}

impl Take<TimeReport> for TimeReport {
    fn take_answer(state: &mut State, what: Awaited, waker: &Waker) -> Option<Result<TimeReport, ()>> {
        let Awaited::Report(id) = what else { unreachable!("a report wait") };
        state.reports.take(id, waker)
    }
}

impl Take<Result<String, ApiError>> for Result<String, ApiError> {
    fn take_answer(
        state: &mut State,
        what: Awaited,
        waker: &Waker,
    ) -> Option<Result<Result<String, ApiError>, ()>> {
        let Awaited::Supervisor(id) = what else { unreachable!("a supervisor wait") };
        state.supervisor_answers.take(id, waker)
    }
}

impl<T: Take<T>> Future for WaitAnswer<T> {
    type Output = Answered<T>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answered<T>> {
        let what = self.what;
        let this = &mut *self;
        let mut state = this.core.state();
        if let Some(key) = this.timer.take() {
            state.remove_timer(key);
        }
        match T::take_answer(&mut state, what, cx.waker()) {
            Some(Ok(value)) => return Poll::Ready(Answered::Yes(value)),
            Some(Err(())) => return Poll::Ready(Answered::No),
            None => {}
        }
        if state.now >= this.deadline {
            // The request stays expected: the caller waits again, or forgets it.
            return Poll::Ready(Answered::Late);
        }
        let key = state.add_timer(this.deadline, cx.waker());
        drop(state);
        this.timer = Some(key);
        Poll::Pending
    }
}

impl<T> Drop for WaitAnswer<T> {
    fn drop(&mut self) {
        if let (Some(key), Some(mut state)) = (self.timer, self.core.try_state()) {
            state.remove_timer(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::proxy::ready::Settings;
    use crate::proxy::tasks::SpawnQueue;

    #[test]
    fn settling_ends_on_a_leader_announcement_or_its_timer_and_leaves_no_waiter_behind() {
        let core = Core::new(State::new(Settings::default(), SpawnQueue::default()));
        let mut cx = Context::from_waker(Waker::noop());
        let mut waiting = Box::pin(settle(&core, 20));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        core.state().leader_announced(2);
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(Some(2)));

        let mut waiting = Box::pin(settle(&core, 20));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        core.state().advance(20);
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(None), "no news: the interval ends it");

        let mut waiting = Box::pin(settle(&core, 20));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        drop(waiting);
        assert!(core.state().news_waiters.is_empty() && core.state().timers.is_empty());
    }
}
