//! The key-value store of every server side by side; a value that differs from the leader's is
//! highlighted, which is how a lagging or partitioned server shows in the data itself.

use std::collections::BTreeSet;

use shared::raft::NodeId;
use yew::prelude::*;

use crate::i18n::{Lang, T, t};
use crate::store::{Nodes, Part};

/// Keys shown at most.
const ROWS: usize = 25;

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub nodes: Part<Nodes>,
}

#[function_component]
pub fn KvView(props: &Props) -> Html {
    let model = &props.nodes;
    let lang = props.lang;
    let leader = model.shown_leader();
    let nodes: Vec<NodeId> = model.keys().copied().collect();
    let keys: BTreeSet<&String> = model.values().flat_map(|n| n.kv.iter().map(|(k, _)| k)).collect();
    let truncated = model.values().any(|n| n.kv_truncated) || keys.len() > ROWS;
    let value = |node: NodeId, key: &str| {
        model.get(&node).and_then(|n| n.kv.iter().find(|(k, _)| k == key)).map(|(_, v)| v.clone())
    };
    let reachable = |node: NodeId| model.get(&node).is_some_and(|n| n.reachable);
    html! {
        <div class="kv">
            <h2>{ t(lang, T::StateMachine) }</h2>
            <table>
                <thead>
                    <tr>
                        <th>{ t(lang, T::Key) }</th>
                        { for nodes.iter().map(|id| html! {
                            <th class={classes!((Some(*id) == leader).then_some("leader"))}>{ format!("{} {id}", t(lang, T::Node)) }</th>
                        }) }
                    </tr>
                </thead>
                <tbody>
                    { for keys.iter().take(ROWS).map(|key| {
                        let reference = leader.and_then(|l| value(l, key));
                        html! {
                            <tr data-key={(*key).clone()}>
                                <td class="key">{ (*key).clone() }</td>
                                { for nodes.iter().map(|id| {
                                    let v = value(*id, key);
                                    let differs = leader.is_some() && reachable(*id) && v != reference;
                                    let shown = match (&v, reachable(*id)) {
                                        (_, false) => "—".to_string(),
                                        (Some(v), true) => short(v),
                                        (None, true) => "∅".to_string(),
                                    };
                                    html! { <td class={classes!(differs.then_some("differs"))} data-node={id.to_string()} title={v.unwrap_or_default()}>{ shown }</td> }
                                }) }
                            </tr>
                        }
                    }) }
                </tbody>
            </table>
            { if truncated { html! { <p class="note">{ t(lang, T::Truncated) }</p> } } else { html! {} } }
        </div>
    }
}

fn short(v: &str) -> String {
    if v.chars().count() > 18 {
        format!("{}…", v.chars().take(17).collect::<String>())
    } else {
        v.to_string()
    }
}
