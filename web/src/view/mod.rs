//! One small component per area of the page. Views read the store through the shared context
//! and get what changes as props (versions, the UI state), so an unchanged area skips its work.

mod admin_panel;
mod banners;
mod charts;
mod client_panel;
mod cluster;
mod flights;
mod geometry;
mod header;
mod help;
mod inspector;
mod kv;
mod legend;
mod lessons;
mod logs;
mod replay_bar;
mod save_panel;
mod time_bar;
mod timeline;

pub use admin_panel::AdminPanel;
pub use banners::Banners;
pub use charts::ChartsView;
pub use client_panel::ClientPanel;
pub use cluster::ClusterView;
pub use header::Header;
pub use help::Help;
pub use inspector::Inspector;
pub use kv::KvView;
pub use legend::Legend;
pub use lessons::LessonPanel;
pub use logs::LogsView;
pub use replay_bar::ReplayBar;
pub use save_panel::{Save, SaveFrom, SavePanel};
pub use time_bar::TimeBar;
pub use timeline::{TimelineFilter, TimelineView};
