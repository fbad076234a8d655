//! Recordings: everything the page draws, with when it arrived, as JSON lines — so that a
//! session can be replayed, turned into a diagram, or kept for a slide (docs/recording.md).
//!
//! The first line is a [`Header`]; every other line is a [`Line`]: the milliseconds since the
//! recording started and one frame exactly as a subscribed page receives it (the first one a
//! `welcome` with the picture of the cluster, then `events`, `status` and `log` frames).
//! Readers accept every version up to their own; a later version is refused with a clear
//! error rather than misread.
//!
//! Since version 2 every event's `at` is on the recording's clock (`one_clock.rs`); version 1
//! kept each server's own clock, and is put on one clock as it is read.

mod one_clock;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use one_clock::OneClock;

use crate::protocol::ProxyFrame;

pub const FORMAT: &str = "consenso-recording";
/// 2: events stamped on the recording's clock.
pub const VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// Wall-clock time of the start, in ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// The proxy that recorded it.
    pub proxy: String,
}

impl Header {
    pub fn new(started_unix_ms: u64, proxy: String) -> Header {
        Header { format: FORMAT.to_string(), version: VERSION, started_unix_ms, proxy }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Line {
    /// Milliseconds since the recording started, when the frame was published.
    pub t: u64,
    pub frame: ProxyFrame,
}

/// Reads a whole recording. A torn last line (a recording cut off mid-write) is ignored; any
/// other unreadable line is an error naming it.
pub fn parse(text: &str) -> Result<(Header, Vec<Line>), String> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).peekable();
    let (_, first) = lines.next().ok_or("the recording is empty")?;
    let header: Header =
        serde_json::from_str(first).map_err(|e| format!("line 1 is not a recording header: {e}"))?;
    if header.format != FORMAT {
        return Err(format!("not a Consenso recording (format '{}')", header.format));
    }
    if header.version > VERSION {
        return Err(format!(
            "recording version {} is newer than this program reads ({VERSION}): update consenso",
            header.version
        ));
    }
    let mut out = Vec::new();
    let mut one_clock = (header.version < 2).then(OneClock::new);
    while let Some((number, text)) = lines.next() {
        match serde_json::from_str::<Line>(text) {
            Ok(mut line) => {
                if let Some(clock) = one_clock.as_mut() {
                    clock.frame(line.t, &mut line.frame);
                }
                out.push(line)
            }
            Err(_) if lines.peek().is_none() => break,
            Err(e) => return Err(format!("line {}: {e}", number + 1)),
        }
    }
    Ok((header, out))
}

/// One line of a recording, as the recorder writes it: the frame is already encoded JSON.
pub fn encode_line(t: u64, frame_json: &str) -> String {
    format!("{{\"t\":{t},\"frame\":{frame_json}}}")
}

/// The last minutes of a session, kept in memory so that they can be saved after the fact
/// ("download the last 5 minutes"). A recording must start with a picture, so the frames are
/// kept in segments that each start with one (a *keyframe*, every `KEYFRAME_EVERY_MS`): the
/// recording of the last N minutes starts at the newest keyframe at or before that moment.
/// Old segments go when they are older than `keep_ms` or the bytes exceed `max_bytes`.
#[derive(Debug)]
pub struct Rolling {
    segments: std::collections::VecDeque<Segment>,
    keep_ms: u64,
    max_bytes: usize,
    bytes: usize,
}

/// A picture comes this often.
pub const KEYFRAME_EVERY_MS: u64 = 30_000;

#[derive(Debug)]
struct Segment {
    start: u64,
    /// Frames as encoded JSON, with their time (shared with the pages they were sent to).
    lines: Vec<(u64, Arc<str>)>,
    bytes: usize,
}

impl Rolling {
    pub fn new(keep_ms: u64, max_bytes: usize) -> Rolling {
        Rolling { segments: Default::default(), keep_ms, max_bytes, bytes: 0 }
    }

    /// Whether the next frame at `t` should be preceded by a keyframe.
    pub fn wants_keyframe(&self, t: u64) -> bool {
        self.segments.back().is_none_or(|s| t.saturating_sub(s.start) >= KEYFRAME_EVERY_MS)
    }

    /// Starts a segment with a `welcome` frame that pictures the cluster at `t`.
    pub fn keyframe(&mut self, t: u64, welcome_json: impl Into<Arc<str>>) {
        self.segments.push_back(Segment { start: t, lines: Vec::new(), bytes: 0 });
        self.push(t, welcome_json);
        // Keep one segment that starts before the horizon, so that all of it is covered.
        while self.segments.len() > 1
            && (self.bytes > self.max_bytes || self.segments[1].start.saturating_add(self.keep_ms) <= t)
        {
            let old = self.segments.pop_front().expect("more than one");
            self.bytes -= old.bytes;
        }
    }

    /// A frame published at `t` (ignored before the first keyframe).
    pub fn push(&mut self, t: u64, frame_json: impl Into<Arc<str>>) {
        let Some(segment) = self.segments.back_mut() else { return };
        let frame_json = frame_json.into();
        let size = frame_json.len() + 16;
        segment.lines.push((t, frame_json));
        segment.bytes += size;
        self.bytes += size;
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The frames of (at least) the last `ms` before `now`, from the picture that opens them:
    /// cheap (shared pointers), so that a caller holding a lock can write them out after.
    pub fn cut(&self, now: u64, ms: u64) -> Cut {
        let since = now.saturating_sub(ms);
        let first = self.segments.iter().rposition(|s| s.start <= since).unwrap_or(0);
        let start = self.segments.get(first).map_or(0, |s| s.start);
        let lines = self.segments.iter().skip(first).flat_map(|s| s.lines.iter().cloned()).collect();
        Cut { start, lines }
    }

    /// A recording of (at least) the last `ms` before `now`, times counted from its first frame.
    pub fn export(&self, now: u64, ms: u64, header: &Header) -> String {
        self.cut(now, ms).export(header)
    }
}

/// Frames taken from a [`Rolling`], to be written out as a recording.
pub struct Cut {
    start: u64,
    lines: Vec<(u64, Arc<str>)>,
}

impl Cut {
    /// The recording: times counted from the first frame, events on its clock.
    pub fn export(&self, header: &Header) -> String {
        let mut out = serde_json::to_string(header).expect("headers serialize");
        out.push('\n');
        let mut one_clock = OneClock::new();
        for (t, frame) in &self.lines {
            let t = t - self.start;
            match one_clock.frame_json(t, frame) {
                Some(placed) => out.push_str(&encode_line(t, &placed)),
                None => out.push_str(&encode_line(t, frame)),
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome() -> String {
        serde_json::to_string(&ProxyFrame::Welcome {
            version: 1,
            admin: false,
            proxies: vec![],
            nodes: vec![],
            picture: None,
        })
        .unwrap()
    }

    #[test]
    fn the_last_minutes_start_at_a_picture_and_old_ones_are_forgotten() {
        let mut rolling = Rolling::new(120_000, usize::MAX);
        for t in (0..300_000).step_by(1_000) {
            if rolling.wants_keyframe(t) {
                rolling.keyframe(t, welcome());
            } else {
                rolling.push(t, r#"{"type":"events","events":[]}"#);
            }
        }
        let text = rolling.export(299_000, 60_000, &Header::new(0, "p".into()));
        let (_, lines) = parse(&text).unwrap();
        assert!(matches!(lines[0].frame, ProxyFrame::Welcome { .. }), "it opens with a picture");
        assert_eq!(lines[0].t, 0);
        let span = lines.last().unwrap().t;
        assert!((60_000..60_000 + KEYFRAME_EVERY_MS).contains(&span), "covers the minute asked: {span}");
        let all = rolling.export(299_000, u64::MAX, &Header::new(0, "p".into()));
        let (_, lines) = parse(&all).unwrap();
        let kept = lines.last().unwrap().t;
        assert!(kept < 120_000 + KEYFRAME_EVERY_MS, "older than the horizon is gone: {kept}");
    }

    #[test]
    fn a_byte_budget_drops_the_oldest_segments() {
        let mut rolling = Rolling::new(u64::MAX, 10_000);
        for t in (0..600_000).step_by(1_000) {
            if rolling.wants_keyframe(t) {
                rolling.keyframe(t, welcome());
            } else {
                rolling.push(t, "x".repeat(100));
            }
        }
        assert!(rolling.bytes() < 10_000 + 30 * 200, "{}", rolling.bytes());
    }

    fn header(version: u32) -> String {
        serde_json::to_string(&Header { version, ..Header::new(1, "p".into()) }).unwrap()
    }

    #[test]
    fn a_recording_reads_back_and_a_torn_last_line_is_left_out() {
        let frame = encode_line(5, r#"{"type":"events","events":[]}"#);
        let text = format!("{}\n{frame}\n{}", header(VERSION), &frame[..frame.len() / 2]);
        let (h, lines) = parse(&text).unwrap();
        assert_eq!(h.version, VERSION);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].t, 5);
    }

    #[test]
    fn a_newer_version_or_another_format_is_refused_with_the_reason() {
        assert!(parse(&header(VERSION + 1)).unwrap_err().contains("newer"));
        assert!(
            parse(r#"{"format":"x","version":1,"started_unix_ms":0,"proxy":""}"#)
                .unwrap_err()
                .contains("not a")
        );
        let damaged =
            format!("{}\nnot json\n{}", header(1), encode_line(1, r#"{"type":"events","events":[]}"#));
        assert!(parse(&damaged).unwrap_err().contains("line 2"));
    }
}
