//! Recordings (format in `shared::recording`, docs/recording.md): every frame a subscribed page
//! receives, with the milliseconds since the recording began.
//!
//! Two kinds, fed by one task that subscribes like a page:
//! - the *recent* buffer: the last minutes in memory, with a picture every 30 s, so that the
//!   lecturer can save the election that just happened (`GET /recording?minutes=N`, the page's
//!   download button) or draw it (`GET /diagram`);
//! - a *file*: from `--record FILE`, or between the admin commands `record` on and off. Lines
//!   are flushed as they come, so a recording cut short by a crash is readable up to its last
//!   whole line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shared::protocol::{PROTOCOL_VERSION, ProxyFrame, encode};
use shared::recording::{Header, Rolling, encode_line};
use tokio::sync::broadcast::error::RecvError;

use super::Hub;

/// Bytes of recent frames kept at most, whatever the minutes.
const RECENT_MAX_BYTES: usize = 32 << 20;

pub struct Recorder {
    started: Instant,
    proxy: String,
    recent: Mutex<Rolling>,
    recent_minutes: u64,
    file: Mutex<Option<FileRecording>>,
    /// The file's name, apart: the status reads it, also while a recording starts (and holds
    /// `file` while it takes the picture that opens it).
    file_name: Mutex<Option<String>>,
}

struct FileRecording {
    path: PathBuf,
    out: std::io::BufWriter<std::fs::File>,
    /// Recorder time of its first line.
    start: u64,
}

impl Recorder {
    pub fn new(proxy: String, recent_minutes: u64) -> Recorder {
        Recorder {
            started: Instant::now(),
            proxy,
            recent: Mutex::new(Rolling::new(recent_minutes * 60_000, RECENT_MAX_BYTES)),
            recent_minutes,
            file: Mutex::new(None),
            file_name: Mutex::new(None),
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
        self.recent.lock().expect("recent lock").export(self.now(), ms, &self.header())
    }

    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    pub fn recent_minutes(&self) -> u64 {
        self.recent_minutes
    }

    /// The file being written, if any.
    pub fn file(&self) -> Option<String> {
        self.file_name.lock().expect("file name lock").clone()
    }
}

/// What every page is sent first: the whole picture. `with_recent`: with the latest timeline
/// events too, as a page that opens late gets them — only where a recording starts; a
/// keyframe inside the recent buffer would repeat them.
fn welcome(hub: &Hub, with_recent: bool) -> String {
    let mut picture = super::session::picture(hub);
    if !with_recent {
        picture.recent.clear();
    }
    encode(&ProxyFrame::Welcome {
        version: PROTOCOL_VERSION,
        admin: false,
        proxies: hub.proxies.clone(),
        nodes: hub.backends.addresses(),
        picture: Some(Box::new(picture)),
    })
}

/// Follows the frames pages get, into the recent buffer and the file.
pub async fn run(hub: Arc<Hub>) {
    let mut frames = hub.observers.subscribe();
    loop {
        let frame = match frames.recv().await {
            Ok(frame) => frame,
            Err(RecvError::Lagged(missed)) => {
                tracing::warn!("the recorder missed {missed} frames (it cannot keep up with the cluster)");
                continue;
            }
            Err(RecvError::Closed) => break,
        };
        let recorder = &hub.recorder;
        let t = recorder.now();
        if recorder.recent_minutes > 0 {
            let wants = recorder.recent.lock().expect("recent lock").wants_keyframe(t);
            let picture = wants.then(|| welcome(&hub, false));
            let mut recent = recorder.recent.lock().expect("recent lock");
            if let Some(picture) = picture {
                recent.keyframe(t, picture);
            }
            recent.push(t, frame.to_string());
        }
        let mut file = recorder.file.lock().expect("file lock");
        if let Some(f) = file.as_mut() {
            let line = encode_line(t.saturating_sub(f.start), &frame);
            if writeln!(f.out, "{line}").and_then(|()| f.out.flush()).is_err() {
                tracing::error!("cannot write the recording to {}; it stops here", f.path.display());
                *file = None;
                *recorder.file_name.lock().expect("file name lock") = None;
            }
        }
    }
}

/// Starts writing every frame to `path` (replacing a recording in progress).
pub fn start_file(hub: &Hub, path: PathBuf) -> anyhow::Result<String> {
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let recorder = &hub.recorder;
    writeln!(out, "{}", serde_json::to_string(&recorder.header())?)?;
    let mut slot = recorder.file.lock().expect("file lock");
    // Under the lock, so that no frame lands between the picture and what follows it.
    let start = recorder.now();
    writeln!(out, "{}", encode_line(0, &welcome(hub, true)))?;
    out.flush()?;
    let shown = path.display().to_string();
    tracing::info!("recording everything pages see to {shown}");
    *slot = Some(FileRecording { path, out, start });
    *recorder.file_name.lock().expect("file name lock") = Some(shown.clone());
    Ok(shown)
}

/// Stops the file recording; its path, if one was running.
pub fn stop_file(hub: &Hub) -> Option<String> {
    let mut slot = hub.recorder.file.lock().expect("file lock");
    let f = slot.take()?;
    *hub.recorder.file_name.lock().expect("file name lock") = None;
    tracing::info!("recording to {} stopped", f.path.display());
    Some(f.path.display().to_string())
}

/// A file name for a recording started without one.
pub fn default_path() -> PathBuf {
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    PathBuf::from(format!("consenso-{unix_ms}.rec"))
}
