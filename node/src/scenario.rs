//! `consenso scenario`: the built-in lessons, headless. `list` prints them; `run` asks a proxy
//! to run one in automatic mode on the live cluster, prints each caption as it appears, and
//! exits 0 when the lesson's check held, 1 with the reason when not.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use shared::lesson::{CATALOG, LessonAction, LessonStatus};
use shared::protocol::{AdminCommand, ClientFrame, ProxyFrame};

use crate::output::outln;
use crate::ws;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    op: Op,
}

#[derive(clap::Subcommand)]
enum Op {
    /// List the lessons, one per line: `name — title`
    List {
        /// Titles in Spanish
        #[arg(long)]
        es: bool,
    },
    /// Run a lesson against a live cluster and print its captions
    Run {
        name: String,
        #[command(flatten)]
        cluster: crate::addr::ProxyArgs,
        /// Give up after this many seconds
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Captions in Spanish
        #[arg(long)]
        es: bool,
    },
}

/// How often the lesson's progress is read.
const POLL: Duration = Duration::from_millis(200);

pub fn main(args: Args) -> ExitCode {
    match args.op {
        Op::List { es } => {
            for lesson in CATALOG {
                outln!("{} — {}", lesson.name, if es { lesson.title.1 } else { lesson.title.0 });
            }
            ExitCode::SUCCESS
        }
        Op::Run { name, cluster, timeout, es } => {
            let result = crate::runtime().and_then(|rt| rt.block_on(run(&name, &cluster, timeout, es)));
            match result {
                Ok(code) => code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(
    name: &str,
    cluster: &crate::addr::ProxyArgs,
    timeout: u64,
    es: bool,
) -> anyhow::Result<ExitCode> {
    if shared::lesson::find(name).is_none() {
        let names: Vec<&str> = CATALOG.iter().map(|l| l.name).collect();
        bail!("there is no lesson '{name}' (lessons: {})", names.join(", "));
    }
    let proxy = cluster.proxy.split(',').next().unwrap_or_default().trim().to_string();
    let (mut stream, welcome) = ws::open_client(&proxy, cluster.token()).await?;
    if !welcome.admin {
        bail!("lessons need the cluster's token (--token, or the token file of `consenso cluster`)");
    }
    let start = AdminCommand::Lesson { action: LessonAction::Start { name: name.to_string(), auto: true } };
    ws::send(&mut stream, &ClientFrame::Admin { id: 1, command: start }).await?;
    match answer_to(&mut stream, 1).await? {
        ProxyFrame::AdminDone { .. } => {}
        ProxyFrame::Error { error, .. } => bail!("{error}"),
        other => bail!("unexpected answer: {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut printed = 0;
    let mut id = 2;
    while Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        ws::send(&mut stream, &ClientFrame::Status { id }).await?;
        let lesson = match answer_to(&mut stream, id).await? {
            ProxyFrame::Status { cluster, .. } => cluster.lesson,
            other => bail!("unexpected answer: {other:?}"),
        };
        id += 1;
        let Some(lesson) = lesson.filter(|l| l.name == name) else {
            bail!("the lesson was replaced by another (someone started one from a page?)");
        };
        printed = print_captions(&lesson, printed, es);
        if let Some(outcome) = &lesson.outcome {
            let text = if es { &outcome.message.es } else { &outcome.message.en };
            return Ok(if outcome.passed {
                outln!("PASSED: {text}");
                ExitCode::SUCCESS
            } else {
                outln!("FAILED: {text}");
                ExitCode::FAILURE
            });
        }
    }
    let stop = AdminCommand::Lesson { action: LessonAction::Stop };
    let _ = ws::send(&mut stream, &ClientFrame::Admin { id, command: stop }).await;
    outln!("FAILED: the lesson did not finish within {timeout} s");
    Ok(ExitCode::FAILURE)
}

fn print_captions(lesson: &LessonStatus, printed: usize, es: bool) -> usize {
    for (i, caption) in lesson.captions.iter().enumerate().skip(printed) {
        outln!("{}. {}", i + 1, if es { &caption.es } else { &caption.en });
    }
    lesson.captions.len().max(printed)
}

async fn next(stream: &mut ws::Stream) -> anyhow::Result<ProxyFrame> {
    match tokio::time::timeout(Duration::from_secs(30), ws::recv::<ProxyFrame>(stream)).await {
        Ok(Ok(Some(Ok(frame)))) => Ok(frame),
        Ok(Ok(Some(Err(e)))) => bail!("the proxy sent something unreadable: {e}"),
        Ok(Ok(None)) => bail!("the proxy closed the connection"),
        Ok(Err(e)) => Err(e),
        Err(_) => bail!("the proxy did not answer within 30 s"),
    }
    .context("talking to the proxy")
}

/// The answer to request `id`, skipping anything else.
async fn answer_to(stream: &mut ws::Stream, id: u64) -> anyhow::Result<ProxyFrame> {
    loop {
        let frame = next(stream).await?;
        let answered = match &frame {
            ProxyFrame::AdminDone { id: i, .. } | ProxyFrame::Done { id: i, .. } => *i == id,
            ProxyFrame::Error { id: i, .. } | ProxyFrame::Status { id: i, .. } => *i == Some(id),
            _ => false,
        };
        if answered {
            return Ok(frame);
        }
    }
}
