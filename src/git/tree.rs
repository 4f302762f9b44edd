//! What a tree holds, as the rest of the crate sees it: object ids, entry
//! modes and entries. Read by `repo` (from `ls-tree`) and written by
//! `edits` (into a `fast-import` stream).

/// A 40- (or 64-) hex-digit object id.
pub type Oid = String;

/// The modes git stores in trees, as the grid cares about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryMode {
    File,
    Executable,
    Symlink,
    Tree,
    Submodule,
}

impl EntryMode {
    pub(super) fn parse(mode: &str) -> Option<EntryMode> {
        Some(match mode {
            "100644" => EntryMode::File,
            "100755" => EntryMode::Executable,
            "120000" => EntryMode::Symlink,
            "040000" => EntryMode::Tree,
            "160000" => EntryMode::Submodule,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EntryMode::File => "100644",
            EntryMode::Executable => "100755",
            EntryMode::Symlink => "120000",
            EntryMode::Tree => "040000",
            EntryMode::Submodule => "160000",
        }
    }
}

/// One entry of a tree. Names are bytes: git allows any byte but `/` and
/// NUL, and a hostile name must be deleted exactly as it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeEntry {
    pub mode: EntryMode,
    pub oid: Oid,
    pub name: Vec<u8>,
}

impl TreeEntry {
    pub fn name_lossy(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}
