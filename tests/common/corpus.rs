//! The hostile-task corpus: queue entries a stranger could push, each with
//! the reason a worker (and `dgrid-worker validate`) must give for refusing
//! it. Built by code rather than kept as files because several cannot be
//! plain files in a checkout: symlinks, directories named `*.json`, an
//! embedded repository (a gitlink), names that are not UTF-8.
//!
//! Reuse: `write_queue(dir)` lays every entry into a directory (a work
//! tree's `tasks/queue/`), `cases()` says what each must be refused for.
//! Match a reported error to a case by `Hostile::shown_name` (the entry's
//! name as a lossy UTF-8 string, which is what error messages print). For a
//! checker that reads files on disk (`dgrid-worker validate DIR`), use
//! `Hostile::reason_on_disk`: `write_queue(dir)` then `validate dir` must
//! report every case, and `valid_neighbours` must pass.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// How an entry is stored.
pub enum Body {
    File(Vec<u8>),
    Symlink(&'static str),
    /// A directory with one file in it.
    Dir,
    /// A nested git repository: git records it as a gitlink (a submodule).
    Repo,
}

pub struct Hostile {
    /// The entry's file name, raw bytes (some are not UTF-8).
    pub name: Vec<u8>,
    pub body: Body,
    /// What the refusal must say (a substring of the error).
    pub reason: &'static str,
    /// What the case is about, for failure messages.
    pub about: &'static str,
}

impl Hostile {
    pub fn shown_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }

    /// The reason when the entry is met as a file on disk (`validate` on a
    /// checkout) rather than in git's tree: a nested repository is then
    /// just a directory.
    pub fn reason_on_disk(&self) -> &'static str {
        match self.body {
            Body::Repo => "directory",
            _ => self.reason,
        }
    }
}

fn json(v: serde_json::Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

fn task(id: &str) -> serde_json::Value {
    serde_json::json!({"task_id": id, "script": "echo should-not-run", "timeout_seconds": 5})
}

fn with(id: &str, key: &str, value: serde_json::Value) -> Vec<u8> {
    let mut t = task(id);
    t[key] = value;
    json(t)
}

fn without(id: &str, key: &str) -> Vec<u8> {
    let mut t = task(id);
    t.as_object_mut().unwrap().remove(key);
    json(t)
}

/// Every hostile entry and the reason it must be refused for.
pub fn cases() -> Vec<Hostile> {
    use Body::*;
    let c = |name: &str, body: Body, reason: &'static str, about: &'static str| Hostile {
        name: name.as_bytes().to_vec(),
        body,
        reason,
        about,
    };
    let f = |name: &str, bytes: Vec<u8>, reason: &'static str, about: &'static str| {
        c(name, File(bytes), reason, about)
    };
    let deep = format!(
        r#"{{"task_id":"deep","script":"echo","timeout_seconds":5,"x":{}{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let long_id = "x".repeat(65);
    let mut v = vec![
        // -- not JSON, or not an object
        f("not-json.json", b"this is not json".to_vec(), "not valid JSON", "prose"),
        f(
            "truncated.json",
            br#"{"task_id": "truncated", "script": "echo"#.to_vec(),
            "not valid JSON",
            "cut off mid-string",
        ),
        f("empty.json", Vec::new(), "is empty", "zero bytes"),
        f("blank.json", b" \n\t\r\n".to_vec(), "is empty", "whitespace only"),
        f("array.json", b"[1, 2, 3]".to_vec(), "must be a JSON object, found an array", "top-level array"),
        f("string.json", br#""echo hi""#.to_vec(), "found a string", "top-level string"),
        f("null.json", b"null".to_vec(), "found null", "top-level null"),
        f(
            "two-docs.json",
            [json(task("two-docs")), json(task("two-docs"))].concat(),
            "not valid JSON",
            "two documents in one file",
        ),
        f(
            "bom.json",
            [b"\xef\xbb\xbf".to_vec(), json(task("bom"))].concat(),
            "not valid JSON",
            "UTF-8 byte order mark",
        ),
        f("deep.json", deep.into_bytes(), "not valid JSON", "5000 levels of nesting"),
        f(
            "latin1.json",
            b"{\"task_id\":\"latin1\",\"script\":\"caf\xe9\",\"timeout_seconds\":5}".to_vec(),
            "not valid UTF-8",
            "Latin-1 bytes in the content",
        ),
        // -- missing fields, wrong types
        f("no-id.json", without("no-id", "task_id"), "`task_id` is missing", "no task_id"),
        f("no-script.json", without("no-script", "script"), "`script` is missing", "no script"),
        f(
            "no-timeout.json",
            without("no-timeout", "timeout_seconds"),
            "`timeout_seconds` is missing",
            "no timeout",
        ),
        f(
            "id-number.json",
            with("id-number", "task_id", 7.into()),
            "`task_id` must be a string, found a number",
            "numeric id",
        ),
        f(
            "id-null.json",
            with("id-null", "task_id", serde_json::Value::Null),
            "`task_id` must be a string, found null",
            "null id",
        ),
        f(
            "script-array.json",
            with("script-array", "script", serde_json::json!(["sh", "-c", "id"])),
            "`script` must be a string, found an array",
            "argv array as script",
        ),
        f(
            "script-object.json",
            with("script-object", "script", serde_json::json!({"run": "id"})),
            "`script` must be a string, found an object",
            "object as script",
        ),
        f(
            "timeout-string.json",
            with("timeout-string", "timeout_seconds", "30".into()),
            "`timeout_seconds` must be an integer, found a string",
            "quoted number",
        ),
        f(
            "timeout-float.json",
            with("timeout-float", "timeout_seconds", 1.5.into()),
            "`timeout_seconds` must be an integer, found a number written with a decimal point or an exponent",
            "fractional timeout",
        ),
        f(
            "timeout-bool.json",
            with("timeout-bool", "timeout_seconds", true.into()),
            "`timeout_seconds` must be an integer, found a boolean",
            "boolean timeout",
        ),
        f(
            "timeout-zero.json",
            with("timeout-zero", "timeout_seconds", 0.into()),
            "`timeout_seconds` is 0; it must be between 1 and",
            "zero timeout",
        ),
        f(
            "timeout-negative.json",
            with("timeout-negative", "timeout_seconds", (-5).into()),
            "`timeout_seconds` is -5",
            "negative timeout",
        ),
        f(
            "timeout-huge.json",
            with("timeout-huge", "timeout_seconds", 99_999_999_999u64.into()),
            "`timeout_seconds` is 99999999999",
            "timeout past the grid's limit",
        ),
        f(
            "timeout-overflow.json",
            br#"{"task_id":"timeout-overflow","script":"echo","timeout_seconds":18446744073709551616}"#
                .to_vec(),
            "`timeout_seconds` is 18446744073709551616; it must be between 1 and",
            "timeout past u64",
        ),
        f(
            "attempt-zero.json",
            with("attempt-zero", "attempt", 0.into()),
            "`attempt` is 0",
            "attempt 0 (would dodge the attempt limit)",
        ),
        f(
            "attempt-string.json",
            with("attempt-string", "attempt", "1".into()),
            "`attempt` must be an integer",
            "quoted attempt",
        ),
        // -- huge
        f(
            "huge-script.json",
            with("huge-script", "script", "e".repeat(70 * 1024).into()),
            "`script` is 71680 bytes; at most 65536 are allowed",
            "script past the argv limit",
        ),
        f(
            "huge-file.json",
            with("huge-file", "padding", "p".repeat(300 * 1024).into()),
            "bytes; at most 262144 are allowed",
            "300 KiB file",
        ),
        f(
            "empty-script.json",
            with("empty-script", "script", " \n ".into()),
            "`script` is empty",
            "blank script",
        ),
        f(
            "nul-script.json",
            with("nul-script", "script", "echo a\u{0}rm -rf /".into()),
            "NUL byte",
            "NUL in the script",
        ),
        // -- ids and path tricks
        f(
            "traversal.json",
            with("traversal", "task_id", "../../etc/passwd".into()),
            "`task_id` must start with a letter or digit",
            "path traversal in the id",
        ),
        f(
            "slashy.json",
            with("slashy", "task_id", "a/b".into()),
            "`task_id` contains '/'",
            "slash in the id",
        ),
        f(
            "mismatch.json",
            with("mismatch", "task_id", "other-name".into()),
            r#"is "other-name" but the file is named "mismatch".json"#,
            "id differs from the file name",
        ),
        f(
            "dup-a.json",
            with("dup-a", "task_id", "dup-b".into()),
            r#"is "dup-b" but the file is named "dup-a".json"#,
            "a second file claiming an existing task's id (dup-b.json is valid)",
        ),
        f(
            "dupkey.json",
            br#"{"task_id":"dupkey","script":"echo harmless","timeout_seconds":5,"script":"echo evil"}"#
                .to_vec(),
            "field `script` appears more than once",
            "a key given twice: parsers disagree on which one wins",
        ),
        f(
            &format!("{long_id}.json"),
            json(task(&long_id)),
            "file name is not a valid task id: is 65 characters long",
            "65-character id",
        ),
        f(".hidden.json", json(task(".hidden")), "must start with a letter or digit, not '.'", "dot file"),
        f("-rf.json", json(task("-rf")), "must start with a letter or digit, not '-'", "option-like name"),
        f(
            "tab\tname.json",
            json(task("tab\tname")),
            "contains '\t'",
            "control character in the name",
        ),
        f(
            "t\u{430}sk.json",
            json(task("t\u{430}sk")),
            "contains '\u{430}'",
            "Cyrillic homoglyph in the name",
        ),
        f("notes.txt", b"hello".to_vec(), "must end in .json", "not a .json name"),
        f(".json", json(task("x")), "must end in .json", "empty stem"),
        // -- not regular files
        c("link.json", Symlink("/etc/shadow"), "symbolic link", "symlink to a host secret"),
        c("link-good.json", Symlink("dup-b.json"), "symbolic link", "symlink to a valid task"),
        c("dir.json", Dir, "directory", "directory named *.json"),
        c("sub.json", Repo, "submodule", "gitlink named *.json"),
    ];
    v.push(Hostile {
        name: b"caf\xe9.json".to_vec(),
        body: File(json(task("cafe"))),
        reason: "file name is not a valid task id: contains '\u{fffd}'",
        about: "file name that is not UTF-8",
    });
    v
}

/// Valid entries that sit among the hostile ones: they must run.
pub fn valid_neighbours(marker_dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["dup-b", "good"]
        .iter()
        .map(|id| {
            let script = format!("touch '{}/{id}.ran'; echo fine-{id}", marker_dir.display());
            (
                format!("{id}.json"),
                json(serde_json::json!({"task_id": id, "script": script, "timeout_seconds": 10})),
            )
        })
        .collect()
}

/// Lay every hostile entry into `dir` (e.g. a work tree's `tasks/queue`).
pub fn write_queue(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for h in cases() {
        let path = dir.join(OsStr::from_bytes(&h.name));
        match &h.body {
            Body::File(bytes) => std::fs::write(&path, bytes).unwrap(),
            Body::Symlink(target) => std::os::unix::fs::symlink(target, &path).unwrap(),
            Body::Dir => {
                std::fs::create_dir(&path).unwrap();
                std::fs::write(path.join("inner"), b"{}").unwrap();
            }
            Body::Repo => super::nested_repo(&path),
        }
        if let Body::File(_) = h.body {
            // Mode bits are not the point; keep them plain.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
}
