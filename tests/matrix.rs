//! `docs/compatibility.md` is the matrix rendered from the embedded tables
//! (`onebot_bridge::core::matrix::render`). When a table changes, regenerate it with
//! `UPDATE_MATRIX=1 cargo test --test matrix`.

use std::path::Path;

use onebot_bridge::core::matrix::{action_support, render, Support, GO_CQHTTP_ACTIONS};
use onebot_bridge::core::MappingSet;

#[test]
fn compatibility_md_is_the_rendered_matrix() {
    let rendered = render(&MappingSet::embedded().expect("the embedded tables load"));
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/compatibility.md");
    if std::env::var_os("UPDATE_MATRIX").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        return;
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk != rendered {
        let first = on_disk
            .lines()
            .zip(rendered.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| on_disk.lines().count().min(rendered.lines().count()));
        panic!(
            "{} is out of date with mappings/ (first difference at line {}): run `UPDATE_MATRIX=1 cargo test --test \
             matrix` and commit the result",
            path.display(),
            first + 1
        );
    }
}

#[test]
fn every_go_cqhttp_action_has_a_generic_row() {
    let set = MappingSet::embedded().expect("the embedded tables load");
    let missing: Vec<&str> =
        GO_CQHTTP_ACTIONS.iter().copied().filter(|a| action_support(set.generic(), a) == Support::Missing).collect();
    assert!(missing.is_empty(), "go-cqhttp actions with no row in the generic profile: {missing:?}");
}
