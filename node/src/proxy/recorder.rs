//! Recordings (format in `shared::recording`, docs/recording.md): every frame a subscribed page
//! receives, with the milliseconds since the recording began.
//!
//! Two kinds, each a task that watches like a page (a picture, then every frame after it):
//! - the *recent* buffer: the last minutes in memory, with a picture every 30 s, so that the
//!   lecturer can save the election that just happened (`GET /recording?minutes=N`, the page's
//!   download button) or draw it (`GET /diagram`);
//! - a *file*: from `--record FILE`, or between the admin commands `record` on and off. Lines
//!   are flushed as they come, so a recording cut short by a crash is readable up to its last
//!   whole line.
//!
//! Recording writes files on the proxy's machine: it is the driver's job, not the core's.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shared::protocol::{AdminCommand, ApiError, ErrorKind, PROTOCOL_VERSION, Picture, ProxyFrame, encode};
use shared::recording::{Header, OneClock, Rolling, encode_line};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;

use super::Shared;
use super::driver::{CoreHandle, Input};

/// Bytes of recent frames kept at most, whatever the minutes.
const RECENT_MAX_BYTES: usize = 32 << 20;

pub struct Recorder {
    started: Instant,
    proxy: String,
    recent: Mutex<Rolling>,
    recent_minutes: u64,
    /// The file being written, and how to stop its task.
    file: Mutex<Option<(String, oneshot::Sender<()>)>>,
}

impl Recorder {
    pub fn new(proxy: String, recent_minutes: u64) -> Recorder {
        Recorder {
            started: Instant::now(),
            proxy,
            recent: Mutex::new(Rolling::new(recent_minutes * 60_000, RECENT_MAX_BYTES)),
            recent_minutes,
            file: Mutex::new(None),
        }
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn header(&self) -> Header {
        let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        Header::new(unix_ms, self.proxy.clone())
    }

    /// The last `minutes` (at most what is kept) as a recording.
    pub fn recent(&self, minutes: f64) -> String {
        let ms = (minutes.max(0.0) * 60_000.0) as u64;
        // Only the pointers are copied under the lock: pages and the recorder go on meanwhile.
        let cut = self.recent.lock().expect("recent lock").cut(self.now(), ms);
        cut.export(&self.header())
    }

    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    pub fn recent_minutes(&self) -> u64 {
        self.recent_minutes
    }
}

/// What every page is sent first: the whole picture. `with_recent`: with the latest timeline
/// events too, as a page that opens late gets them — only where a recording starts; a
/// keyframe inside the recent buffer would repeat them.
fn welcome(mut picture: Picture, proxy: &str, with_recent: bool) -> String {
    if !with_recent {
        picture.recent.clear();
    }
    let nodes = picture
        .cluster
        .nodes
        .iter()
        .map(|n| shared::protocol::NodeAddress { id: n.id, address: n.address.clone() })
        .collect();
    encode(&ProxyFrame::Welcome {
        version: PROTOCOL_VERSION,
        admin: false,
        proxies: vec![proxy.to_string()],
        nodes,
        picture: Some(Box::new(picture)),
    })
}

/// Keeps the recent buffer for the life of the proxy.
pub async fn keep_recent(core: CoreHandle, recorder: Arc<Recorder>) {
    if recorder.recent_minutes == 0 {
        return;
    }
    let Some((_, mut frames)) = core.watch().await else { return };
    loop {
        let frame = match frames.recv().await {
            Ok(frame) => frame,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!("the recorder missed {missed} frames (it cannot keep up with the cluster)");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let t = recorder.now();
        let wants = recorder.recent.lock().expect("recent lock").wants_keyframe(t);
        if wants {
            if let Some(picture) = core.picture().await {
                recorder
                    .recent
                    .lock()
                    .expect("recent lock")
                    .keyframe(t, welcome(picture, &recorder.proxy, false));
            }
        }
        recorder.recent.lock().expect("recent lock").push(t, frame);
    }
}

/// The admin command `record`, carried out here: the answer for the client.
pub async fn command(shared: &Shared, id: u64, command: AdminCommand) -> ProxyFrame {
    let result = match command {
        AdminCommand::Record { on: true, file } => {
            let path = file.map_or_else(default_path, PathBuf::from);
            start_file(shared, path)
                .await
                .map(|shown| format!("recording to {shown} (on the proxy's machine)"))
                .map_err(|e| ApiError::new(ErrorKind::BadRequest, format!("{e:#}")))
        }
        AdminCommand::Record { on: false, .. } => Ok(match stop_file(shared) {
            Some(path) => format!("recording stopped: {path}"),
            None => "no recording was running".to_string(),
        }),
        other => Err(ApiError::new(
            ErrorKind::BadRequest,
            format!("not a recording command: {}", other.describe()),
        )),
    };
    match result {
        Ok(message) => ProxyFrame::AdminDone { id, message },
        Err(error) => ProxyFrame::Error { id: Some(id), error },
    }
}

/// Starts writing every frame to `path` (replacing a recording in progress).
pub async fn start_file(shared: &Shared, path: PathBuf) -> anyhow::Result<String> {
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let recorder = &shared.recorder;
    writeln!(out, "{}", serde_json::to_string(&recorder.header())?)?;
    let (picture, frames) = shared.core.watch().await.context("the proxy is stopping")?;
    writeln!(out, "{}", encode_line(0, &welcome(picture, &recorder.proxy, true)))?;
    out.flush()?;
    let shown = path.display().to_string();
    tracing::info!("recording everything pages see to {shown}");
    let (stop, stopped) = oneshot::channel();
    stop_file(shared);
    *recorder.file.lock().expect("file lock") = Some((shown.clone(), stop));
    shared.core.send(Input::Recording { file: Some(shown.clone()) });
    tokio::spawn(write_file(recorder.clone(), shared.core.clone(), path, out, frames, stopped));
    Ok(shown)
}

/// Follows the frames on the proxy's thread and hands them to a thread of their own that
/// writes them: the disk never holds up the proxy.
async fn write_file(
    recorder: Arc<Recorder>,
    core: CoreHandle,
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    mut frames: broadcast::Receiver<Arc<str>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let start = recorder.now();
    let (lines, to_disk) = std::sync::mpsc::channel();
    let writer = {
        let (recorder, core, path) = (recorder.clone(), core.clone(), path.clone());
        std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || write_lines(&recorder, &core, &path, out, &to_disk))
    };
    if let Err(e) = writer {
        tracing::error!("cannot start writing the recording to {}: {e}", path.display());
        return;
    }
    loop {
        let frame = tokio::select! {
            _ = &mut stopped => return,
            frame = frames.recv() => match frame {
                Ok(frame) => frame,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!("the recording to {} missed {missed} frames", path.display());
                    continue;
                }
                Err(RecvError::Closed) => return,
            },
        };
        if lines.send((recorder.now().saturating_sub(start), frame)).is_err() {
            return; // The writer met an error and said so.
        }
    }
}

/// The recording's thread: each frame with its events on the recording's clock, flushed
/// whenever it has caught up, so that a recording cut short by a crash reads up to its last
/// whole line.
fn write_lines(
    recorder: &Recorder,
    core: &CoreHandle,
    path: &std::path::Path,
    mut out: std::io::BufWriter<std::fs::File>,
    lines: &std::sync::mpsc::Receiver<(u64, Arc<str>)>,
) {
    let mut one_clock = OneClock::new();
    while let Ok(first) = lines.recv() {
        let written = std::iter::once(first).chain(lines.try_iter()).try_for_each(|(t, frame)| {
            let placed = one_clock.frame_json(t, &frame);
            writeln!(out, "{}", encode_line(t, placed.as_deref().unwrap_or(&frame)))
        });
        if written.and_then(|()| out.flush()).is_err() {
            tracing::error!("cannot write the recording to {}; it stops here", path.display());
            *recorder.file.lock().expect("file lock") = None;
            core.send(Input::Recording { file: None });
            return;
        }
    }
}

/// Stops the file recording; its path, if one was running.
pub fn stop_file(shared: &Shared) -> Option<String> {
    let (shown, stop) = shared.recorder.file.lock().expect("file lock").take()?;
    let _ = stop.send(());
    shared.core.send(Input::Recording { file: None });
    tracing::info!("recording to {shown} stopped");
    Some(shown)
}

/// A file name for a recording started without one.
pub fn default_path() -> PathBuf {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    PathBuf::from(format!("consenso-{unix_ms}.rec"))
}
