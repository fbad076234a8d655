//! Client operations as a checker sees them.

use serde::{Deserialize, Serialize};

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
    pub invoke: u64,
    #[serde(rename = "return")]
    pub complete: Option<u64>,
    pub output: Output,
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
    /// A put or delete that was acknowledged.
    Ok,
    /// A get's answer.
    Value { value: Option<String> },
    /// A compare-and-swap's answer.
    Cas { swapped: bool },
    /// No answer: the write may or may not have happened.
    Unknown,
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
        let output = match &self.output {
            Output::Ok => "ok".to_string(),
            Output::Value { value } => value.clone().unwrap_or_else(|| "∅".into()),
            Output::Cas { swapped } => swapped.to_string(),
            Output::Unknown => "?".to_string(),
        };
        let end = self.complete.map_or("∞".to_string(), |t| t.to_string());
        write!(f, "client {} [{}, {end}] {input} → {output}", self.client, self.invoke)
    }
}
