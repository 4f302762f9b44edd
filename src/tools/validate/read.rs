//! Reading a file named on the command line (a task, a script, a task
//! file for `submit`), bounded: only a regular file, and only up to a cap,
//! checked on the file as opened.

use std::path::Path;

/// Why a file given on the command line was not read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    #[error("is {size} bytes; at most {max} are allowed")]
    TooLarge { size: u64, max: u64 },
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
}

/// Read a file named on the command line, bounded: only a regular file
/// (a FIFO would block for ever, `/dev/zero` never end), and only if it is
/// at most `cap` bytes. Opened without blocking and checked on the opened
/// file itself, so nothing swapped in between the check and the read gets
/// read instead.
pub fn read_regular(path: &Path, cap: u64) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        None
    } else if ft.is_dir() {
        Some("directory")
    } else if ft.is_fifo() {
        Some("FIFO")
    } else if ft.is_char_device() {
        Some("character device")
    } else if ft.is_block_device() {
        Some("block device")
    } else if ft.is_socket() {
        Some("socket")
    } else {
        Some("special file")
    };
    if let Some(kind) = kind {
        return Err(ReadError::NotRegular(kind));
    }
    if meta.len() > cap {
        return Err(ReadError::TooLarge {
            size: meta.len(),
            max: cap,
        });
    }
    // The file may grow while it is read: never take more than the cap.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(ReadError::TooLarge {
            size: bytes.len() as u64,
            max: cap,
        });
    }
    Ok(bytes)
}
