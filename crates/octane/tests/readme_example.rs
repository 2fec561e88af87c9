//! The README's example is the crate's compiled doc example: the same
//! lines, so the one a user reads first builds.

#[test]
fn the_readme_example_is_the_compiled_doc_example() {
    let readme = include_str!("../../../README.md");
    let start = readme
        .find("```rust\n")
        .expect("a rust block in the README")
        + 8;
    let end = start + readme[start..].find("```").expect("the block ends");
    let shown: Vec<&str> = readme[start..end].lines().collect();

    let lib = include_str!("../src/lib.rs");
    let doc: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("//!"))
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .skip_while(|l| !l.starts_with("```"))
        .skip(1)
        .take_while(|l| !l.starts_with("```"))
        .filter(|l| !l.starts_with("# "))
        .collect();
    assert_eq!(
        shown, doc,
        "README.md and the doc example of src/lib.rs differ"
    );
}
