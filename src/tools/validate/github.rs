//! A finding as a GitHub Actions `::error` annotation on the pull
//! request's file, escaped so that a file name or a reason from the pull
//! request cannot break out of it.

use super::Finding;
use crate::tools::escape::untrusted;

/// A GitHub Actions `::error` annotation for a finding. File names come from
/// a pull request: they are escaped by the one rule for grid text
/// (`escape::untrusted`: no line break, no control character survives),
/// then encoded as the runner documents for its properties and data.
pub fn github_annotation(f: &Finding) -> String {
    let title = match f.field {
        Some(field) => format!("invalid task: {field}"),
        None => "invalid task".to_owned(),
    };
    annotation("error", &title, f)
}

/// A GitHub Actions `::warning` annotation for a warning about a valid
/// task (a field it keeps but probably did not mean), escaped alike.
pub fn github_warning(f: &Finding) -> String {
    annotation("warning", "task field kept as it is", f)
}

fn annotation(level: &str, title: &str, f: &Finding) -> String {
    fn data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn property(s: &str) -> String {
        data(s).replace(':', "%3A").replace(',', "%2C")
    }
    format!(
        "::{level} file={},title={}::{}",
        property(&untrusted(&f.path.to_string_lossy())),
        property(title),
        data(&untrusted(&f.reason))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_cannot_be_broken_out_of() {
        let f = Finding {
            path: "tasks/queue/a,b:c%\n::stop-commands::x.json".into(),
            field: Some("script"),
            reason: "bad\n::add-mask::x".into(),
        };
        let a = github_annotation(&f);
        assert_eq!(a.lines().count(), 1, "{a}");
        assert!(
            a.starts_with("::error file=tasks/queue/a%2Cb%3Ac%25\\n%3A%3Astop-commands"),
            "{a}"
        );
        assert!(a.ends_with("::bad\\n::add-mask::x"), "{a}");
        let w = github_warning(&f);
        assert_eq!(w.lines().count(), 1, "{w}");
        assert!(
            w.starts_with("::warning file=tasks/queue/a%2Cb%3Ac%25"),
            "{w}"
        );
        // The plain line printed before it is one line too.
        let line = f.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(!line.contains('\n'));
    }
}
