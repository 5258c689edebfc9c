//! The README is the front door: its configuration table must list every variable harp reads,
//! and its test command must be the one CI runs.

#[test]
fn readme_documents_every_variable() {
    let readme = include_str!("../README.md");
    for var in harp::config::VARIABLES {
        for name in var.name.split(", ") {
            let name = name.trim_end_matches('*');
            assert!(readme.contains(&format!("`{name}")), "README lacks {name}");
        }
    }
}

#[test]
fn ci_runs_the_readme_test_command() {
    let readme = include_str!("../README.md");
    let ci = include_str!("../.ci/run");
    assert!(readme.contains("cargo nextest run --workspace"));
    assert!(ci.contains("cargo nextest run --workspace"));
    // The set-up command the README gives a fresh clone is the one CI runs.
    assert!(readme.contains("tests/setup "));
    assert!(ci.lines().any(|l| l.trim() == "tests/setup"));
}
