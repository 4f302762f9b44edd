use super::{env, load};

#[test]
fn an_exclusive_set_no_task_can_require_is_refused() {
    // A tester's nodes: exclusive to nine labels, or to five of 41
    // characters (209 bytes joined); no valid task requires either, so
    // the node could never take anything, and `check` said ok.
    use crate::grid::label::{CLASS_SEP, MAX_CLASS_LEN, MAX_REQUIRES};
    let quoted = |names: &[String]| {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = |names: &[String]| {
        let list = quoted(names);
        format!("repo_url = \"/g\"\nlabels = [{list}]\n\nexclusive = [{list}]\n")
    };
    let short = |n: usize| (0..n).map(|i| format!("l{i}")).collect::<Vec<_>>();
    let c = load(&text(&short(MAX_REQUIRES)), &env(&[])).unwrap();
    assert_eq!(
        c.scheduling.exclusive.len(),
        MAX_REQUIRES,
        "as many as a task may require"
    );
    let e = load(&text(&short(MAX_REQUIRES + 1)), &env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 4")
            && e.contains("`exclusive`")
            && e.contains(&format!(
                "{} labels; at most {MAX_REQUIRES}",
                MAX_REQUIRES + 1
            ))
            && e.contains("never take anything"),
        "{e}"
    );
    // Labels whose joined name is one byte too long for a class, and
    // one that fits exactly.
    let long = |total: usize| {
        let n = 5;
        let each = (total - (n - 1) * CLASS_SEP.len_utf8()) / n;
        let mut names: Vec<String> = (0..n)
            .map(|i| format!("{i}{}", "x".repeat(each - 1)))
            .collect();
        let joined = names.join("+").len();
        names[n - 1].push_str(&"y".repeat(total - joined));
        names
    };
    let fits = long(MAX_CLASS_LEN);
    assert_eq!(fits.join("+").len(), MAX_CLASS_LEN);
    load(&text(&fits), &env(&[])).unwrap();
    let over = long(MAX_CLASS_LEN + 1);
    let e = load(&text(&over), &env(&[])).unwrap_err().to_string();
    assert!(
        e.contains("line 4")
            && e.contains("`exclusive`")
            && e.contains(&format!(
                "{} bytes; at most {MAX_CLASS_LEN}",
                MAX_CLASS_LEN + 1
            )),
        "{e}"
    );
    // Set in the environment: named there. Labels alone are not a task's
    // class, and may be as many as a record holds.
    let many: &'static str = short(MAX_REQUIRES + 1).join(",").leak();
    let e = load(
        "repo_url = \"/g\"\n",
        &env(&[("DGRID_LABELS", many), ("DGRID_EXCLUSIVE", many)]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("DGRID_EXCLUSIVE") && e.contains("never take anything") && !e.contains("line"),
        "{e}"
    );
    let c = load("repo_url = \"/g\"\n", &env(&[("DGRID_LABELS", many)])).unwrap();
    assert_eq!(c.scheduling.labels.len(), MAX_REQUIRES + 1);
}
