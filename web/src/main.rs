//! Consenso's page: a live view of a real Raft cluster, and the controls to break it.
//!
//! # Layout
//!
//! - `connection`: the WebSocket to a proxy, with reconnection and failover.
//! - `store`: the cluster as the page knows it, built from the proxy's frames, with the recent
//!   history for freezing and scrubbing back.
//! - `app`: the root component: the store, the UI state reducer, the animation loop, layout.
//! - `view/`: one small component per area — cluster drawing, logs, key-value table, event
//!   timeline, numbers, client and admin panels.
//! - `i18n`: English and Spanish.

mod app;
mod connection;
mod i18n;
mod store;
mod view;

fn main() {
    yew::Renderer::<app::App>::new().render();
}
