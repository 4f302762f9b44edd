//! The shape of the code, as ARCHITECTURE.md states it, checked from the
//! sources themselves: the layers (each folder uses only folders below
//! it), no import cycle between files of a folder, `grid/` standing on
//! nothing but `time`, only `git/command.rs` starting git, and no file over
//! about 500 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first; a folder (or top-level file) may use those on
/// lower rows, never those on its own row or above, but itself.
const LAYERS: &[&[&str]] = &[
    &["escape"],
    &["time", "logging", "html"],
    &["grid"],
    &["git", "sandbox", "trust"],
    &["ledger", "config"],
    &["status"],
    &["service", "tools"],
    &["cli"],
];

/// Longer than this is a file to split (tests included).
const MAX_LINES: usize = 560;

/// A file as the module it is: `src/git/repo.rs` is `["git", "repo"]`,
/// `src/git/mod.rs` is `["git"]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" {
        parts.push(stem.to_owned());
    }
    parts
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and string literals, so that a
/// path in a doc comment or a message is not taken for a use.
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for d in chars.by_ref() {
                    if d == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                let mut escaped = false;
                for d in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if d == '\\' {
                        escaped = true;
                    } else if d == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            c => out.push(c),
        }
    }
    out
}

/// Every module path a file names: `crate::a::b::C`, `use crate::a::{b, c}`
/// (both `a::b` and `a::c`), and `super::x` resolved against the file.
fn references(module: &[String], code: &str) -> Vec<Vec<String>> {
    let mut refs = Vec::new();
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if start > 0 && ident(code[..start].chars().last().unwrap()) {
            continue;
        }
        let (mut base, rest) = if code[start..].starts_with("crate::") {
            (Vec::new(), &code[start + 7..])
        } else {
            // A file's `super` is its folder; a mod.rs is its folder, so
            // its `super` is the folder's parent: both drop one segment.
            let mut b = module.to_vec();
            b.pop();
            (b, &code[start + 7..])
        };
        let path: String = rest
            .chars()
            .take_while(|c| ident(*c) || *c == ':' || *c == '{' || *c == ',' || *c == ' ')
            .collect();
        let (head, group) = match path.split_once('{') {
            Some((h, g)) => (h, Some(g)),
            None => (path.as_str(), None),
        };
        for seg in head.split("::").map(str::trim).filter(|s| !s.is_empty()) {
            base.push(seg.to_owned());
        }
        match group {
            Some(g) => {
                for item in g.split(',') {
                    let mut p = base.clone();
                    p.extend(
                        item.split("::")
                            .map(str::trim)
                            .filter(|s| !s.is_empty() && *s != "self")
                            .map(str::to_owned),
                    );
                    refs.push(p);
                }
            }
            None => refs.push(base),
        }
    }
    refs
}

struct Tree {
    /// module path -> file
    files: BTreeMap<Vec<String>, PathBuf>,
    /// file module -> the modules it uses (resolved to files)
    uses: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

fn tree() -> Tree {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    let files: BTreeMap<Vec<String>, PathBuf> = paths
        .iter()
        .filter(|p| !p.ends_with("lib.rs") && !p.ends_with("main.rs"))
        .map(|p| (module_of(&src, p), p.clone()))
        .collect();
    let mut uses = BTreeMap::new();
    for (module, path) in &files {
        let code = code_only(&std::fs::read_to_string(path).unwrap());
        let mut to = BTreeSet::new();
        for r in references(module, &code) {
            // The longest prefix of the path that is a file of the crate.
            if let Some(n) = (1..=r.len()).rev().find(|n| files.contains_key(&r[..*n])) {
                let target = r[..n].to_vec();
                if &target != module {
                    to.insert(target);
                }
            }
        }
        uses.insert(module.clone(), to);
    }
    Tree { files, uses }
}

fn layer(folder: &str) -> usize {
    LAYERS
        .iter()
        .position(|row| row.contains(&folder))
        .unwrap_or_else(|| panic!("src/{folder} is in no layer of tests/structure.rs"))
}

#[test]
fn each_folder_uses_only_the_layers_below_it() {
    let t = tree();
    let mut wrong = Vec::new();
    for (from, tos) in &t.uses {
        for to in tos {
            if from[0] != to[0] && layer(&from[0]) <= layer(&to[0]) {
                wrong.push(format!("{} uses {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "arrows across or up the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn grid_stands_on_nothing_but_time() {
    let t = tree();
    let wrong: Vec<String> = t
        .uses
        .iter()
        .filter(|(from, _)| from[0] == "grid")
        .flat_map(|(from, tos)| {
            tos.iter()
                .filter(|to| to[0] != "grid" && to[0] != "time")
                .map(move |to| format!("{} uses {}", from.join("::"), to.join("::")))
        })
        .collect();
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// No cycle among the files of the crate. A folder's `mod.rs` is the
/// folder's own face: what its children take from it, and what it takes
/// from them, is the folder talking to itself, and not counted.
#[test]
fn no_import_cycles() {
    let t = tree();
    let counted = |from: &Vec<String>, to: &Vec<String>| {
        let parent_child = |a: &Vec<String>, b: &Vec<String>| {
            t.files[a].ends_with("mod.rs") && b.len() == a.len() + 1 && b.starts_with(a)
        };
        !parent_child(from, to) && !parent_child(to, from)
    };
    // Depth-first search for a back edge.
    fn visit(
        node: &Vec<String>,
        edges: &BTreeMap<Vec<String>, Vec<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(node.clone(), 1);
        stack.push(node.clone());
        for next in edges.get(node).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|n| n == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(node.clone(), 2);
        None
    }
    let edges: BTreeMap<Vec<String>, Vec<Vec<String>>> = t
        .uses
        .iter()
        .map(|(from, tos)| {
            (
                from.clone(),
                tos.iter().filter(|to| counted(from, to)).cloned().collect(),
            )
        })
        .collect();
    let mut state = BTreeMap::new();
    for node in edges.keys() {
        if state.get(node).copied().unwrap_or(0) == 0
            && let Some(cycle) = visit(node, &edges, &mut state, &mut Vec::new())
        {
            let names: Vec<String> = cycle.iter().map(|m| m.join("::")).collect();
            panic!("import cycle: {}", names.join(" -> "));
        }
    }
}

#[test]
fn only_git_command_starts_git() {
    let t = tree();
    let wrong: Vec<String> = t
        .files
        .iter()
        .filter(|(m, _)| m.as_slice() != ["git", "command"])
        .filter(|(_, p)| {
            let text = std::fs::read_to_string(p).unwrap();
            // The code, not its unit tests: a test may make a repository
            // to read with the crate's own calls.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            code.contains("Command::new(\"git\")") || code.contains("cmd!(\"git\"")
        })
        .map(|(_, p)| p.display().to_string())
        .collect();
    assert!(
        wrong.is_empty(),
        "git started outside git/command.rs: {wrong:?}"
    );
}

#[test]
fn no_source_file_is_too_long_to_read() {
    let t = tree();
    let long: Vec<String> = t
        .files
        .values()
        .filter_map(|p| {
            let n = std::fs::read_to_string(p).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{} ({n} lines)", p.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn the_checker_sees_what_it_checks() {
    // A checker that saw no imports would pass everything.
    let t = tree();
    let uses = |from: &[&str], to: &[&str]| {
        t.uses[&from.iter().map(|s| s.to_string()).collect::<Vec<_>>()]
            .contains(&to.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    assert!(uses(&["service", "sync", "claim"], &["git"]));
    assert!(uses(&["service", "sync", "claim"], &["service", "share"]));
    assert!(uses(&["git", "repo"], &["git", "tree"]));
    assert!(
        uses(&["ledger", "reap"], &["ledger", "results"]),
        "super:: resolves"
    );
    assert!(t.files.len() > 50);
}
