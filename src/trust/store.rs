//! The policy a node holds, in its state directory
//! (`<state_dir>/trust/policy.json`): the exact file it last accepted. Its
//! version is the floor below which no policy is taken again, across
//! restarts, whatever the grid says.

use std::io::Write;
use std::path::{Path, PathBuf};

pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("trust").join("policy.json")
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct StoreError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// The stored policy file, if any.
pub fn load(state_dir: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let p = path(state_dir);
    match std::fs::read(&p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError { path: p, source }),
    }
}

/// Store an accepted policy: written to a temporary file, synced, renamed
/// over the old one, and the directory synced, so that a crash leaves the
/// old file or the new one, never half of one.
pub fn save(state_dir: &Path, file: &[u8]) -> Result<(), StoreError> {
    let p = path(state_dir);
    let dir = p.parent().expect("the path has a directory").to_owned();
    let err = |source| StoreError {
        path: p.clone(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(err)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(err)?;
    tmp.write_all(file).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(&p).map_err(|e| err(e.error))?;
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_policy_is_loaded_back_and_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), None);
        save(dir.path(), b"v1").unwrap();
        save(dir.path(), b"v2").unwrap();
        assert_eq!(load(dir.path()).unwrap().as_deref(), Some(&b"v2"[..]));
        let leftovers = std::fs::read_dir(dir.path().join("trust")).unwrap().count();
        assert_eq!(leftovers, 1);
    }
}
