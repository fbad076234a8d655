//! The physical floor of one replicated write on this machine, measured in the same run as the
//! benchmark it is held against: the disk's 256-byte write + `fdatasync`, and a WebSocket round
//! trip over loopback. One write through Consenso needs the leader's fsync in parallel with a
//! round trip to a follower and the follower's fsync, then a round trip client → proxy → leader
//! and back: at best `fsync + 3 × round trip`. `bench` reports its own p50 against that.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

/// Samples of each kind; a fraction of a second each on this machine kind.
const FSYNC_SAMPLES: usize = 1_000;
const ROUND_TRIPS: usize = 2_000;

#[derive(Serialize, Clone, Copy, Debug)]
pub struct Floor {
    /// Median of a 256-byte append + `fdatasync` in the directory given.
    pub fsync_p50_ms: f64,
    /// Median WebSocket round trip (a 300-byte text frame each way) over 127.0.0.1.
    pub loopback_rtt_p50_ms: f64,
    /// `fsync + 3 × round trip`: the least one replicated write can take here.
    pub write_ms: f64,
}

pub async fn measure(dir: &Path) -> anyhow::Result<Floor> {
    let dir = dir.to_path_buf();
    let fsync = tokio::task::spawn_blocking(move || fsync_p50(&dir)).await??;
    let rtt = loopback_rtt_p50().await?;
    Ok(Floor { fsync_p50_ms: fsync, loopback_rtt_p50_ms: rtt, write_ms: fsync + 3.0 * rtt })
}

fn fsync_p50(dir: &Path) -> anyhow::Result<f64> {
    let path = dir.join(format!(".consenso-floor-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot measure the disk in {}", dir.display()))?;
    let record = [b'x'; 256];
    let mut samples = Vec::with_capacity(FSYNC_SAMPLES);
    for _ in 0..FSYNC_SAMPLES {
        let t = Instant::now();
        file.write_all(&record)?;
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(median_ms(samples))
}

async fn loopback_rtt_p50() -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        tcp.set_nodelay(true)?;
        let mut ws = tokio_tungstenite::accept_async(tcp).await?;
        while let Some(Ok(message)) = ws.next().await {
            if message.is_text() {
                ws.send(message).await?;
            }
        }
        anyhow::Ok(())
    });
    let (mut ws, _) =
        tokio_tungstenite::connect_async_with_config(format!("ws://{address}/"), None, true).await?;
    let frame = "x".repeat(300);
    let mut samples = Vec::with_capacity(ROUND_TRIPS);
    for _ in 0..ROUND_TRIPS {
        let t = Instant::now();
        ws.send(Message::text(frame.clone())).await?;
        ws.next().await.context("the echo closed")??;
        samples.push(t.elapsed());
    }
    let _ = ws.close(None).await;
    let _ = tokio::time::timeout(Duration::from_secs(1), echo).await;
    Ok(median_ms(samples))
}

fn median_ms(mut samples: Vec<Duration>) -> f64 {
    assert!(!samples.is_empty(), "a median of no samples");
    samples.sort_unstable();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}
