//! The one rule for printing text that came from the grid (file names,
//! errors, host names, output) where a person or a program reads it: a
//! terminal (`status`, `validate`, `reap`, `archive`), a GitHub job summary
//! (Markdown, inside a code fence) and workflow annotations.
//!
//! What it guards against: control characters (terminal escape sequences,
//! a newline that starts a `::workflow-command::` line), invisible and
//! bidirectional format characters (text that reads differently from what
//! it is), and runs of three or more backticks (a name that is one closes
//! the job summary's Markdown code fence, indented as `status` prints it;
//! single backticks, as in "field `script`", pass).
//! Each is written as `\u{..}` (`\n`, `\t`, `\r` as such) and a backslash as
//! `\\`, so the escaped text is one line, plain, and tells exactly what was
//! there. Ordinary text, accents and all, passes unchanged.

use std::borrow::Cow;

/// `s` made safe to print on one line of a terminal, a job summary or an
/// annotation.
pub fn untrusted(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) && !s.contains(FENCE) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            '`' => {
                let run = chars[i..].iter().take_while(|c| **c == '`').count();
                let each = if run >= FENCE.len() { "\\u{60}" } else { "`" };
                out.push_str(&each.repeat(run));
                i += run;
                continue;
            }
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(out)
}

/// The shortest run of backticks that opens or closes a Markdown code fence.
const FENCE: &str = "```";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_passes_unchanged() {
        for s in [
            "tasks/queue/t-1.json",
            "café: 3 s",
            "a b",
            "field `script` is missing",
            "a``b",
        ] {
            assert!(matches!(untrusted(s), Cow::Borrowed(_)), "{s}");
        }
    }

    #[test]
    fn nothing_can_start_a_line_or_a_sequence() {
        let evil = "x\n::stop-commands::tok\r\u{1b}[2J\u{7}\u{9b}31m```\u{202e}gpj.exe\\";
        let e = untrusted(evil);
        assert_eq!(
            e,
            "x\\n::stop-commands::tok\\r\\u{1b}[2J\\u{7}\\u{9b}31m\\u{60}\\u{60}\\u{60}\\u{202e}gpj.exe\\\\"
        );
        assert!(!e.chars().any(|c| c.is_control()));
    }

    proptest::proptest! {
        /// Whatever goes in, one line of printable text comes out, and the
        /// escaping can be undone (two different texts never print alike).
        #[test]
        fn always_one_printable_line(s in proptest::prelude::any::<String>()) {
            let e = untrusted(&s);
            proptest::prop_assert!(!e.chars().any(needs_escape_after));
            proptest::prop_assert!(!e.contains(FENCE));
            proptest::prop_assert_eq!(unescape(&e), s);
        }
    }

    fn needs_escape_after(c: char) -> bool {
        needs_escape(c) && c != '\\'
    }

    fn unescape(s: &str) -> String {
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
}
