//! Grid text as the tools print it (file names, errors, host names,
//! output): a terminal (`status`, `validate`, `reap`, `archive`), a GitHub
//! job summary (Markdown, inside a code fence) and workflow annotations.
//!
//! The rule is the crate's one ([`crate::escape::line`]: control,
//! invisible and bidirectional format characters and a backslash written
//! as `\n`, `\u{1b}`, `\\`, so the text is one plain line that tells
//! exactly what was there), and one thing more for the job summary: runs
//! of three or more backticks (a name that is one closes the summary's
//! Markdown code fence, indented as `status` prints it) are written as
//! `\u{60}` each; single backticks, as in "field `script`", pass.

use std::borrow::Cow;

/// `s` made safe to print on one line of a terminal, a job summary or an
/// annotation.
pub fn untrusted(s: &str) -> Cow<'_, str> {
    let shown = crate::escape::line(s);
    if !shown.contains(FENCE) {
        return shown;
    }
    // The line holds no escape of its own that a backtick could join:
    // every backslash in it is one it wrote.
    let chars: Vec<char> = shown.chars().collect();
    let mut out = String::with_capacity(shown.len() + 16);
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let run = chars[i..].iter().take_while(|c| **c == '`').count();
        let each = if run >= FENCE.len() { "\\u{60}" } else { "`" };
        out.push_str(&each.repeat(run));
        i += run;
    }
    Cow::Owned(out)
}

/// The shortest run of backticks that opens or closes a Markdown code fence.
const FENCE: &str = "```";

#[cfg(test)]
mod tests {
    use super::*;

    /// The error holds the character as it is, and whatever shows it
    /// escapes it once (`escape::line`): not `'\\u{1b}'`, as a quoted
    /// form escaped again read.
    #[test]
    fn a_bad_character_is_escaped_once_where_it_is_shown() {
        let e = crate::grid::Id::parse("a\u{1b}b").unwrap_err();
        assert_eq!(
            untrusted(&e.to_string()),
            "contains '\\u{1b}'; only letters, digits, '.', '_' and '-' are allowed"
        );
        let e = crate::grid::Id::parse("\\x").unwrap_err();
        assert_eq!(
            untrusted(&e.to_string()),
            "must start with a letter or digit, not '\\\\'"
        );
    }
    use crate::escape::unescape;

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
            // Shown again, only its own backslashes would change.
            proptest::prop_assert_eq!(crate::escape::line(&e).into_owned(), e.replace('\\', "\\\\"));
            proptest::prop_assert!(!e.contains(FENCE));
            proptest::prop_assert_eq!(unescape(&e), s);
        }
    }
}
