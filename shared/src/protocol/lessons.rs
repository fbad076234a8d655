//! A lesson's state and controls, as frames carry them (the scripts themselves are
//! `crate::lesson`'s).

use serde::{Deserialize, Serialize};

/// A sentence in both of the page's languages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Text {
    pub en: String,
    pub es: String,
}

/// Builds a `Text` from English and Spanish.
pub fn say(en: impl Into<String>, es: impl Into<String>) -> Text {
    Text { en: en.into(), es: es.into() }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.en)
    }
}

/// What a page or the CLI asks of the lesson runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum LessonAction {
    /// Start a lesson (stopping any other). `auto`: run through without waiting for *Next*.
    Start {
        name: String,
        #[serde(default)]
        auto: bool,
    },
    /// Go on past the caption shown.
    Next,
    /// Abandon the lesson; the cluster stays as it is.
    Stop,
}

impl LessonAction {
    pub fn describe(&self) -> String {
        match self {
            LessonAction::Start { name, .. } => format!("start the lesson {name}"),
            LessonAction::Next => "next step of the lesson".to_string(),
            LessonAction::Stop => "stop the lesson".to_string(),
        }
    }
}

/// A lesson in progress (or just finished), as every page shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LessonStatus {
    pub name: String,
    pub title: Text,
    /// Captions so far, the one on screen last.
    pub captions: Vec<Text>,
    /// The caption on screen waits for *Next*.
    pub waiting: bool,
    pub auto: bool,
    /// Set when the lesson ended: whether its check held, and what it found.
    pub outcome: Option<Outcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub passed: bool,
    pub message: Text,
}
