//! What the two pages this crate serves share, the dashboard
//! (`tools::html`) and the worker's status page (`status`): escaping of
//! every value that reaches HTML, and one style sheet.

/// Text for HTML element content and attribute values: shown by the
/// crate's one rule for grid text ([`crate::escape::line`]: no control,
/// invisible or bidirectional character survives), then HTML-escaped.
pub fn escape(s: &str) -> String {
    markup(&crate::escape::line(s))
}

/// [`escape`] for a block of lines (a `<pre>`): its newlines and tabs stay.
pub fn escape_block(s: &str) -> String {
    markup(&crate::escape::lines(s))
}

fn markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}\
table{border-collapse:collapse;background:#fff;min-width:40%}\
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}\
th{background:#eee}.ok{color:#186a18}.bad{color:#a31515}.warn{color:#8a5a00}\
.cards{display:flex;gap:1em;flex-wrap:wrap}.card{background:#fff;border:1px solid #ddd;padding:.6em 1em}\
.card b{display:block;font-size:1.6em}pre{margin:0;white-space:pre-wrap;max-width:60em;font-size:12px}\
.muted{color:#777}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_hostile_characters_are_both_made_text() {
        let evil = "<b a='1'>&\"\u{1b}[31m\u{7}\u{202e}\u{2028}\n";
        assert_eq!(
            escape(evil),
            "&lt;b a=&#39;1&#39;&gt;&amp;&quot;\\u{1b}[31m\\u{7}\\u{202e}\\u{2028}\\n"
        );
        assert_eq!(
            escape_block(evil),
            "&lt;b a=&#39;1&#39;&gt;&amp;&quot;\\u{1b}[31m\\u{7}\\u{202e}\\u{2028}\n"
        );
        for out in [escape(evil), escape_block(evil)] {
            assert!(
                !out.chars()
                    .any(|c| matches!(c, '\u{1b}' | '\u{7}' | '\u{202e}' | '\u{2028}')),
                "{out:?}"
            );
        }
    }
}
