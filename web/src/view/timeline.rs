//! Recent events in words, newest first, filterable by server and by kind.

use std::collections::{BTreeSet, VecDeque};

use shared::event::Event;
use shared::raft::NodeId;
use yew::prelude::*;

use crate::i18n::{Lang, T, t};
use crate::store::{Part, TimelineItem};
use crate::ui::UiAction;

/// Lines drawn at most.
const SHOWN: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Roles,
    Votes,
    Replication,
    Commits,
    Snapshots,
    Reads,
    Faults,
}

impl Kind {
    const ALL: [Kind; 7] = [
        Kind::Roles,
        Kind::Votes,
        Kind::Replication,
        Kind::Commits,
        Kind::Snapshots,
        Kind::Reads,
        Kind::Faults,
    ];

    fn of(event: &Event) -> Kind {
        match event {
            Event::RoleChanged { .. }
            | Event::TransferStarted { .. }
            | Event::TransferAborted { .. }
            | Event::MembershipChanged { .. }
            | Event::Admitted => Kind::Roles,
            Event::VoteGranted { .. } | Event::VoteRefused { .. } | Event::VoteCounted { .. } => Kind::Votes,
            Event::EntriesAppended { .. }
            | Event::LogTruncated { .. }
            | Event::AppendRefused { .. }
            | Event::AppendAccepted { .. }
            | Event::AppendRejected { .. }
            | Event::MessageSent { .. }
            | Event::MessageLost { .. }
            | Event::MessageStepped { .. }
            | Event::ElectionTimerReset { .. } => Kind::Replication,
            Event::CommitAdvanced { .. } | Event::Applied { .. } => Kind::Commits,
            Event::SnapshotTaken { .. } | Event::SnapshotSent { .. } | Event::SnapshotInstalled { .. } => {
                Kind::Snapshots
            }
            Event::ReadIndexReady { .. } | Event::ReadIndexFailed { .. } | Event::ReadServed { .. } => {
                Kind::Reads
            }
            Event::Recovered { .. }
            | Event::Fault { .. }
            | Event::ClockStopped
            | Event::ClockStarted
            | Event::ClockAdvanced { .. }
            | Event::DiskLost { .. }
            | Event::NodeProblem { .. }
            | Event::Alarm { .. } => Kind::Faults,
        }
    }

    fn label(self) -> T {
        match self {
            Kind::Roles => T::FilterRoles,
            Kind::Votes => T::FilterVotes,
            Kind::Replication => T::FilterReplication,
            Kind::Commits => T::FilterCommits,
            Kind::Snapshots => T::FilterSnapshots,
            Kind::Reads => T::FilterReads,
            Kind::Faults => T::FilterFaults,
        }
    }
}

/// What the timeline hides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimelineFilter {
    pub hidden_kinds: BTreeSet<Kind>,
    pub hidden_nodes: BTreeSet<NodeId>,
}

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub timeline: Part<VecDeque<TimelineItem>>,
    /// The servers, to filter by.
    pub nodes: Vec<NodeId>,
    pub filter: TimelineFilter,
    pub dispatch: Callback<UiAction>,
}

/// Wall-clock time of day for a page time, given the page's origin on the wall clock and the
/// local time zone's offset (both computed once per drawing).
fn wall_clock(page_time: f64, origin: f64, zone_offset_minutes: f64) -> String {
    let ms = (origin + page_time - zone_offset_minutes * 60_000.0).rem_euclid(86_400_000.0) as u64;
    format!("{:02}:{:02}:{:02}.{:03}", ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000)
}

#[function_component]
pub fn TimelineView(props: &Props) -> Html {
    let lang = props.lang;
    let filter = &props.filter;
    let items = props
        .timeline
        .iter()
        .filter(|i| {
            !filter.hidden_nodes.contains(&i.node) && !filter.hidden_kinds.contains(&Kind::of(&i.event))
        })
        .take(SHOWN);
    let toggle_kind = |kind: Kind| {
        let (d, f) = (props.dispatch.clone(), filter.clone());
        Callback::from(move |_| {
            let mut f = f.clone();
            if !f.hidden_kinds.remove(&kind) {
                f.hidden_kinds.insert(kind);
            }
            d.emit(UiAction::Filter(f));
        })
    };
    let toggle_node = |node: NodeId| {
        let (d, f) = (props.dispatch.clone(), filter.clone());
        Callback::from(move |_| {
            let mut f = f.clone();
            if !f.hidden_nodes.remove(&node) {
                f.hidden_nodes.insert(node);
            }
            d.emit(UiAction::Filter(f));
        })
    };
    let origin = js_sys::Date::now() - crate::app::now_ms();
    let zone = js_sys::Date::new_0().get_timezone_offset();
    let lines: Vec<Html> = items
        .map(|item| {
            let kind = Kind::of(&item.event);
            html! {
                <li class={format!("kind-{kind:?}").to_lowercase()} data-node={item.node.to_string()}>
                    <time>{ wall_clock(item.t, origin, zone) }</time>
                    <strong>{ who(lang, item) }</strong>
                    { " " }{ item.event.describe_in(lang) }
                </li>
            }
        })
        .collect();
    html! {
        <div class="timeline">
            <h2>{ t(lang, T::Events) }</h2>
            <div class="filters">
                { for Kind::ALL.iter().map(|k| html! {
                    <label><input type="checkbox" checked={!filter.hidden_kinds.contains(k)} onchange={toggle_kind(*k)} />{ t(lang, k.label()) }</label>
                }) }
                <span class="sep">{ "·" }</span>
                { for props.nodes.iter().map(|n| html! {
                    <label><input type="checkbox" checked={!filter.hidden_nodes.contains(n)} onchange={toggle_node(*n)} />{ n.to_string() }</label>
                }) }
            </div>
            { if lines.is_empty() { html! { <p class="note">{ t(lang, T::NoEvents) }</p> } } else { html! { <ol>{ for lines }</ol> } } }
        </div>
    }
}

/// Whose line it is: a server's, or the proxy's (its alarms, and what an admin did).
fn who(lang: Lang, item: &TimelineItem) -> String {
    match (item.node, &item.event) {
        (0, Event::Alarm { .. }) => t(lang, T::Alarm).to_string(),
        (0, _) => t(lang, T::ProxyRow).to_string(),
        (node, _) => format!("{} {node}", t(lang, T::Node)),
    }
}
