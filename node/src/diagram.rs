//! `consenso diagram FILE`: a recording (`cluster --record FILE`) drawn as a space-time diagram
//! in SVG, for slides — servers as lifelines, messages as arrows (routine heartbeats left out
//! unless `--heartbeats`), lost ones crossed out where they were lost, role changes, commits,
//! crashes, restarts and admin actions marked (see `shared::diagram`) — or, with `--text`, its events in words
//! (English or Spanish) for lecture notes.

use std::path::PathBuf;
use std::process::ExitCode;

use shared::diagram::{Window, render};
use shared::event_text::Lang;

use crate::output::outln;

#[derive(clap::Args)]
pub struct Args {
    /// A recording made with `cluster --record` or `proxy --record`
    file: PathBuf,
    /// Start of the window, in seconds since the recording began
    #[arg(long, default_value_t = 0.0)]
    from: f64,
    /// End of the window, in seconds since the recording began (default: the end)
    #[arg(long)]
    to: Option<f64>,
    /// Where to write the SVG
    #[arg(short, long, required_unless_present = "text")]
    output: Option<PathBuf>,
    /// Print the window's events in words instead (for lecture notes)
    #[arg(long)]
    text: bool,
    /// Draw every heartbeat and acknowledgement too (by default those that tell nothing new
    /// are left out, so that a slide shows what matters)
    #[arg(long)]
    heartbeats: bool,
    /// Language of --text: en or es
    #[arg(long, default_value = "en", value_parser = ["en", "es"])]
    lang: String,
}

pub fn main(args: Args) -> ExitCode {
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let (header, lines) = match shared::recording::parse(&text) {
        Ok(recording) => recording,
        Err(e) => {
            eprintln!("error: {}: {e}", args.file.display());
            return ExitCode::FAILURE;
        }
    };
    let window =
        Window { from_s: args.from, to_s: args.to.unwrap_or(f64::INFINITY), routine: args.heartbeats };
    if window.to_s <= window.from_s {
        eprintln!("error: --to must come after --from");
        return ExitCode::FAILURE;
    }
    if args.text {
        let lang = if args.lang == "es" { Lang::Es } else { Lang::En };
        let words = shared::diagram::text(&lines, window, lang);
        match &args.output {
            Some(path) => {
                if let Err(e) = std::fs::write(path, words) {
                    eprintln!("error: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            None => outln!("{}", words.trim_end()),
        }
        return ExitCode::SUCCESS;
    }
    let title = format!(
        "Consenso, recorded by {} — {:.1} s to {}",
        header.proxy,
        window.from_s,
        args.to.map_or("the end".to_string(), |t| format!("{t:.1} s"))
    );
    let svg = render(&lines, window, &title);
    let output = args.output.expect("required without --text");
    if let Err(e) = std::fs::write(&output, svg) {
        eprintln!("error: cannot write {}: {e}", output.display());
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
