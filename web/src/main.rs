//! Consenso's page: a live view of a real Raft cluster, and the controls to break it.
//!
//! # Layout
//!
//! - `connection`: the WebSocket to a proxy, with reconnection and failover; or
//! - `simulated`: a cluster simulated in the page (`?sim`), speaking the same frames; or
//! - `replay`: a recording played back into the store (file, drag-and-drop, `?replay=URL`);
//!   `recordings`: opening one, and the Save panel's downloads.
//! - `store/`: the cluster as the page knows it, built from the proxy's frames (`model`), the
//!   messages on their way in the cluster's time (`flights`), the recent history for freezing
//!   and scrubbing back, and how smoothly the page draws (`perf`). Plain Rust, tested natively.
//! - `ui`: what the user changes about the view, one reducer (plain Rust, tested natively).
//! - `app`: the root component: the store, the animation loop, keyboard shortcuts, layout; it
//!   hands each view the part of the store it draws, as props.
//! - `view/`: one small component per area — cluster drawing and its messages, time bar,
//!   message inspector, lessons and captions, alarms, logs, key-value table, event timeline,
//!   numbers, client and admin panels, legend, help.
//! - `i18n`: English and Spanish.

mod app;
mod connection;
mod i18n;
mod recordings;
mod replay;
mod simulated;
mod store;
mod ui;
mod view;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
