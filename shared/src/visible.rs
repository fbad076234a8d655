//! Text from users (keys, values, captions of crafted recordings) made safe to show: every
//! control character written out as `\u{1b}`, so that it reaches a terminal, a text file or an
//! SVG document as text — never as a command (clear the screen, retitle the window, move the
//! cursor, a carriage return that overwrites a line) and never as a character XML forbids.

use std::borrow::Cow;
use std::fmt::Write;

/// `text` with its control characters written out; newlines and tabs stay (they lay text out).
pub fn visible(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hidden(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Characters that are not text: C0 (but newline and tab), DEL, C1, and the two that XML 1.0
/// forbids outright.
fn hidden(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t') || c == '\u{fffe}' || c == '\u{ffff}'
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn control_characters_are_written_out_and_text_is_left_alone() {
        assert_eq!(visible("esc\x1b[2J\x07key"), "esc\\u{1b}[2J\\u{7}key");
        assert_eq!(visible("a\rb\u{9b}c\u{7f}"), "a\\u{d}b\\u{9b}c\\u{7f}");
        assert_eq!(visible("año ñandú € 🦙\tline\n"), "año ñandú € 🦙\tline\n");
        assert!(matches!(visible("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(visible("\u{fffe}"), "\\u{fffe}");
    }
}
