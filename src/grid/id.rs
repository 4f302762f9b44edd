//! Task and node identifiers.
//!
//! Both end up in file names, container names and commit messages, so they
//! are held to `^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`: no path separators, no
//! leading dot or dash, nothing a shell or an engine would read specially.

use std::fmt;

use serde::{Deserialize, Serialize};

pub const MAX_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long; at most {MAX_LEN} are allowed")]
    TooLong(usize),
    #[error("must start with a letter or digit, not '{0}'")]
    BadStart(char),
    #[error("contains '{0}'; only letters, digits, '.', '_' and '-' are allowed")]
    BadChar(char),
}

impl Id {
    pub fn parse(s: &str) -> Result<Id, IdError> {
        let mut chars = s.chars();
        let first = chars.next().ok_or(IdError::Empty)?;
        if !first.is_ascii_alphanumeric() {
            return Err(IdError::BadStart(first));
        }
        if let Some(bad) =
            chars.find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(IdError::BadChar(bad));
        }
        if s.len() > MAX_LEN {
            return Err(IdError::TooLong(s.len()));
        }
        Ok(Id(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;
    fn try_from(s: String) -> Result<Id, IdError> {
        Id::parse(&s)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// The stem of a file's name, if it is a `.json` name: where an entry's
/// id (or, for a bad entry, what stands in its place) is read from.
pub fn json_stem(name: &str) -> Option<&str> {
    name.strip_suffix(".json").filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for ok in ["a", "demo-task-001", "A.b_c-9", &"x".repeat(64)] {
            assert!(Id::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_paths_and_specials_with_a_reason() {
        assert_eq!(Id::parse(""), Err(IdError::Empty));
        assert_eq!(Id::parse("../x"), Err(IdError::BadStart('.')));
        assert_eq!(Id::parse("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(Id::parse("-rf"), Err(IdError::BadStart('-')));
        assert_eq!(Id::parse("a b"), Err(IdError::BadChar(' ')));
        assert_eq!(Id::parse("é"), Err(IdError::BadStart('é')));
        assert_eq!(Id::parse(&"x".repeat(65)), Err(IdError::TooLong(65)));
    }
}
