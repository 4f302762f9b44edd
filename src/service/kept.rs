//! The small files a node keeps in its state directory between runs
//! (`worker/kept_pace.rs`, `worker/kept_budget.rs`, the peers' newest
//! heartbeats of `sync/records.rs`): hints for its next start, read only
//! from a regular file and no larger than they are ever written, and
//! written whole, then renamed into place. Not synced: a write lost in a power cut costs the next start its
//! hint, as no file at all would.

use std::io::{Read, Write};
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The file `name` in `state_dir`, as `T`: none if there is no such file;
/// an error (the file and why) if it cannot be read, is over `max_bytes`
/// or is not a `T`, for the caller to log and go on without it.
pub(super) fn read<T: DeserializeOwned>(
    state_dir: &Path,
    name: &str,
    max_bytes: u64,
) -> Result<Option<T>, String> {
    let path = state_dir.join(name);
    let mut bytes = Vec::new();
    let read = open_file(&path).and_then(|f| f.take(max_bytes + 1).read_to_end(&mut bytes));
    let why = match read {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => e.to_string(),
        Ok(_) if bytes.len() as u64 > max_bytes => format!("more than {max_bytes} bytes"),
        Ok(_) => match serde_json::from_slice::<T>(&bytes) {
            Ok(t) => return Ok(Some(t)),
            Err(e) => e.to_string(),
        },
    };
    Err(format!("{}: {why}", path.display()))
}

/// `path` opened to read, if it is a regular file. Opened without
/// waiting and checked once open, so that a FIFO put in a kept file's
/// place is refused rather than waited on for ever (a plain open of a
/// FIFO blocks until a writer comes), and nothing can be swapped in
/// between the check and the open.
pub(super) fn open_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    match file.metadata()?.is_file() {
        true => Ok(file),
        false => Err(std::io::Error::other("is not a regular file")),
    }
}

/// Write `value` as the file `name` in `state_dir`: whole, then renamed
/// into place. An error names the file.
pub(super) fn write<T: Serialize>(state_dir: &Path, name: &str, value: &T) -> Result<(), String> {
    let bytes = serde_json::to_vec(value)
        .map_err(|e| format!("{}: {e}", state_dir.join(name).display()))?;
    write_bytes(state_dir, name, &bytes)
}

/// Write `bytes` as the file `name` in `state_dir` (a path below it; its
/// directory made if need be): whole, then renamed into place. An error
/// names the file.
pub(super) fn write_bytes(state_dir: &Path, name: &str, bytes: &[u8]) -> Result<(), String> {
    let path = state_dir.join(name);
    let dir = path.parent().unwrap_or(state_dir);
    std::fs::create_dir_all(dir)
        .and_then(|_| tempfile::NamedTempFile::new_in(dir))
        .and_then(|mut tmp| {
            tmp.write_all(bytes)?;
            tmp.persist(&path).map_err(|e| e.error)
        })
        .map(drop)
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_or_a_directory_in_a_kept_files_place_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "pace.json", &5u32).unwrap();
        assert_eq!(read::<u32>(dir.path(), "pace.json", 64), Ok(Some(5)));
        assert_eq!(read::<u32>(dir.path(), "none.json", 64), Ok(None));

        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("budget.json"))
            .status()
            .unwrap();
        assert!(made.success());
        std::fs::create_dir(dir.path().join("dir.json")).unwrap();
        for name in ["budget.json", "dir.json"] {
            let err = read::<u32>(dir.path(), name, 64).unwrap_err();
            assert!(err.contains(name), "{err}");
            assert!(err.contains("is not a regular file"), "{err}");
        }
    }
}
