//! Standard output for the commands' reports, safe to pipe into a reader that stops early, and
//! safe to show whatever the cluster stores.
//!
//! Rust ignores SIGPIPE, so a write to a closed pipe is an error, and `println!` panics on it:
//! `consenso check h.jsonl | head -1` crashed with a backtrace. Here the first failed write
//! closes the output for good and the command goes on — `check` still exits with its verdict,
//! a cluster keeps running after the terminal that started it is gone.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static CLOSED: AtomicBool = AtomicBool::new(false);

/// Writes one line to stdout, unless a previous write failed (a closed pipe, a full disk).
/// Control characters in it are written out (`shared::visible`): keys, values and captions
/// come from users, and must reach a terminal as text, never as commands.
pub fn line(args: std::fmt::Arguments<'_>) {
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let text = args.to_string();
    let text = shared::visible::visible(&text);
    let mut out = std::io::stdout().lock();
    if out.write_all(text.as_bytes()).and_then(|()| out.write_all(b"\n")).is_err() {
        CLOSED.store(true, Ordering::Relaxed);
    }
}

/// An error for stderr, its control characters written out as in `line`.
macro_rules! errln {
    ($($arg:tt)*) => {
        eprintln!("{}", shared::visible::visible(&format!($($arg)*)))
    };
}
pub(crate) use errln;

/// `println!` that stops quietly when nobody reads any more (see the module's doc).
macro_rules! outln {
    () => {
        $crate::output::line(format_args!(""))
    };
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;
