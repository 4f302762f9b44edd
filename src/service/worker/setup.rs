//! What start-up puts together (the labels a node routes by, how its git
//! calls reach the grid), and the one check that a node id is this
//! worker's alone.
//!
//! A node id defaults to the host name, and volunteers' hosts are often
//! named alike (`debian`, a cloned image): two workers under one id each
//! took the other's claims for leftovers of its own crash and requeued
//! them at every reap, running tasks again and superseding results. So a
//! worker about to register reads its id's record: written recently by a
//! worker that has not stopped, and not by this state directory's last
//! run (`<state>/registered`, the `started_at` of the last run that
//! registered), nor by a run that pushed its registration and may have
//! been killed before it kept it (`<state>/registering`), it is another
//! worker's, and this one waits, claiming nothing and writing nothing,
//! until that record says stopped or goes stale (started, as far as
//! systemd is concerned, the reason in `STATUS=`). It does not stop: the
//! record is grid content, which anyone may push, and a forged one must
//! not keep a node down for good (it stopped as for a configuration error
//! before, and systemd did not start it again). A state directory that an
//! older version ran on (a clone, neither file) cannot tell, and is taken
//! at its word.

use crate::config::Config;
use crate::git::auth::Access;
use crate::git::ssh::{self, SharedConnection};
use crate::grid::schedule::NodeLabels;
use crate::grid::{Class, Label, NodeRecord, layout};

use std::sync::mpsc::Receiver;
use std::time::Duration;

use super::{Event, Worker, WorkerError};
use crate::escape::Untrusted;

/// The labels a node routes by: those configured, and `arch=`, `os=` and
/// `engine=` as detected.
pub fn node_labels(cfg: &Config, engine: &str) -> NodeLabels {
    let mut detected = vec![
        crate::grid::label::arch_label(),
        crate::grid::label::os_label(),
    ];
    if let Ok(e) = Label::parse(&format!("engine={engine}")) {
        detected.push(e);
    }
    // An `engine=` label the configuration could not judge (the engine
    // was `auto`): one that names another engine than the one found is
    // left out, or the node would claim tasks for an engine it has not.
    let mut labels: Vec<Label> = cfg
        .scheduling
        .labels
        .iter()
        .filter(
            |l| match crate::grid::label::against_detected(l, Some(engine)) {
                Some(why) => {
                    tracing::error!(%why, "a configured label is left out of this node's labels");
                    false
                }
                None => true,
            },
        )
        .cloned()
        .collect();
    labels.extend(detected);
    NodeLabels {
        labels: Class::of(labels),
        exclusive: Class::of(cfg.scheduling.exclusive.clone()),
    }
}

/// How the worker's git calls reach the grid: the configuration's access,
/// and over ssh one connection kept open between calls, unless the
/// operator chose the ssh command (`GIT_SSH_COMMAND`, with no key or pinned
/// host keys configured, which would replace it anyway).
pub(super) fn worker_access(cfg: &Config) -> Access {
    let mut access = cfg.access.clone();
    let ssh_chosen = std::env::var_os("GIT_SSH_COMMAND").is_some()
        && access.ssh_key_file.is_none()
        && access.known_hosts.is_none();
    if !ssh::is_ssh_url(&cfg.repo_url) || ssh_chosen {
        return access;
    }
    match SharedConnection::fresh(&cfg.state_dir.join("ssh")) {
        Ok(shared) => access.ssh_shared = Some(shared),
        Err(e) => tracing::warn!(error = %e, "each git call opens its own ssh connection"),
    }
    access
}

/// Name the zone `quiet_hours` are read in, and warn of a `TZ` that names
/// none (the C library then reads UTC, silently).
pub(super) fn say_zone(cfg: &Config) {
    let quiet = crate::config::budget::quiet_hours_zone(&cfg.scheduling.budget.quiet_hours);
    let Some((said, missing)) = quiet else { return };
    tracing::info!("{}", crate::escape::Untrusted(&said));
    if let Some(why) = missing {
        tracing::warn!(problem = %crate::escape::Untrusted(&why), "quiet hours may not be in the zone meant");
    }
}

/// The file that keeps the `started_at` of this state directory's last
/// run that registered.
const REGISTERED: &str = "registered";

/// The `started_at`s of this state directory's runs that pushed a
/// registration and may have been stopped (SIGKILL) before it was kept in
/// `registered`: the record may say any of them (traced in the chaos
/// suite: a registration landed, the worker was killed before it kept it,
/// and every later start stopped with 78, its own record read as another
/// worker's). At most this many, the latest.
const REGISTERING: &str = "registering";
const REGISTERING_KEPT: usize = 8;

impl Worker {
    /// Wait a poll interval if this node's id is another worker's (see the
    /// module's doc), or a record pushed to look like one: true if it
    /// waited, and the registration asks again. Started as far as systemd
    /// is concerned, the reason in its status: a wait of minutes must not
    /// hold `systemctl start` (or a package upgrade's restart) nor run
    /// into the start timeout. `said`: the wait was logged.
    pub(super) fn waited_for_id(
        &mut self,
        rx: &Receiver<Event>,
        said: &mut bool,
    ) -> Result<bool, WorkerError> {
        let Some(why) = self.id_in_use() else {
            if std::mem::take(said) {
                tracing::info!(node_id = %self.node(), "the node id's record is no longer another worker's; registering");
            }
            return Ok(false);
        };
        let status = format!("waiting: {why}");
        if !*said {
            // Its clone is made now: a restart of this run must not read
            // this state directory as an older version's, which is taken at
            // its word (an attack on this wait: a waiting twin restarted
            // ran). Once a run.
            self.note_registering();
            tracing::error!("{}", Untrusted(&why));
            self.notifier.ready(&status);
            *said = true;
        }
        self.notifier.status(&status);
        self.wait_to_register(rx, self.cfg.pull_interval.max(Duration::from_secs(1)))?;
        Ok(true)
    }

    /// Is this node's record another worker's? Then why. Asked at each
    /// attempt to register until one could fetch and found it ours.
    fn id_in_use(&mut self) -> Option<String> {
        let had_clone = self.id_to_check?;
        let Ok(Some(tip)) = self.repo.fetch() else {
            // Unreachable: the registration's sync says so.
            return None;
        };
        let why = self.record_of_another(&tip, had_clone);
        if why.is_none() {
            self.id_to_check = None;
        }
        why
    }

    fn record_of_another(&self, tip: &crate::git::Oid, had_clone: bool) -> Option<String> {
        let spec = format!("{tip}:{}", layout::node_file(self.node()));
        let mut blobs = self
            .repo
            .read_objects(&[spec], layout::MAX_NODE_RECORD_BYTES)
            .ok()?;
        let record = blobs
            .pop()
            .and_then(|b| b.data().and_then(|d| NodeRecord::parse(d).ok()));
        let last = std::fs::read_to_string(self.cfg.state_dir.join(REGISTERED)).ok();
        let pending = self.registering();
        if last.is_none() && pending.is_empty() && had_clone {
            // A state directory an older version ran on, which kept no
            // `registered`: its record cannot be told from another's.
            return None;
        }
        // A record naming another node under this one's file is none of
        // its (as for the reap and the idle count).
        let r = record.filter(|r| {
            &r.node_id == self.node() && written_by_another(r, last.as_deref(), &pending, &self.cfg)
        })?;
        Some(format!(
            "node id `{}` is in use: its record was written {} by a worker started at {} on host {:?}, not by this state directory's last run; give this node its own `node_id`. This worker claims nothing until that record says stopped or is older than stale_after ({} s)",
            self.node(),
            crate::escape::line(&r.last_heartbeat),
            crate::escape::line(&r.started_at),
            crate::escape::line(&r.hostname),
            self.cfg.stale_after.as_secs()
        ))
    }

    /// The node registered: its record now says this run's `started_at`.
    pub(super) fn keep_registered(&self) {
        let path = self.cfg.state_dir.join(REGISTERED);
        if let Err(e) = std::fs::write(&path, &self.started_at) {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep which run registered");
            return;
        }
        let _ = std::fs::remove_file(self.cfg.state_dir.join(REGISTERING));
    }

    /// Before a registration's push: its record may say this run's
    /// `started_at` from the moment the push lands, before
    /// `keep_registered` can say so.
    pub(super) fn note_registering(&self) {
        let mut runs = self.registering();
        if runs.iter().any(|r| r == &self.started_at) {
            return;
        }
        runs.push(self.started_at.clone());
        let from = runs.len().saturating_sub(REGISTERING_KEPT);
        let path = self.cfg.state_dir.join(REGISTERING);
        if let Err(e) = std::fs::write(&path, runs[from..].join("\n") + "\n") {
            tracing::warn!(path = %path.display(), error = %e, "cannot keep which run is registering");
        }
    }

    fn registering(&self) -> Vec<String> {
        std::fs::read_to_string(self.cfg.state_dir.join(REGISTERING))
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Is `r`, the record of this node's id, another worker's: up (a fresh
/// heartbeat, not stopped: draining or unhealthy too, as such a worker
/// still holds claims), and not written by the last run of this state
/// directory that registered (`last`)? A record of an older version, with
/// no `started_at`, cannot tell, and counts as ours.
fn written_by_another(
    r: &NodeRecord,
    last: Option<&str>,
    pending: &[String],
    cfg: &Config,
) -> bool {
    let up = r.is_up(
        crate::time::now(),
        chrono::Duration::from_std(cfg.stale_after).unwrap_or_default(),
    );
    up && !r.started_at.is_empty()
        && last != Some(r.started_at.as_str())
        && !pending.iter().any(|p| p == &r.started_at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NoEnv;

    /// With the engine found at start (`auto`), a configured `engine=`
    /// label that names another is left out of the node's labels.
    #[test]
    fn an_engine_label_against_the_engine_found_is_left_out() {
        let text = "repo_url = \"/g\"\nlabels = [\"gpu\", \"engine=docker\"]\n";
        let path = std::path::Path::new("/etc/dgrid/worker.toml");
        let cfg = Config::from_str_with(text, path, &NoEnv).unwrap();
        let labels = node_labels(&cfg, "podman").labels;
        let names: Vec<&str> = labels.labels().map(Label::as_str).collect();
        assert!(
            names.contains(&"gpu") && names.contains(&"engine=podman"),
            "{names:?}"
        );
        assert!(!names.contains(&"engine=docker"), "{names:?}");
        let kept = node_labels(&cfg, "docker").labels;
        assert!(kept.labels().any(|l| l.as_str() == "engine=docker"));
    }
}
