//! What the user changes about the view (language, presentation, selection, menus, the
//! partition being picked, timeline filters, the message inspected, help) — one reducer, plain
//! Rust, tested natively. The cluster's data is not here: it lives in the store.

use std::collections::BTreeSet;
use std::rc::Rc;

use shared::raft::{MessageId, NodeId};
use yew::Reducible;

use crate::i18n::Lang;
use crate::view::TimelineFilter;

#[derive(Clone, PartialEq, Debug)]
pub struct Ui {
    pub lang: Lang,
    pub presentation: bool,
    pub selected: Option<NodeId>,
    /// The node whose context menu is open.
    pub menu: Option<NodeId>,
    /// Nodes ticked for a partition.
    pub partition: BTreeSet<NodeId>,
    pub filter: TimelineFilter,
    /// The message being inspected: (sender, id).
    pub message: Option<(NodeId, MessageId)>,
    pub help: bool,
}

impl Ui {
    pub fn new(lang: Lang, presentation: bool) -> Ui {
        Ui {
            lang,
            presentation,
            selected: None,
            menu: None,
            partition: BTreeSet::new(),
            filter: TimelineFilter::default(),
            message: None,
            help: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum UiAction {
    SetLang(Lang),
    TogglePresentation,
    /// Select a node (or none, by clicking the background).
    Select(Option<NodeId>),
    OpenMenu(NodeId),
    CloseMenu,
    TogglePartition(NodeId),
    ClearPartition,
    Filter(TimelineFilter),
    Inspect(Option<(NodeId, MessageId)>),
    ToggleHelp,
    /// Escape: close whatever is open.
    CloseAll,
}

impl Reducible for Ui {
    type Action = UiAction;
    fn reduce(self: Rc<Self>, action: UiAction) -> Rc<Self> {
        let mut ui = (*self).clone();
        match action {
            UiAction::SetLang(lang) => ui.lang = lang,
            UiAction::TogglePresentation => ui.presentation = !ui.presentation,
            UiAction::Select(node) => {
                ui.selected = node;
                ui.menu = None;
            }
            UiAction::OpenMenu(node) => {
                ui.selected = Some(node);
                ui.menu = Some(node);
            }
            UiAction::CloseMenu => ui.menu = None,
            UiAction::TogglePartition(node) => {
                if !ui.partition.remove(&node) {
                    ui.partition.insert(node);
                }
            }
            UiAction::ClearPartition => ui.partition.clear(),
            UiAction::Filter(filter) => ui.filter = filter,
            UiAction::Inspect(message) => ui.message = message,
            UiAction::ToggleHelp => ui.help = !ui.help,
            UiAction::CloseAll => {
                ui.menu = None;
                ui.help = false;
                ui.message = None;
            }
        }
        Rc::new(ui)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(actions: impl IntoIterator<Item = UiAction>) -> Ui {
        let mut ui = Rc::new(Ui::new(Lang::En, false));
        for action in actions {
            ui = ui.reduce(action);
        }
        (*ui).clone()
    }

    #[test]
    fn opening_a_menu_selects_its_server_and_selecting_another_closes_it() {
        let ui = after([UiAction::OpenMenu(2)]);
        assert_eq!((ui.selected, ui.menu), (Some(2), Some(2)));
        let ui = after([UiAction::OpenMenu(2), UiAction::Select(Some(3))]);
        assert_eq!((ui.selected, ui.menu), (Some(3), None));
        let ui = after([UiAction::OpenMenu(2), UiAction::Select(None)]);
        assert_eq!((ui.selected, ui.menu), (None, None));
    }

    #[test]
    fn ticking_a_server_twice_takes_it_out_of_the_partition() {
        let ui =
            after([UiAction::TogglePartition(1), UiAction::TogglePartition(3), UiAction::TogglePartition(1)]);
        assert_eq!(ui.partition, BTreeSet::from([3]));
        assert!(after([UiAction::TogglePartition(1), UiAction::ClearPartition]).partition.is_empty());
    }

    #[test]
    fn escape_closes_the_menu_the_help_and_the_inspector_but_keeps_the_selection_and_language() {
        let ui = after([
            UiAction::SetLang(Lang::Es),
            UiAction::OpenMenu(1),
            UiAction::ToggleHelp,
            UiAction::Inspect(Some((1, 7))),
            UiAction::CloseAll,
        ]);
        assert_eq!((ui.menu, ui.help, ui.message), (None, false, None));
        assert_eq!((ui.selected, ui.lang), (Some(1), Lang::Es));
    }

    #[test]
    fn presentation_and_help_toggle() {
        let ui = after([UiAction::TogglePresentation, UiAction::ToggleHelp]);
        assert!(ui.presentation && ui.help);
        let ui = after([UiAction::TogglePresentation, UiAction::TogglePresentation]);
        assert!(!ui.presentation);
    }

    #[test]
    fn a_filter_replaces_the_one_before() {
        let mut filter = TimelineFilter::default();
        filter.hidden_nodes.insert(2);
        let ui = after([UiAction::Filter(filter.clone())]);
        assert_eq!(ui.filter, filter);
    }
}
