//! Fields a submitter probably meant. An unknown field is kept as it is (a
//! grid may carry its own, and a newer worker may read more), but one that
//! is a known field misspelt, in other letters' case, or under the name
//! another scheduler gives it is most likely a mistake, and a silent one: a
//! `require` routes a GPU task to any node, an `id` gets a generated id and
//! leaves its dependants' `after` naming nothing.

/// The fields a submitter writes (the grid's own, `attempt`, `queued_at`
/// and `claim`, are not hinted at).
const WRITTEN: [&str; 7] = [
    "task_id",
    "script",
    "timeout_seconds",
    "priority",
    "requires",
    "after",
    "submitter",
];

/// What other schedulers and CI systems call the same fields (HTCondor's
/// `requirements`, GitLab's `tags` and `needs`, Compose's `depends_on`).
const OTHER_NAMES: [(&str, &str); 14] = [
    ("id", "task_id"),
    ("taskid", "task_id"),
    ("cmd", "script"),
    ("command", "script"),
    ("timeout", "timeout_seconds"),
    ("prio", "priority"),
    ("labels", "requires"),
    ("tags", "requires"),
    ("requirements", "requires"),
    ("needs", "after"),
    ("depends_on", "after"),
    ("dependencies", "after"),
    ("deps", "after"),
    ("owner_id", "submitter"),
];

/// The known field `field` most likely stands for, if it is not one itself.
pub fn meant(field: &str) -> Option<&'static str> {
    if WRITTEN.contains(&field) {
        return None;
    }
    let lower = field.to_ascii_lowercase();
    if let Some((_, known)) = OTHER_NAMES.iter().find(|(other, _)| *other == lower) {
        return Some(known);
    }
    // One slip in a short name, two in a long one: `scirpt`, `priorty`,
    // `timeout_second`; never a field that only shares a suffix.
    WRITTEN.iter().copied().find(|known| {
        let slips = if known.len() <= 6 { 1 } else { 2 };
        strsim::damerau_levenshtein(&lower, known) <= slips
    })
}

#[cfg(test)]
mod tests {
    use super::meant;

    #[test]
    fn misspellings_cases_and_other_schedulers_names_are_hinted() {
        for (field, known) in [
            ("priorty", "priority"),
            ("Priority", "priority"),
            ("require", "requires"),
            ("REQUIRES", "requires"),
            ("scirpt", "script"),
            ("timeout_second", "timeout_seconds"),
            ("taskid", "task_id"),
            ("id", "task_id"),
            ("labels", "requires"),
            ("needs", "after"),
            ("depends_on", "after"),
            ("submiter", "submitter"),
        ] {
            assert_eq!(meant(field), Some(known), "{field}");
        }
    }

    #[test]
    fn known_fields_and_the_grids_own_are_not_hinted() {
        for field in [
            "task_id",
            "script",
            "after",
            "attempt",
            "queued_at",
            "claim",
            "owner",
            "grid_id",
            "issued_at",
            "expires_at",
            "envelope",
            "notes",
            "afterwards",
            "scripts_dir",
            "",
        ] {
            assert_eq!(meant(field), None, "{field}");
        }
    }
}
