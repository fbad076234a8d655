//! Recordings: everything the page draws, with when it arrived, as JSON lines — so that a
//! session can be replayed, turned into a diagram, or kept for a slide (docs/recording.md).
//!
//! The first line is a [`Header`]; every other line is a [`Line`]: the milliseconds since the
//! recording started and one frame exactly as a subscribed page receives it (the first one a
//! `welcome` with the picture of the cluster, then `events`, `status` and `log` frames).
//! Readers accept every version up to their own; a later version is refused with a clear
//! error rather than misread.

use serde::{Deserialize, Serialize};

use crate::protocol::ProxyFrame;

pub const FORMAT: &str = "consenso-recording";
pub const VERSION: u32 = 1;

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
    while let Some((number, text)) = lines.next() {
        match serde_json::from_str::<Line>(text) {
            Ok(line) => out.push(line),
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

#[cfg(test)]
mod tests {
    use super::*;

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
