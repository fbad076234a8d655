//! One small component per area of the page.

mod actions;
mod admin_panel;
mod charts;
mod client_panel;
mod cluster;
mod header;
mod kv;
mod logs;
mod timeline;

pub use admin_panel::AdminPanel;
pub use charts::ChartsView;
pub use client_panel::ClientPanel;
pub use cluster::ClusterView;
pub use header::Header;
pub use kv::KvView;
pub use logs::LogsView;
pub use timeline::{TimelineFilter, TimelineView};
