//! Reading a child's output with a cap.
//!
//! A task may write gigabytes; the grid keeps only the first few kilobytes of
//! each stream. The reader must still drain the pipe to its end, or the task
//! would block on a full pipe and look like it hung.

use std::io::{self, Read};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

/// What was kept of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub text: String,
    /// More bytes arrived than were kept, or reading stopped before the end.
    pub truncated: bool,
}

/// The bytes kept so far and whether any were dropped.
#[derive(Debug, Default)]
struct Buffer {
    kept: Vec<u8>,
    cap: usize,
    dropped: bool,
}

impl Buffer {
    fn new(cap: usize) -> Self {
        Buffer {
            // Small caps are the norm; large ones should not be allocated up
            // front for tasks that print nothing.
            kept: Vec::with_capacity(cap.min(64 * 1024)),
            cap,
            dropped: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        let room = self.cap.saturating_sub(self.kept.len());
        let take = room.min(chunk.len());
        self.kept.extend_from_slice(&chunk[..take]);
        if take < chunk.len() {
            self.dropped = true;
        }
    }

    fn captured(&self, cut_short: bool) -> Captured {
        Captured {
            text: String::from_utf8_lossy(&self.kept).into_owned(),
            truncated: self.dropped || cut_short,
        }
    }
}

/// Read `reader` to its end, keeping at most `cap` bytes. Read errors end the
/// stream: a child's pipe that breaks has nothing more to say.
pub fn read_capped<R: Read>(mut reader: R, cap: usize) -> Captured {
    let mut buf = Buffer::new(cap);
    drain(&mut reader, |chunk| buf.push(chunk));
    buf.captured(false)
}

fn drain<R: Read>(reader: &mut R, mut sink: impl FnMut(&[u8])) {
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => sink(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

/// A stream being read by its own thread, keeping at most `cap` bytes.
///
/// One thread per stream, because reading stdout to its end before stderr
/// would deadlock on a child that fills its stderr pipe first.
pub struct CappedOutput {
    buffer: Arc<Mutex<Buffer>>,
    done: Receiver<()>,
}

impl CappedOutput {
    /// Start reading `reader` in a new thread.
    pub fn spawn<R: Read + Send + 'static>(mut reader: R, cap: usize) -> io::Result<Self> {
        let buffer = Arc::new(Mutex::new(Buffer::new(cap)));
        let (tx, done) = mpsc::channel();
        let shared = Arc::clone(&buffer);
        thread::Builder::new()
            .name("capped-output".into())
            .spawn(move || {
                drain(&mut reader, |chunk| {
                    shared
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(chunk)
                });
                // The receiver may have given up waiting; nothing to do then.
                let _ = tx.send(());
            })?;
        Ok(CappedOutput { buffer, done })
    }

    /// Wait up to `grace` for the stream to end and return what was kept.
    ///
    /// The wait is bounded because a process that escaped the kill (or a
    /// daemonised grandchild) can hold the pipe open forever; then the text so
    /// far is returned, marked truncated, and the thread is left to drain the
    /// pipe until it closes.
    pub fn finish(self, grace: Duration) -> Captured {
        let cut_short = match self.done.recv_timeout(grace) {
            Ok(()) | Err(RecvTimeoutError::Disconnected) => false,
            Err(RecvTimeoutError::Timeout) => true,
        };
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .captured(cut_short)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Produces `len` bytes without ever holding them, to prove the reader
    /// does not buffer what it drops.
    struct Endless {
        left: usize,
        reads: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.left);
            buf[..n].fill(b'x');
            self.left -= n;
            self.reads += 1;
            Ok(n)
        }
    }

    #[test]
    fn short_stream_is_kept_whole() {
        let c = read_capped(&b"hello\n"[..], 10);
        assert_eq!(c.text, "hello\n");
        assert!(!c.truncated);
    }

    #[test]
    fn exactly_cap_bytes_is_not_truncated() {
        let c = read_capped(&b"0123456789"[..], 10);
        assert_eq!(c.text, "0123456789");
        assert!(!c.truncated);
    }

    #[test]
    fn long_stream_is_cut_at_cap_and_drained() {
        let mut src = Endless {
            left: 50 * 1024 * 1024,
            reads: 0,
        };
        let c = read_capped(&mut src, 10 * 1024);
        assert_eq!(c.text.len(), 10 * 1024);
        assert!(c.truncated);
        assert_eq!(
            src.left, 0,
            "the rest must be drained, not left in the pipe"
        );
    }

    #[test]
    fn zero_cap_keeps_nothing() {
        let c = read_capped(&b"abc"[..], 0);
        assert_eq!(c.text, "");
        assert!(c.truncated);
        assert_eq!(read_capped(&b""[..], 0), Captured::default());
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let c = read_capped(&[b'a', 0xff, b'b'][..], 10);
        assert_eq!(c.text, "a\u{fffd}b");
        // A cap that splits a multi-byte character leaves a replacement char.
        let c = read_capped("é".as_bytes(), 1);
        assert_eq!(c.text, "\u{fffd}");
        assert!(c.truncated);
    }

    #[test]
    fn threaded_reader_returns_capped_text() {
        let out = CappedOutput::spawn(
            Endless {
                left: 1 << 20,
                reads: 0,
            },
            100,
        )
        .unwrap();
        let c = out.finish(Duration::from_secs(5));
        assert_eq!(c.text, "x".repeat(100));
        assert!(c.truncated);
    }

    #[test]
    fn threaded_reader_gives_up_on_a_pipe_that_never_closes() {
        let (r, w) = std::io::pipe().unwrap();
        let (tx, rx) = mpsc::channel();
        // Write a little, then keep the write end open.
        thread::spawn(move || {
            let mut w = w;
            io::Write::write_all(&mut w, b"partial").unwrap();
            let _ = rx.recv();
            drop(w);
        });
        let out = CappedOutput::spawn(r, 100).unwrap();
        thread::sleep(Duration::from_millis(100));
        let c = out.finish(Duration::from_millis(100));
        assert_eq!(c.text, "partial");
        assert!(c.truncated, "a stream that did not end is marked cut short");
        let _ = tx.send(());
    }
}
