//! Whether a place a move needs is free, and what gives way there. A move
//! (a requeue, a release, an inbox entry filed) never writes over a file:
//! one of the same id is another copy of the task, and would vanish with
//! no run and no result. But a node enforcing trust never runs nor moves
//! an unsigned file, so one pushed where a trusted task must go would
//! hold that task back for good; such a node says so ([`GiveWay`]), and
//! the file goes to `failed/` as the task takes its place.

use crate::git::{Blob, Edit, Edits, EntryMode, GitError, GridRepo, Oid, TreeEntry};
use crate::grid::{Id, layout};
use crate::time::Timestamp;

use super::results::Rejection;

/// A node's say over a file that holds a place a task moves to. The
/// ledger holds no trust policy: the tools pass none, and every file keeps
/// its place.
pub trait GiveWay {
    /// Does `held`, the file at `path` at the tip, give way to the task
    /// `mover` (read only if needed)? `Some(why)` where it does.
    fn gives_way(
        &self,
        repo: &GridRepo,
        path: &str,
        held: &Oid,
        mover: &mut dyn FnMut() -> Result<Mover, GitError>,
    ) -> Result<Option<String>, GitError>;
}

/// The file of a task moved to a place: its blob where it has one (a file
/// moved unchanged), and its bytes.
pub struct Mover {
    pub blob: Option<Oid>,
    pub bytes: Vec<u8>,
}

impl Mover {
    /// The file moved unchanged, blob `oid`, read up to `cap` bytes (past
    /// it, or unread, no bytes: no task, and nothing gives way to it).
    pub fn read(repo: &GridRepo, oid: &Oid, cap: usize) -> Result<Mover, GitError> {
        let blob = repo.read_objects(std::slice::from_ref(oid), cap as u64)?;
        Ok(Mover {
            blob: Some(oid.clone()),
            bytes: blob
                .into_iter()
                .next()
                .and_then(Blob::into_data)
                .unwrap_or_default(),
        })
    }
}

/// What a place holds, for a move there.
pub enum Room {
    Free,
    Taken,
    /// Held by a file that gives way: its rejection, to plan with the move
    /// (the move's edit of the path replaces the rejection's delete).
    GivenWay(Box<Rejection>),
}

/// What is at a path as one commit's plans leave it.
enum Held {
    Free,
    Taken,
    /// A file at the tip, under directories that are directories.
    File(Oid),
}

/// Is `path` free at `tip` as the edits of one commit's plans leave it
/// (`plans`, in the order they are applied: the worker's draft and a
/// ledger plan's own, or the tool's plans so far)? A move never writes
/// over a file: one of the same id there is another copy of the task
/// (pushed again, with the same `queued_at`), and would vanish with no run
/// and no result; nor over another move of one commit (a requeue and a
/// release of copies of one task). Asked of the object store, nothing read.
///
/// Nor under a file where one of its directories goes (`tasks/lanes/p50`
/// pushed as a file): the directory would replace it, and it would vanish
/// without the `invalid` result a misplaced entry gets; the move waits
/// until a plan has moved it to `failed/`.
pub fn is_free(repo: &GridRepo, tip: &str, plans: &[&Edits], path: &str) -> Result<bool, GitError> {
    Ok(matches!(held_at(repo, tip, plans, path)?, Held::Free))
}

/// Is `path` free for the task whose file is `mover` ([`is_free`]), or
/// held by a file that gives way to it (`give_way`, a node's say)? Only
/// a file at the tip gives way: a move planned in this commit does not.
#[allow(clippy::too_many_arguments)]
pub fn room_for(
    repo: &GridRepo,
    tip: &str,
    plans: &[&Edits],
    path: &str,
    give_way: Option<&dyn GiveWay>,
    mut mover: impl FnMut() -> Result<Mover, GitError>,
    node: &Id,
    now: Timestamp,
) -> Result<Room, GitError> {
    let held = match held_at(repo, tip, plans, path)? {
        Held::Free => return Ok(Room::Free),
        Held::Taken => return Ok(Room::Taken),
        Held::File(oid) => oid,
    };
    let Some(give_way) = give_way else {
        return Ok(Room::Taken);
    };
    let Some(why) = give_way.gives_way(repo, path, &held, &mut mover)? else {
        return Ok(Room::Taken);
    };
    // Named below its directory, as a rejection in a lane or the inbox is.
    let (dir, name) = match path.strip_prefix(&format!("{}/", layout::LANES)) {
        Some(rel) => (layout::LANES, rel),
        None => path.rsplit_once('/').unwrap_or(("", path)),
    };
    let entry = TreeEntry {
        mode: EntryMode::File,
        oid: held,
        name: name.as_bytes().to_vec(),
    };
    Ok(Room::GivenWay(Box::new(Rejection::of(
        dir, &entry, &why, node, now,
    ))))
}

fn held_at(repo: &GridRepo, tip: &str, plans: &[&Edits], path: &str) -> Result<Held, GitError> {
    let edit = |p: &[u8]| super::last_edit(plans, p);
    match edit(path.as_bytes()) {
        Some(Edit::Delete) => return Ok(Held::Free),
        Some(_) => return Ok(Held::Taken),
        None => {}
    }
    let mut asked = vec![format!("{tip}:{path}")];
    for dir in layout::dirs_made_by(path) {
        match edit(dir.as_bytes()) {
            Some(Edit::Delete)
            | Some(Edit::Object {
                mode: EntryMode::Tree,
                ..
            }) => {}
            Some(_) => return Ok(Held::Taken),
            None => asked.push(format!("{tip}:{dir}")),
        }
    }
    let found = repo.object_info(&asked)?;
    let (own, dirs) = found.split_first().expect("the path itself is asked");
    if !dirs.iter().flatten().all(|i| i.kind == "tree") {
        return Ok(Held::Taken);
    }
    Ok(match own {
        None => Held::Free,
        Some(i) if i.kind == "blob" => Held::File(i.oid.clone()),
        Some(_) => Held::Taken,
    })
}
