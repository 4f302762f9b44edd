//! One value of the configuration, read and checked: a number, an engine,
//! an address, a file that must be readable, the default node id. Kept
//! apart from `mod.rs`, which puts the file and the environment together.

use std::num::NonZeroU32;
use std::path::Path;

use toml::Spanned;

use super::ConfigError;
use crate::grid::Id;
use crate::grid::node::MAX_SLOTS;
use crate::sandbox::{EngineKind, Limits};

/// A file setting must name a file this process can read now: found at
/// start, not at the first fetch. A private key that others may read is
/// refused too, as ssh itself would refuse it (less clearly, and later).
pub(super) fn check_readable(key: &str, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown}: is not a file"));
    }
    std::fs::File::open(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    let mode = meta.permissions().mode() & 0o777;
    // ssh's own rule: a key of ours that group or others may read.
    let ours = std::os::unix::fs::MetadataExt::uid(&meta) == nix::unistd::getuid().as_raw();
    if key == "git.ssh_key_file" && ours && mode & 0o077 != 0 {
        return Err(format!(
            "{shown}: others may read this private key (mode {mode:o}), and ssh refuses such a key: chmod 600 it"
        ));
    }
    Ok(())
}

/// `host:port`, or `""`/`off` for no status page.
pub(super) fn parse_listen(v: &str) -> Result<Option<std::net::SocketAddr>, String> {
    let v = v.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        format!("is {v:?}; expected an address and port such as 127.0.0.1:8000, or \"off\"")
    })
}

pub(super) fn parse_positive(var: &'static str, v: &str) -> Result<u64, ConfigError> {
    match v.trim().parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(ConfigError::Env {
            var,
            reason: format!("expected a whole number above 0, got {v:?}"),
        }),
    }
}

/// `concurrency` (or `DGRID_CONCURRENCY`): from 1 to
/// [`MAX_SLOTS`], as the node's record lists what each slot runs and
/// peers read a record only up to a cap. `at` turns the file's span into
/// "file, line N".
pub(super) fn concurrency(
    env: Option<String>,
    file: Option<Spanned<NonZeroU32>>,
    at: &dyn Fn(std::ops::Range<usize>) -> String,
) -> Result<u32, ConfigError> {
    let too_many = |n: u64| {
        format!(
            "is {n}; at most {MAX_SLOTS} slots are allowed (the node's record lists what each runs, and peers read it only up to {} KiB)",
            crate::grid::layout::MAX_NODE_RECORD_BYTES / 1024
        )
    };
    match (env, file) {
        (Some(v), _) => match parse_positive("DGRID_CONCURRENCY", &v)? {
            n if n > u64::from(MAX_SLOTS) => Err(ConfigError::Env {
                var: "DGRID_CONCURRENCY",
                reason: too_many(n),
            }),
            n => Ok(n as u32),
        },
        (None, Some(n)) if n.get_ref().get() > MAX_SLOTS => Err(ConfigError::Invalid {
            origin: at(n.span()),
            key: "concurrency",
            reason: too_many(n.get_ref().get().into()),
        }),
        (None, Some(n)) => Ok(n.into_inner().get()),
        (None, None) => Ok(super::defaults::CONCURRENCY),
    }
}

pub(super) fn parse_engine(v: &str) -> Result<EngineKind, ConfigError> {
    match v {
        "auto" => Ok(EngineKind::Auto),
        "podman" => Ok(EngineKind::Podman),
        "docker" => Ok(EngineKind::Docker),
        "shell" => Ok(EngineKind::Shell),
        _ => Err(ConfigError::Env {
            var: "DGRID_ENGINE",
            reason: format!("expected auto, podman, docker or shell, got {v:?}"),
        }),
    }
}

/// The host name, made into a valid id: a node that is not named explicitly
/// is named after its machine.
pub(super) fn default_node_id() -> Id {
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default();
    let cleaned: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .skip_while(|c| !c.is_ascii_alphanumeric())
        .take(crate::grid::id::MAX_LEN)
        .collect();
    Id::parse(&cleaned).unwrap_or_else(|_| Id::parse("node").expect("a literal id"))
}

/// The sandbox's limits, each within what the engines accept: podman
/// refuses a memory limit under 6 MB and a CPU quota under 1 ms a 100 ms
/// period, and a value past these bounds overflows their arithmetic; every
/// task would then fail as the engine's, and the node go unhealthy.
/// `output_limit_bytes` keeps a result (both streams, each byte escaped
/// as up to six in JSON) under the 1 MiB a reader reads of it.
pub(super) fn sandbox_limits(
    file: &super::file::SandboxFile,
    origin: &str,
) -> Result<Limits, ConfigError> {
    let default = Limits::default();
    let out_of = |key: &'static str, value: String, range: &str| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        reason: format!("is {value}; it must be {range}"),
    };
    let cpus = file.cpus.unwrap_or(default.cpus);
    if !(0.01..=1024.0).contains(&cpus) {
        return Err(out_of(
            "sandbox.cpus",
            cpus.to_string(),
            "from 0.01 to 1024",
        ));
    }
    let memory_mb = file.memory_mb.map_or(default.memory_mb, |n| n.get());
    if !(MIN_MEMORY_MB..=MAX_MEMORY_MB).contains(&memory_mb) {
        let range = format!("from {MIN_MEMORY_MB} to {MAX_MEMORY_MB} (MB)");
        return Err(out_of("sandbox.memory_mb", memory_mb.to_string(), &range));
    }
    let pids = file.pids_limit.map_or(default.pids, |n| n.get());
    if pids > MAX_PIDS {
        let range = format!("at most {MAX_PIDS} (the kernel's own limit)");
        return Err(out_of("sandbox.pids_limit", pids.to_string(), &range));
    }
    let output = file
        .output_limit_bytes
        .map_or(default.output_bytes as u64, |n| n.get());
    if output > MAX_OUTPUT_BYTES {
        let range = format!("at most {MAX_OUTPUT_BYTES}, so that a result stays readable (1 MiB)");
        return Err(out_of(
            "sandbox.output_limit_bytes",
            output.to_string(),
            &range,
        ));
    }
    Ok(Limits {
        memory_mb,
        cpus,
        pids,
        output_bytes: output as usize,
    })
}

const MIN_MEMORY_MB: u64 = 6;
const MAX_MEMORY_MB: u64 = 1 << 20;
const MAX_PIDS: u32 = 4_194_304;
pub const MAX_OUTPUT_BYTES: u64 = 64 * 1024;

/// A `log_level` is a level (`info`), or directives `target=level`
/// separated by commas; a bare word that is no level is a target to
/// `tracing`, and logs nothing at all: refused, as the typo it is.
pub(super) fn check_log_level(v: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    tracing_subscriber::EnvFilter::try_new(v).map_err(|e| e.to_string())?;
    for directive in v.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let level = directive.rsplit_once('=').map_or(directive, |(_, l)| l);
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "{directive:?} is no level: one of {} (or target=level, comma-separated)",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}
