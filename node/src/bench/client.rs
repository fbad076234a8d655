//! One closed-loop benchmark client: it opens a session (registered through the log), then
//! writes and reads; a write whose proxy fails is sent again, same session and number, through
//! the next proxy — applied once whatever happened to the first.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use hdrhistogram::Histogram;
use shared::check::{Input, Operation, Output};
use shared::event::Consistency;
use shared::protocol::{ApiError, ClientFrame, ErrorKind, OpResult, ProxyFrame, Session};
use shared::rng::Rng;
use shared::session::ClientSession;

use super::{OP_TIMEOUT, Totals};
use crate::ws;

pub struct ClientConfig {
    pub index: u32,
    pub value_size: usize,
    pub reads: f64,
    /// How reads are asked for.
    pub consistency: Consistency,
    pub keys: u64,
    pub key_prefix: Arc<str>,
    pub history: Option<tokio::sync::mpsc::UnboundedSender<Operation>>,
    pub start: Instant,
    pub end: Instant,
    /// Writes need the cluster's token.
    pub token: Option<String>,
}

/// One benchmark operation; each attempt gets a fresh frame id but keeps the session.
enum BenchOp {
    Get { key: String, consistency: Consistency },
    Put { key: String, value: String, session: Session },
}

impl BenchOp {
    fn frame(&self, id: u64) -> ClientFrame {
        match self {
            BenchOp::Get { key, consistency } => {
                ClientFrame::Get { id, key: key.clone(), consistency: *consistency }
            }
            BenchOp::Put { key, value, session } => {
                ClientFrame::Put { id, key: key.clone(), value: value.clone(), session: Some(*session) }
            }
        }
    }
}

/// The connection to one of the proxies, moving to the next when one fails.
struct Link {
    proxies: Vec<String>,
    proxy: usize,
    stream: Option<ws::Stream>,
    token: Option<String>,
    next_id: u64,
}

impl Link {
    /// Sends `frame` (numbered afresh each try) until a proxy answers it or `deadline` passes.
    async fn ask(&mut self, frame: impl Fn(u64) -> ClientFrame, deadline: Instant) -> Option<ProxyFrame> {
        while Instant::now() < deadline {
            if self.stream.is_none() && !self.connect().await {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            self.next_id += 1;
            let id = self.next_id;
            let stream = self.stream.as_mut().expect("connected above");
            match tokio::time::timeout_at(deadline.into(), exchange(stream, frame(id), id)).await {
                Ok(Ok(answer)) => return Some(answer),
                // The proxy died or hung: try the next one with the same request.
                Ok(Err(_)) | Err(_) => {
                    self.stream = None;
                    self.proxy = (self.proxy + 1) % self.proxies.len();
                }
            }
        }
        None
    }

    async fn connect(&mut self) -> bool {
        for i in 0..self.proxies.len() {
            let which = (self.proxy + i) % self.proxies.len();
            if let Ok((stream, _)) = ws::open_client(&self.proxies[which], self.token.clone()).await {
                self.stream = Some(stream);
                self.proxy = which;
                return true;
            }
        }
        false
    }
}

async fn exchange(stream: &mut ws::Stream, frame: ClientFrame, id: u64) -> anyhow::Result<ProxyFrame> {
    ws::send(stream, &frame).await?;
    loop {
        match ws::recv::<ProxyFrame>(stream).await? {
            Some(Ok(
                answer @ (ProxyFrame::Done { id: got, .. }
                | ProxyFrame::Registered { id: got, .. }
                | ProxyFrame::Error { id: Some(got), .. }),
            )) if got == id => return Ok(answer),
            Some(_) => continue,
            None => bail!("proxy closed"),
        }
    }
}

/// What one client measured.
struct Tally {
    writes: Histogram<u64>,
    reads: Histogram<u64>,
    errors: u64,
    unknown: u64,
    error_kinds: std::collections::BTreeMap<String, u64>,
    acks: Vec<u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Tally> {
        Ok(Tally {
            writes: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            reads: Histogram::new_with_bounds(1, 60_000_000, 3)?,
            errors: 0,
            unknown: 0,
            error_kinds: Default::default(),
            acks: Vec::new(),
        })
    }

    /// Counts an outcome; what the history records for it (when it completed, and what it
    /// returned): an answer, "unknown" (the write may or may not have happened: no answer, or
    /// an error that does not rule it out), or a refusal.
    fn count(
        &mut self,
        is_read: bool,
        outcome: Option<Result<OpResult, ApiError>>,
        latency_us: u64,
        done_us: u64,
    ) -> anyhow::Result<(Option<u64>, Output)> {
        let mut kind =
            |error: &ApiError| *self.error_kinds.entry(error.kind.as_str().to_string()).or_insert(0) += 1;
        Ok(match outcome {
            Some(Ok(result)) => {
                if is_read {
                    self.reads.record(latency_us.max(1))?;
                } else {
                    self.writes.record(latency_us.max(1))?;
                    self.acks.push(done_us);
                }
                (Some(done_us), output_of(result))
            }
            Some(Err(error)) if is_read || error.kind.had_no_effect() => {
                kind(&error);
                self.errors += 1;
                (Some(done_us), Output::Failed { error: error.kind.as_str().to_string() })
            }
            Some(Err(error)) => {
                kind(&error);
                self.unknown += 1;
                (None, Output::Unknown)
            }
            None => {
                self.unknown += 1;
                (None, Output::Unknown)
            }
        })
    }

    fn add_to(self, totals: &Mutex<Totals>) -> anyhow::Result<()> {
        let mut t = totals.lock().expect("totals lock");
        merge(&mut t.writes, self.writes)?;
        merge(&mut t.reads, self.reads)?;
        t.errors += self.errors;
        for (k, n) in self.error_kinds {
            *t.error_kinds.entry(k).or_insert(0) += n;
        }
        t.unknown += self.unknown;
        t.acks.extend(self.acks);
        Ok(())
    }
}

fn output_of(result: OpResult) -> Output {
    match result {
        OpResult::Get { value } => Output::Value { value },
        OpResult::Put { previous } => Output::Put { previous },
        OpResult::Delete { existed } => Output::Delete { existed },
        OpResult::Cas { swapped, current } => Output::Cas { swapped, current: Some(current) },
    }
}

fn merge(into: &mut Option<Histogram<u64>>, h: Histogram<u64>) -> anyhow::Result<()> {
    match into {
        Some(total) => total.add(&h)?,
        None => *into = Some(h),
    }
    Ok(())
}

/// Opens a session through any proxy; `None` if none could be opened in time.
async fn register(link: &mut Link, deadline: Instant) -> Option<ClientSession> {
    match link.ask(|id| ClientFrame::Register { id }, deadline).await? {
        ProxyFrame::Registered { client, .. } => Some(ClientSession::new(client)),
        _ => None,
    }
}

/// Runs one client until `cfg.end`, adding what it measured to `totals`.
pub async fn run(cfg: ClientConfig, proxies: Vec<String>, totals: Arc<Mutex<Totals>>) -> anyhow::Result<()> {
    let mut rng = Rng::new(crate::secret::random_u64());
    let mut tally = Tally::new()?;
    // In the history, clients are numbered from 1: small numbers every JSON tool reads exactly.
    let history_client = u64::from(cfg.index) + 1;
    let proxy = cfg.index as usize % proxies.len();
    let mut link = Link { proxies, proxy, stream: None, token: cfg.token.clone(), next_id: 0 };
    let mut session: Option<ClientSession> = None;
    let since = |t: Instant| t.duration_since(cfg.start).as_micros() as u64;
    while Instant::now() < cfg.end {
        let is_read = cfg.reads > 0.0 && (rng.below(1_000_000) as f64) < cfg.reads * 1_000_000.0;
        if !is_read && session.is_none() {
            session = register(&mut link, Instant::now() + OP_TIMEOUT).await;
            continue;
        }
        let (op, input) = next_op(&cfg, &mut rng, history_client, is_read, session.as_mut());
        let invoked = Instant::now();
        let outcome = match link.ask(|id| op.frame(id), invoked + OP_TIMEOUT).await {
            Some(ProxyFrame::Done { result, .. }) => Some(Ok(result)),
            Some(ProxyFrame::Error { error, .. }) => Some(Err(error)),
            _ => None,
        };
        if let (BenchOp::Put { session: s, .. }, Some(open)) = (&op, session.as_mut()) {
            match &outcome {
                Some(Err(error)) if error.kind == ErrorKind::SessionExpired => session = None,
                Some(Ok(_)) => open.settled(s.seq),
                Some(Err(error)) if error.kind.outcome_is_known() => open.settled(s.seq),
                _ => {}
            }
        }
        let done = Instant::now();
        let latency = done.duration_since(invoked).as_micros() as u64;
        let (complete, output) = tally.count(is_read, outcome, latency, since(done))?;
        if let Some(history) = &cfg.history {
            let consistency = is_read.then_some(cfg.consistency);
            let invoke = since(invoked);
            let _ = history.send(Operation {
                client: history_client,
                input,
                consistency,
                invoke,
                complete,
                output,
            });
        }
    }
    tally.add_to(&totals)
}

/// The next operation on a random key: a read, or a write numbered in `session`.
fn next_op(
    cfg: &ClientConfig,
    rng: &mut Rng,
    history_client: u64,
    is_read: bool,
    session: Option<&mut ClientSession>,
) -> (BenchOp, Input) {
    let key = format!("{}{}", cfg.key_prefix, rng.below(cfg.keys));
    let Some(session) = session.filter(|_| !is_read) else {
        return (BenchOp::Get { key: key.clone(), consistency: cfg.consistency }, Input::Get { key });
    };
    let numbered = session.number();
    let seq = numbered.seq;
    // Unique in the run (a read then says which write it saw): client and number, padded to
    // the size asked for but never cut below that.
    let mut value = format!("{history_client}.{}.{seq}.", session.client());
    while value.len() < cfg.value_size {
        value.push((b'a' + rng.below(26) as u8) as char);
    }
    let session = Session { client: session.client(), seq, answered_below: Some(numbered.answered_below) };
    (BenchOp::Put { key: key.clone(), value: value.clone(), session }, Input::Put { key, value })
}
