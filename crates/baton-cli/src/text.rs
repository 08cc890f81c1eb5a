//! Text that comes from elsewhere — a lock key's value (which another
//! library or an attacker may have set), a server's error message — made
//! safe to print on an operator's terminal.
//!
//! A raw control character in such text would reach the terminal as a
//! command: ESC starts escape sequences (clear the screen, set the window
//! title, move the cursor), BEL rings, CR and BS overwrite what was shown,
//! C1 characters (U+0080..U+009F) are escape sequences of their own on some
//! terminals, and Unicode bidirectional controls reorder the rest of the line
//! ("Trojan Source"). Every such character is written as an escape instead.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` must not reach a terminal raw: a control character (C0,
/// DEL, C1: exactly `char::is_control`) or one of Unicode's bidirectional
/// controls (the `Bidi_Control` property: ALM, LRM, RLM, the embeddings and
/// overrides U+202A..U+202E, the isolates U+2066..U+2069).
fn hostile(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` for a terminal: each control or bidirectional-control character
/// written as Rust writes it in a debug string (ESC as `\u{1b}`), the rest
/// as it is. Borrowed when there is nothing to escape.
///
/// Meant for reading, not for parsing back: a backslash in `text` is left
/// as it is.
///
/// ```
/// use baton_cli::text::printable;
/// assert_eq!(printable("\u{1b}[2Jab"), "\\u{1b}[2Jab");
/// assert_eq!(printable("3f2a9c1e"), "3f2a9c1e");
/// ```
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hostile(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A JSON string literal (quotes included) of `text`: `"` and `\` escaped,
/// and every character [`printable`] escapes written as `\uXXXX` (so DEL,
/// C1 and bidirectional controls too, not only the C0 controls JSON
/// requires), which a JSON parser reads back as the same text.
///
/// ```
/// use baton_cli::text::json_string;
/// assert_eq!(json_string("a\"\u{1b}\u{9b}"), r#""a\"\u001b\u009b""#);
/// ```
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            // All of them are in the Basic Multilingual Plane: one \uXXXX each.
            c if hostile(c) => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOSTILE: &str = "\u{1b}[2J\u{1b}]0;pwned\u{7}\r\u{8}\u{7f}\u{9b}\u{202e}\u{2067}";

    #[test]
    fn hostile_text_is_escaped_and_clean_text_borrowed() {
        assert_eq!(
            printable(HOSTILE),
            "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}\\u{8}\\u{7f}\\u{9b}\\u{202e}\\u{2067}"
        );
        assert!(matches!(printable("3f2a9c1e é"), Cow::Borrowed(_)));
        assert_eq!(
            json_string(HOSTILE),
            "\"\\u001b[2J\\u001b]0;pwned\\u0007\\u000d\\u0008\\u007f\\u009b\\u202e\\u2067\""
        );
    }

    /// Text with control and bidirectional characters often in it (proptest's
    /// own strings leave control characters out).
    fn text() -> impl Strategy<Value = String> {
        let c = prop_oneof![
            any::<char>(),
            (0u8..=0xff).prop_map(char::from),
            (0x2000u32..0x2070).prop_filter_map("a char", char::from_u32),
        ];
        proptest::collection::vec(c, 0..24).prop_map(|cs| cs.into_iter().collect())
    }

    proptest! {
        /// Whatever the text: nothing hostile is left, and text with nothing
        /// hostile in it is unchanged.
        #[test]
        fn printable_leaves_nothing_hostile(text in text()) {
            let shown = printable(&text);
            prop_assert!(!shown.chars().any(hostile), "{shown:?}");
            if !text.chars().any(hostile) {
                prop_assert_eq!(&*shown, &*text);
            }
        }

        /// Whatever the text: a JSON string that parses back to it, with
        /// nothing hostile left raw.
        #[test]
        fn json_strings_parse_back(text in text()) {
            let literal = json_string(&text);
            prop_assert!(!literal.chars().any(hostile), "{literal:?}");
            let parsed: String = serde_json::from_str(&literal).expect("valid JSON");
            prop_assert_eq!(parsed, text);
        }
    }
}
