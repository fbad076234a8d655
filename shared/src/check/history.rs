//! Client operations as a checker sees them.

use serde::{Deserialize, Serialize};

use crate::event::Consistency;

/// One client operation: what was asked, when, and what came back.
///
/// Times are in any unit that orders events (the simulator uses its step counter, `consenso
/// bench` microseconds since the run started). An operation whose outcome is unknown (it timed
/// out) has no return time: it may have taken effect at any point after it was invoked, or
/// never.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    pub client: u64,
    #[serde(flatten)]
    pub input: Input,
    /// A get's consistency; `stale` reads may be old by design and are not checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency: Option<Consistency>,
    pub invoke: u64,
    #[serde(rename = "return")]
    pub complete: Option<u64>,
    pub output: Output,
}

impl Operation {
    /// Whether the linearizability check takes this operation into account: not a refused
    /// one (it had no effect) and not a stale read (allowed to be old).
    pub fn is_checked(&self) -> bool {
        !matches!(self.output, Output::Failed { .. }) && self.consistency != Some(Consistency::Stale)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Input {
    Put { key: String, value: String },
    Get { key: String },
    Delete { key: String },
    Cas { key: String, expected: Option<String>, new: String },
}

impl Input {
    pub fn key(&self) -> &str {
        match self {
            Input::Put { key, .. } | Input::Get { key } | Input::Delete { key } | Input::Cas { key, .. } => {
                key
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Output {
    /// A put or delete that was acknowledged (without what it found).
    Ok,
    /// A put that was acknowledged, with the value it replaced.
    Put { previous: Option<String> },
    /// A delete that was acknowledged, and whether the key existed.
    Delete { existed: bool },
    /// A get's answer.
    Value { value: Option<String> },
    /// A compare-and-swap's answer, and the value it found (absent from the record: unknown;
    /// `null`: the key was absent).
    Cas {
        swapped: bool,
        #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
        current: Option<Option<String>>,
    },
    /// No answer: the write may or may not have happened.
    Unknown,
    /// Refused without effect (the error kind: `unauthorized`, `store_full`, …); not checked.
    Failed { error: String },
}

/// A field that is present reads as `Some`, even when it is `null`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(d)?))
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let input = match &self.input {
            Input::Put { key, value } => format!("put({key}, {value})"),
            Input::Get { key } => format!("get({key})"),
            Input::Delete { key } => format!("delete({key})"),
            Input::Cas { key, expected, new } => {
                format!("cas({key}, {}, {new})", expected.as_deref().unwrap_or("∅"))
            }
        };
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "∅".into());
        let output = match &self.output {
            Output::Ok => "ok".to_string(),
            Output::Put { previous } => format!("ok (was {})", shown(previous)),
            Output::Delete { existed } => format!("ok (existed: {existed})"),
            Output::Value { value } => shown(value),
            Output::Cas { swapped, current: Some(current) } => {
                format!("{swapped} (found {})", shown(current))
            }
            Output::Cas { swapped, current: None } => swapped.to_string(),
            Output::Unknown => "?".to_string(),
            Output::Failed { error } => format!("refused: {error}"),
        };
        let end = self.complete.map_or("∞".to_string(), |t| t.to_string());
        write!(f, "client {} [{}, {end}] {input} → {output}", self.client, self.invoke)
    }
}
