//! Labels and classes: what a node has (`gpu`, `arch=arm64`) and what a
//! task requires.
//!
//! A task's `requires` is a set of labels; the set, sorted, is its *class*,
//! and the class names a directory of the queue (`gpu+arch=arm64` is
//! written `arch=arm64+gpu`; no label at all is `any`), so that a node
//! lists classes, not tasks, to find what it can serve. Labels are
//! therefore held to an alphabet that is safe in a path on every file
//! system a grid is checked out on: lower case (two classes that differ in
//! case would be one directory on macOS), no `/`, no `+` (the separator).

use std::collections::BTreeSet;
use std::fmt;

/// The longest label.
pub const MAX_LABEL_LEN: usize = 64;
/// The most labels one task may require.
pub const MAX_REQUIRES: usize = 8;
/// The longest class directory name: well under the 255 bytes file systems
/// allow in one name.
pub const MAX_CLASS_LEN: usize = 200;
/// The class of a task that requires nothing, as a directory name. Never a
/// label.
pub const ANY: &str = "any";
/// Between the labels of a class's directory name.
pub const CLASS_SEP: char = '+';

/// One label: `name` or `key=value`, of lower-case letters, digits, `.`,
/// `_` and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Label(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long; at most {MAX_LABEL_LEN} are allowed")]
    TooLong(usize),
    #[error("must start with a lower-case letter or a digit, not {0:?}")]
    BadStart(char),
    #[error(
        "contains {0:?}; a label is lower-case letters, digits, '.', '_' and '-', with at most one '=' (as in arch=arm64)"
    )]
    BadChar(char),
    #[error("has nothing after '='")]
    EmptyValue,
    #[error("is reserved: `any` names the class of tasks that require nothing")]
    Reserved,
}

fn label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
}

impl Label {
    pub fn parse(s: &str) -> Result<Label, LabelError> {
        let first = s.chars().next().ok_or(LabelError::Empty)?;
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(LabelError::BadStart(first));
        }
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (s, None),
        };
        if let Some(bad) = key.chars().find(|c| !label_char(*c)) {
            return Err(LabelError::BadChar(bad));
        }
        match value {
            Some("") => return Err(LabelError::EmptyValue),
            Some(v) => {
                if let Some(bad) = v.chars().find(|c| !label_char(*c)) {
                    return Err(LabelError::BadChar(bad));
                }
            }
            None => {}
        }
        if s.len() > MAX_LABEL_LEN {
            return Err(LabelError::TooLong(s.len()));
        }
        if s == ANY {
            return Err(LabelError::Reserved);
        }
        Ok(Label(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of labels: what a task requires (its class), or what a node has.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class(BTreeSet<Label>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClassError {
    #[error("label {label:?} {reason}")]
    Label { label: String, reason: LabelError },
    #[error("lists {0:?} twice")]
    Duplicate(String),
    #[error("holds {0} labels; at most {MAX_REQUIRES} are allowed")]
    TooMany(usize),
    #[error("makes a class name of {0} bytes; at most {MAX_CLASS_LEN} are allowed")]
    TooLong(usize),
    #[error("its labels must be sorted, each once, joined by '+'")]
    NotCanonical,
}

impl Class {
    /// The class of nothing required.
    pub fn any() -> Class {
        Class::default()
    }

    /// A task's `requires`: each a label, none twice, at most
    /// [`MAX_REQUIRES`], and a directory name of at most [`MAX_CLASS_LEN`].
    pub fn from_labels<'a>(labels: impl IntoIterator<Item = &'a str>) -> Result<Class, ClassError> {
        let mut set = BTreeSet::new();
        for s in labels {
            let label = Label::parse(s).map_err(|reason| ClassError::Label {
                label: s.to_owned(),
                reason,
            })?;
            if !set.insert(label) {
                return Err(ClassError::Duplicate(s.to_owned()));
            }
        }
        if set.len() > MAX_REQUIRES {
            return Err(ClassError::TooMany(set.len()));
        }
        let class = Class(set);
        let len = class.dir_name().len();
        if len > MAX_CLASS_LEN {
            return Err(ClassError::TooLong(len));
        }
        Ok(class)
    }

    /// A set of labels with no limit on how many (a node's).
    pub fn of(labels: impl IntoIterator<Item = Label>) -> Class {
        Class(labels.into_iter().collect())
    }

    /// The directory name: the labels sorted, joined by `+`; `any` for none.
    pub fn dir_name(&self) -> String {
        if self.0.is_empty() {
            return ANY.to_owned();
        }
        self.0
            .iter()
            .map(Label::as_str)
            .collect::<Vec<_>>()
            .join(&CLASS_SEP.to_string())
    }

    /// Read a class back from its directory name; only the canonical form
    /// (what [`Class::dir_name`] writes) is a class, so that one class is
    /// one directory.
    pub fn parse_dir(name: &str) -> Result<Class, ClassError> {
        if name == ANY {
            return Ok(Class::any());
        }
        let class = Class::from_labels(name.split(CLASS_SEP))?;
        if class.dir_name() != name {
            return Err(ClassError::NotCanonical);
        }
        Ok(class)
    }

    pub fn labels(&self) -> impl Iterator<Item = &Label> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, label: &Label) -> bool {
        self.0.contains(label)
    }

    /// The labels of `self` that `other` lacks.
    pub fn missing_from<'a>(&'a self, other: &'a Class) -> impl Iterator<Item = &'a Label> {
        self.0.difference(&other.0)
    }

    /// As people read it: `gpu, arch=arm64`, or `nothing`.
    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            return "nothing".to_owned();
        }
        self.0
            .iter()
            .map(Label::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.dir_name())
    }
}

/// The `arch=` label of the machine the worker runs on, with the names
/// container images use (`amd64`, `arm64`), not Rust's.
pub fn arch_label() -> Label {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    Label::parse(&format!("arch={arch}")).expect("architecture names are labels")
}

/// The `os=` label of the machine the worker runs on.
pub fn os_label() -> Label {
    Label::parse(&format!("os={}", std::env::consts::OS)).expect("OS names are labels")
}

/// Why a configured label cannot be one, if it names a key the node
/// detects (`arch=`, `os=`, `engine=`) with another value than detected:
/// the node would claim the tasks that ask for it and run them as it is
/// (a task that asks for `arch=arm64` run on amd64, one that asks for
/// `engine=docker` run by the shell engine). `engine`: the engine's name,
/// as configured or as found at start; none where it is not known yet
/// (`auto`, before the start looks): an `engine=` label is then left to
/// the start to judge.
pub fn against_detected(label: &Label, engine: Option<&str>) -> Option<String> {
    let (key, _) = label.as_str().split_once('=')?;
    let detected = match key {
        "arch" => arch_label(),
        "os" => os_label(),
        "engine" => Label::parse(&format!("engine={}", engine?)).ok()?,
        _ => return None,
    };
    (detected != *label).then(|| {
        format!(
            "label {:?} says another value than the node detects ({}): it would claim tasks for a machine it is not; {key}= labels are detected, not configured",
            label.as_str(),
            detected.as_str()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_configured_label_must_say_what_the_node_detects_of_its_key() {
        let l = |s: &str| Label::parse(s).unwrap();
        let other_arch = if arch_label().as_str() == "arch=arm64" {
            "arch=amd64"
        } else {
            "arch=arm64"
        };
        let e = against_detected(&l(other_arch), Some("shell")).unwrap();
        assert!(
            e.contains(other_arch) && e.contains(arch_label().as_str()),
            "{e}"
        );
        assert!(against_detected(&l("os=windows"), None).is_some());
        assert!(against_detected(&l("engine=docker"), Some("shell")).is_some());
        assert_eq!(
            against_detected(&l("engine=podman"), None),
            None,
            "the engine is not known yet"
        );
        for ok in [
            arch_label(),
            os_label(),
            l("engine=shell"),
            l("gpu"),
            l("zone=eu"),
        ] {
            assert_eq!(against_detected(&ok, Some("shell")), None, "{ok:?}");
        }
    }

    #[test]
    fn labels_are_lower_case_names_or_key_value_pairs() {
        for ok in [
            "gpu",
            "arch=arm64",
            "os=linux",
            "cuda-12.2",
            "zone=eu_west.1",
            "9",
        ] {
            assert_eq!(Label::parse(ok).unwrap().as_str(), ok);
        }
        assert_eq!(Label::parse(""), Err(LabelError::Empty));
        assert_eq!(Label::parse("GPU"), Err(LabelError::BadStart('G')));
        assert_eq!(Label::parse("gPu"), Err(LabelError::BadChar('P')));
        assert_eq!(Label::parse("a/b"), Err(LabelError::BadChar('/')));
        assert_eq!(Label::parse("a+b"), Err(LabelError::BadChar('+')));
        assert_eq!(Label::parse("a=b=c"), Err(LabelError::BadChar('=')));
        assert_eq!(Label::parse("arch="), Err(LabelError::EmptyValue));
        assert_eq!(Label::parse("-x"), Err(LabelError::BadStart('-')));
        assert_eq!(Label::parse("any"), Err(LabelError::Reserved));
        assert_eq!(Label::parse(&"x".repeat(65)), Err(LabelError::TooLong(65)));
        assert!(Label::parse("anything").is_ok());
    }

    #[test]
    fn a_class_is_the_sorted_set_and_one_directory() {
        let c = Class::from_labels(["gpu", "arch=arm64"]).unwrap();
        assert_eq!(c.dir_name(), "arch=arm64+gpu");
        assert_eq!(Class::parse_dir("arch=arm64+gpu").unwrap(), c);
        assert_eq!(
            Class::parse_dir("gpu+arch=arm64"),
            Err(ClassError::NotCanonical),
            "one class, one directory"
        );
        assert_eq!(Class::parse_dir("any").unwrap(), Class::any());
        assert_eq!(Class::any().dir_name(), "any");
        assert!(Class::parse_dir("").is_err());
        assert!(Class::parse_dir("gpu++x").is_err());
        assert_eq!(
            Class::from_labels(["gpu", "gpu"]),
            Err(ClassError::Duplicate("gpu".into()))
        );
        let nine: Vec<String> = (0..9).map(|i| format!("l{i}")).collect();
        assert_eq!(
            Class::from_labels(nine.iter().map(String::as_str)),
            Err(ClassError::TooMany(9))
        );
        let long: Vec<String> = (0..4).map(|i| format!("{i}{}", "x".repeat(60))).collect();
        assert!(matches!(
            Class::from_labels(long.iter().map(String::as_str)),
            Err(ClassError::TooLong(_))
        ));
        let e = Class::from_labels(["Gpu"]).unwrap_err().to_string();
        assert!(e.contains("\"Gpu\"") && e.contains("lower-case"), "{e}");
    }

    #[test]
    fn missing_labels_are_named() {
        let task = Class::from_labels(["gpu", "arch=arm64"]).unwrap();
        let node = Class::from_labels(["arch=arm64", "os=linux"]).unwrap();
        let lacks: Vec<&str> = task.missing_from(&node).map(Label::as_str).collect();
        assert_eq!(lacks, ["gpu"]);
        assert_eq!(task.describe(), "arch=arm64, gpu");
        assert_eq!(Class::any().describe(), "nothing");
    }

    #[test]
    fn the_machine_has_arch_and_os_labels() {
        assert!(arch_label().as_str().starts_with("arch="));
        assert_eq!(os_label().as_str(), format!("os={}", std::env::consts::OS));
    }
}
