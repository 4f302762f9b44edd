//! The one rule for showing text that came from the grid (file names,
//! reasons quoting them, node records, errors, output) wherever a person
//! reads it: the worker's log (a terminal, a file, the journal), the two
//! HTML pages, and the tools' output (`tools/escape.rs` adds what a
//! Markdown job summary needs on top of it).
//!
//! What it guards against: control characters (terminal escape sequences,
//! a bell, a newline that starts a forged log line or a
//! `::workflow-command::`), invisible and bidirectional format characters
//! (text that reads differently from what it is). Each is written as
//! `\u{..}` (`\n`, `\t`, `\r` as such) and a backslash as `\\`, so the
//! escaped text is plain and tells exactly what was there. Ordinary text,
//! accents and all, passes unchanged.

use std::borrow::Cow;
use std::fmt;

/// `s` made safe to show on one line.
pub fn line(s: &str) -> Cow<'_, str> {
    shown(s, false)
}

/// `s` made safe to show as a block of lines (an HTML `<pre>`): as
/// [`line`], but a newline and a tab stay what they are.
pub fn lines(s: &str) -> Cow<'_, str> {
    shown(s, true)
}

/// A value shown by the rule of [`line`]: for a log field that holds grid
/// text, `tracing::warn!(entry = %Untrusted(&name), ...)`.
pub struct Untrusted<T>(pub T);

impl<T: fmt::Display> fmt::Display for Untrusted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&line(&self.0.to_string()))
    }
}

fn shown(s: &str, keep_lines: bool) -> Cow<'_, str> {
    let kept = |c: char| keep_lines && matches!(c, '\n' | '\t');
    if !s.chars().any(|c| needs_escape(c) && !kept(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if kept(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// JSON text (`serde_json`'s, which escapes only what JSON must) with
/// every other character [`line`] escapes written as `\uXXXX` too: the
/// same value to a parser, and nothing a terminal acts on (a C1 control,
/// a bidi override) when `status --json` is printed to one.
pub fn json(text: String) -> String {
    if !text.chars().any(needs_escape_in_json) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_escape_in_json(c) {
            // Every such character is in the Basic Multilingual Plane.
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// What JSON text may still hold raw that [`line`] would escape: JSON has
/// escaped the ASCII controls, quotes and backslashes already.
fn needs_escape_in_json(c: char) -> bool {
    needs_escape(c) && !matches!(c, '\\' | '\0'..='\u{1f}')
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || c == '\\'
        || matches!(c,
            // zero-width and joiners, marks, bidi embeddings and overrides,
            // invisible operators, bidi isolates, the BOM, line and
            // paragraph separators
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}')
}

/// The text that [`line`] or [`lines`] showed (`\u{..}` of any character
/// undone too): two texts are never shown alike.
#[cfg(test)]
pub(crate) fn unescape(s: &str) -> String {
    let mut out = String::new();
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some('u') => {
                assert_eq!(it.next(), Some('{'));
                let hex: String = it.by_ref().take_while(|c| *c != '}').collect();
                out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
            }
            other => panic!("bad escape {other:?}"),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_keeps_its_value_and_shows_no_c1_control_or_bidi_override() {
        let value =
            serde_json::json!({"name": "a\u{9b}31m\u{202e}b\u{7f}\\\n\u{1b}", "ok": "café"});
        let text = json(serde_json::to_string(&value).unwrap());
        assert!(
            !text
                .chars()
                .any(|c| c.is_control() || ('\u{2000}'..='\u{2fff}').contains(&c)),
            "{text}"
        );
        assert!(
            text.contains("\\u009b") && text.contains("\\u202e") && text.contains("café"),
            "{text}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&text).unwrap(),
            value
        );
    }

    #[test]
    fn plain_text_passes_unchanged() {
        for s in [
            "tasks/queue/t-1.json",
            "café: 3 s",
            "a b",
            "field `script` is missing",
            "a```b",
        ] {
            assert!(matches!(line(s), Cow::Borrowed(_)), "{s}");
            assert!(matches!(lines(s), Cow::Borrowed(_)), "{s}");
        }
        assert!(matches!(lines("a\n\tb"), Cow::Borrowed(_)));
    }

    #[test]
    fn nothing_can_start_a_line_or_a_sequence() {
        let evil = "x\n::stop-commands::tok\r\u{1b}[2J\u{7}\u{9b}31m\u{202e}gpj.exe\u{2028}\\";
        let e = line(evil);
        assert_eq!(
            e,
            "x\\n::stop-commands::tok\\r\\u{1b}[2J\\u{7}\\u{9b}31m\\u{202e}gpj.exe\\u{2028}\\\\"
        );
        assert!(!e.chars().any(|c| c.is_control()));
    }

    #[test]
    fn a_block_keeps_its_lines_and_nothing_else() {
        assert_eq!(
            lines("a\tb\nc\r\u{1b}[31m\u{7}\u{202e}"),
            "a\tb\nc\\r\\u{1b}[31m\\u{7}\\u{202e}"
        );
    }

    #[test]
    fn a_field_shows_its_value_escaped() {
        let name = "q\u{1b}[31mQ\u{7}.json";
        assert_eq!(Untrusted(name).to_string(), "q\\u{1b}[31mQ\\u{7}.json");
        let reason = format!("tasks/queue/{name}: is not valid");
        assert_eq!(
            format!("{}", Untrusted(&reason)),
            "tasks/queue/q\\u{1b}[31mQ\\u{7}.json: is not valid"
        );
    }

    fn visible(c: char) -> bool {
        !needs_escape(c) || c == '\\'
    }

    proptest::proptest! {
        /// Whatever goes in, printable text comes out (one line, or lines
        /// and tabs only), and the escaping can be undone (two different
        /// texts never show alike).
        #[test]
        fn always_printable_and_undone(s in proptest::prelude::any::<String>()) {
            let one = line(&s);
            proptest::prop_assert!(one.chars().all(visible));
            proptest::prop_assert_eq!(unescape(&one), s.clone());
            let block = lines(&s);
            proptest::prop_assert!(block.chars().all(|c| visible(c) || c == '\n' || c == '\t'));
            proptest::prop_assert_eq!(unescape(&block), s);
        }
    }
}
