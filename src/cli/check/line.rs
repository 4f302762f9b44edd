//! One line of `check`'s output, its verdict, and the exit code of them all.

/// How one check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    Warn,
    /// Broken; the worker could still be restarted and succeed later.
    Fail,
    /// Broken until someone edits the configuration or the host.
    FailConfig,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub verdict: Verdict,
    pub what: &'static str,
    pub detail: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tag = match self.verdict {
            Verdict::Ok => "ok  ",
            Verdict::Warn => "WARN",
            Verdict::Fail | Verdict::FailConfig => "FAIL",
        };
        // A detail quotes what the remote, git or a stored policy said: one
        // line, escaped. The configuration's own error (TOML's points at
        // the value) keeps its lines, each escaped, indented under it.
        let detail = match self.verdict {
            Verdict::FailConfig => self
                .detail
                .lines()
                .map(crate::escape::line)
                .collect::<Vec<_>>()
                .join("\n              "),
            _ => crate::escape::line(&self.detail).into_owned(),
        };
        write!(f, "{tag} {:<8} {detail}", self.what)
    }
}

/// Exit code for the worst verdict.
pub fn exit_code(lines: &[Line]) -> u8 {
    match lines.iter().map(|l| l.verdict).max() {
        None | Some(Verdict::Ok) | Some(Verdict::Warn) => 0,
        Some(Verdict::Fail) => 1,
        Some(Verdict::FailConfig) => crate::cli::EXIT_CONFIG,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// TOML's error points at the value on lines of its own: printed
    /// escaped on one line, it read as `\n  |\n3 | ...`. What the remote or
    /// git said stays one line: a line it makes up must not read as a check.
    #[test]
    fn a_configuration_error_keeps_its_lines_and_only_it() {
        let detail = "c.toml: TOML parse error at line 3\n  |\n3 | x = \"a\u{1b}\"\n".to_owned();
        let shown = |verdict| {
            Line {
                verdict,
                what: "config",
                detail: detail.clone(),
            }
            .to_string()
        };
        let config = shown(Verdict::FailConfig);
        let lines: Vec<&str> = config.lines().collect();
        assert_eq!(lines.len(), 3, "{config}");
        assert!(lines[0].starts_with("FAIL config   c.toml: TOML parse error"));
        assert!(lines[1..].iter().all(|l| l.starts_with("              ")));
        assert!(!config.contains('\u{1b}'), "each line escaped: {config:?}");
        assert_eq!(shown(Verdict::Fail).lines().count(), 1);
    }
}
