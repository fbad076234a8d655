//! What the lecturer saves after the fact, over plain HTTP (the page's links, `curl`): the last
//! minutes as a recording, and a window of them as a space-time diagram (SVG) or in words. Both
//! need the token: they cost the proxy work, and a class of viewers has no need for them.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use shared::diagram::Window;
use shared::event_text::Lang;

use super::Shared;

#[derive(Deserialize)]
pub struct Ask {
    #[serde(default)]
    token: String,
    /// For `/recording`: minutes back from now.
    minutes: Option<f64>,
    /// For `/diagram`: seconds back from now.
    seconds: Option<f64>,
    /// For `/diagram`: `svg` (default) or `text`.
    format: Option<String>,
    /// For `/diagram?format=text`: `en` or `es`.
    lang: Option<String>,
    /// For `/diagram`: draw routine heartbeats and acknowledgements too.
    #[serde(default)]
    heartbeats: bool,
}

fn refused(status: StatusCode, why: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], format!("{why}\n")).into_response()
}

/// Why a download is refused, if it is.
/// The token comes in an `Authorization: Bearer …` header (what the page sends: it never puts
/// the token in a link a class could read) or as `?token=…` (for curl and scripts).
fn refusal(shared: &Shared, headers: &HeaderMap, ask: &Ask) -> Option<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let token = if bearer.is_empty() { ask.token.as_str() } else { bearer };
    if !crate::secret::same_token(token, &shared.room.token) {
        let why = "unauthorized: send the cluster's token (Authorization: Bearer …, or ?token=…)";
        return Some(refused(StatusCode::UNAUTHORIZED, why));
    }
    if shared.recorder.recent_minutes() == 0 {
        let why = "this proxy keeps no recent minutes (--recent-minutes 0)";
        return Some(refused(StatusCode::NOT_FOUND, why));
    }
    None
}

fn attachment(content_type: &'static str, name: String, body: String) -> Response {
    let disposition = format!("attachment; filename=\"{name}\"");
    ([(header::CONTENT_TYPE, content_type.to_string()), (header::CONTENT_DISPOSITION, disposition)], body)
        .into_response()
}

fn stamp() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `GET /recording?minutes=N&token=T`: the last N minutes (from a picture at or before then).
pub async fn recording(State(shared): State<Shared>, headers: HeaderMap, Query(ask): Query<Ask>) -> Response {
    if let Some(refusal) = refusal(&shared, &headers, &ask) {
        return refusal;
    }
    let minutes = ask.minutes.unwrap_or(5.0).clamp(0.0, shared.recorder.recent_minutes() as f64);
    // Up to tens of MB to copy: off the proxy's one thread.
    let recorder = shared.recorder.clone();
    match tokio::task::spawn_blocking(move || recorder.recent(minutes)).await {
        Ok(text) => attachment("application/x-ndjson", format!("consenso-{}.rec", stamp()), text),
        Err(_) => refused(StatusCode::INTERNAL_SERVER_ERROR, "the recording could not be put together"),
    }
}

/// `GET /diagram?seconds=S&token=T[&heartbeats=true][&format=text&lang=es]`: the last S seconds
/// drawn.
pub async fn diagram(State(shared): State<Shared>, headers: HeaderMap, Query(ask): Query<Ask>) -> Response {
    if let Some(refusal) = refusal(&shared, &headers, &ask) {
        return refusal;
    }
    let seconds = ask.seconds.unwrap_or(10.0).clamp(0.5, shared.recorder.recent_minutes() as f64 * 60.0);
    // Drawing minutes of a cluster takes a while: off the proxy's one thread.
    let recorder = shared.recorder.clone();
    match tokio::task::spawn_blocking(move || draw(&recorder, seconds, &ask)).await {
        Ok(response) => response,
        Err(_) => refused(StatusCode::INTERNAL_SERVER_ERROR, "the diagram could not be drawn"),
    }
}

fn draw(recorder: &super::recorder::Recorder, seconds: f64, ask: &Ask) -> Response {
    let text = recorder.recent(seconds / 60.0);
    let Ok((_, lines)) = shared::recording::parse(&text) else {
        return refused(StatusCode::INTERNAL_SERVER_ERROR, "the recent frames do not read back");
    };
    let end = lines.last().map_or(0.0, |l| l.t as f64 / 1000.0);
    let window = Window { from_s: (end - seconds).max(0.0), to_s: f64::INFINITY, routine: ask.heartbeats };
    match ask.format.as_deref() {
        Some("text") => {
            let lang = if ask.lang.as_deref() == Some("es") { Lang::Es } else { Lang::En };
            let words = shared::diagram::text(&lines, window, lang);
            attachment("text/plain; charset=utf-8", format!("consenso-{}.txt", stamp()), words)
        }
        Some("svg") | None => {
            let title = format!("Consenso — the last {seconds:.0} s, recorded by {}", recorder.proxy());
            let svg = shared::diagram::render(&lines, window, &title);
            attachment("image/svg+xml", format!("consenso-{}.svg", stamp()), svg)
        }
        Some(other) => refused(StatusCode::BAD_REQUEST, &format!("unknown format '{other}': svg or text")),
    }
}
