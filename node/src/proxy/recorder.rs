//! `proxy --record FILE`: every frame a subscribed page receives, written as it is published,
//! one JSON line each with the milliseconds since the start (the format is in
//! `shared::recording` and docs/recording.md). The first frame is the picture of the cluster
//! a page would get on arrival. Lines are flushed as they come, so a recording cut short by a
//! crash is readable up to its last whole line.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shared::protocol::{PROTOCOL_VERSION, ProxyFrame, encode};
use shared::recording::{Header, encode_line};
use tokio::sync::broadcast::error::RecvError;

use super::Hub;

pub fn start(hub: Arc<Hub>, path: PathBuf, proxy: String) -> anyhow::Result<()> {
    let file = std::fs::File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let started = Instant::now();
    let unix_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    writeln!(out, "{}", serde_json::to_string(&Header::new(unix_ms, proxy))?)?;
    // Subscribe before the picture, as a page does, so that nothing falls in between.
    let mut frames = hub.observers.subscribe();
    let welcome = ProxyFrame::Welcome {
        version: PROTOCOL_VERSION,
        admin: false,
        proxies: hub.proxies.clone(),
        nodes: hub.backends.addresses(),
        picture: Some(Box::new(super::session::picture(&hub))),
    };
    writeln!(out, "{}", encode_line(0, &encode(&welcome)))?;
    out.flush()?;
    tracing::info!("recording everything pages see to {}", path.display());
    tokio::spawn(async move {
        loop {
            let frame = match frames.recv().await {
                Ok(frame) => frame,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        "the recording missed {missed} frames (the disk is slower than the cluster)"
                    );
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let t = started.elapsed().as_millis() as u64;
            if writeln!(out, "{}", encode_line(t, &frame)).and_then(|()| out.flush()).is_err() {
                tracing::error!("cannot write the recording to {}; it stops here", path.display());
                break;
            }
        }
    });
    Ok(())
}
