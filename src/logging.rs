//! Logging through `tracing`: to journald when systemd runs us (stderr is
//! connected to the journal), otherwise human-readable lines on stderr.
//!
//! Fields go to the journal as they are named, upper-cased and without a
//! prefix, and every entry carries `NODE_ID`, so that
//! `journalctl -u dgrid-worker NODE_ID=n1 TASK_ID=t1` finds a task's story.

use std::io::IsTerminal;
use std::os::unix::fs::MetadataExt;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::prelude::*;

/// Is stderr the journal? systemd sets `JOURNAL_STREAM=<dev>:<ino>` for a
/// service whose output goes to the journal; comparing with stderr's own
/// device and inode tells a child whose stderr was redirected elsewhere.
pub fn stderr_is_journal() -> bool {
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}

/// Install the global subscriber. `node_id` is attached to every journal
/// entry. Safe to call once; later calls are ignored.
pub fn init(level: &str, node_id: Option<&str>) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    if stderr_is_journal()
        && let Ok(layer) = tracing_journald::layer()
    {
        let layer = layer
            .with_field_prefix(None)
            .with_syslog_identifier("dgrid-worker".into())
            .with_custom_fields(node_id.map(|n| ("NODE_ID", n.as_bytes().to_vec())));
        let _ = tracing_subscriber::registry()
            .with(filter)
            .with(layer)
            .try_init();
        return;
    }
    // Colours only for a person at a terminal: in a log file or a pipe
    // the escape codes are noise around every level and field name.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
