//! A new root tree from a set of path edits, touching only the directories
//! on the edited paths: `tasks/completed/` with 50,000 results is never
//! listed when a claim moves a file from `queue/` to `in_progress/`.

use std::collections::BTreeMap;

use super::command::GitError;
use super::repo::{EntryMode, GridRepo, Oid, TreeEntry};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Write this content (a regular file).
    Put(Vec<u8>),
    /// Remove the entry, whatever it is (file, symlink, directory).
    Delete,
}

/// Path (bytes, `/`-separated) to edit. Bytes, because hostile queue entries
/// must be deleted under exactly the name they were pushed with.
pub type Edits = BTreeMap<Vec<u8>, Edit>;

/// Apply `edits` to `base` (a tree id, or none for an empty grid) and return
/// the new tree, or `None` if nothing is left in it.
pub fn apply(repo: &GridRepo, base: Option<&str>, edits: &Edits) -> Result<Option<Oid>, GitError> {
    let mut entries: BTreeMap<Vec<u8>, TreeEntry> = match base {
        Some(tree) => repo
            .list_tree(tree)?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect(),
        None => BTreeMap::new(),
    };
    // Group the edits by their first path component.
    let mut groups: BTreeMap<Vec<u8>, Edits> = BTreeMap::new();
    for (path, edit) in edits {
        match path.iter().position(|b| *b == b'/') {
            None => match edit {
                Edit::Put(bytes) => {
                    let oid = repo.write_blob(bytes)?;
                    entries.insert(
                        path.clone(),
                        TreeEntry {
                            mode: EntryMode::File,
                            oid,
                            name: path.clone(),
                        },
                    );
                }
                Edit::Delete => {
                    entries.remove(path);
                }
            },
            Some(slash) => {
                groups
                    .entry(path[..slash].to_vec())
                    .or_default()
                    .insert(path[slash + 1..].to_vec(), edit.clone());
            }
        }
    }
    for (dir, sub_edits) in groups {
        let sub_base = entries
            .get(&dir)
            .filter(|e| e.mode == EntryMode::Tree)
            .map(|e| e.oid.clone());
        match apply(repo, sub_base.as_deref(), &sub_edits)? {
            Some(oid) => {
                entries.insert(
                    dir.clone(),
                    TreeEntry {
                        mode: EntryMode::Tree,
                        oid,
                        name: dir,
                    },
                );
            }
            None => {
                entries.remove(&dir);
            }
        }
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let list: Vec<TreeEntry> = entries.into_values().collect();
    repo.make_tree(&list).map(Some)
}
