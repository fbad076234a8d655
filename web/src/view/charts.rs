//! Small live charts: writes per second and their median latency as the proxy sees them, and
//! entries committed per second on the leader.

use std::collections::VecDeque;

use yew::prelude::*;

use crate::i18n::{Lang, T, t};
use crate::store::{Charts, Part};

#[derive(Properties, PartialEq)]
pub struct Props {
    pub lang: Lang,
    pub charts: Part<Charts>,
}

fn sparkline(values: &VecDeque<f64>) -> Html {
    let max = values.iter().copied().fold(1e-9, f64::max);
    let n = values.len().max(2) as f64;
    let points: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("{:.1},{:.1} ", i as f64 * 200.0 / (n - 1.0), 38.0 - v / max * 36.0))
        .collect();
    html! {
        <svg class="spark" viewBox="0 0 200 40" preserveAspectRatio="none" aria-hidden="true">
            <polyline points={points} />
        </svg>
    }
}

#[function_component]
pub fn ChartsView(props: &Props) -> Html {
    let lang = props.lang;
    let c = &props.charts;
    let last = |v: &VecDeque<f64>| v.back().copied().unwrap_or(0.0);
    let row = |label: T, series: &VecDeque<f64>, value: String, attr: &'static str| {
        html! {
            <div class="chart" data-chart={attr} data-value={value.clone()}>
                <span class="chart-label">{ t(lang, label) }</span>
                <span class="chart-value">{ value }</span>
                { sparkline(series) }
            </div>
        }
    };
    html! {
        <div class="charts">
            <h2>{ t(lang, T::Numbers) }</h2>
            { row(T::WritesPerSecond, &c.writes_per_s, format!("{:.0}", last(&c.writes_per_s)), "writes") }
            { row(T::LatencyP50, &c.write_p50_ms, format!("{:.1}", last(&c.write_p50_ms)), "latency") }
            { row(T::CommitsPerSecond, &c.commits_per_s, format!("{:.0}", last(&c.commits_per_s)), "commits") }
        </div>
    }
}
