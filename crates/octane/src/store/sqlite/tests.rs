use super::Options;

#[test]
fn in_memory_databases_are_refused() {
    for rest in [":memory:", "file::memory:?cache=shared"] {
        let err = Options::from_url_rest(rest).unwrap_err();
        assert!(err.contains(":memory:"), "{err}");
    }
}

#[test]
fn relative_paths_are_made_absolute_when_parsed() {
    let options = Options::from_url_rest("data/octane.db?synchronous=normal").unwrap();
    assert!(options.path.is_absolute(), "{}", options.path.display());
    assert!(options.path.ends_with("data/octane.db"));
    let default = Options::from_url_rest("").unwrap();
    assert_eq!(
        default.path,
        std::env::current_dir().unwrap().join("octane.db")
    );
}
