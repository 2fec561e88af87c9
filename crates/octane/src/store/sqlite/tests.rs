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

/// SQLite is built with `SQLITE_ENABLE_STAT4`: once `ANALYZE` (or the
/// `PRAGMA optimize` at open) has sampled an index, a statement comparing
/// an indexed column with a bound value is compiled again whenever the
/// value changes — every history read and write of every workflow, on any
/// database old enough to have been analyzed.
#[test]
fn statements_are_not_recompiled_for_each_workflow_on_an_analyzed_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aged.db");
    let options = Options::from_url_rest(path.to_str().unwrap()).unwrap();
    {
        let conn = super::open_writer(&options).unwrap();
        conn.execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
             INSERT INTO events (workflow_id, location, version, kind, name, input_hash)
             SELECT printf('wf-%05d', i), x'01', 1, 1, 'step', 0 FROM n;
             ANALYZE;",
        )
        .unwrap();
    }
    let conn = super::open_writer(&options).unwrap();
    let mut read = conn
        .prepare_cached(&super::history::range_sql(true))
        .unwrap();
    for id in ["wf-00001", "wf-00002", "wf-00003"] {
        let rows = read
            .query_map((id, vec![0u8], vec![0xffu8]), |_| Ok(()))
            .unwrap()
            .count();
        assert_eq!(rows, 1, "{id}");
    }
    assert_eq!(
        read.get_status(rusqlite::StatementStatus::RePrepare),
        0,
        "the history read was compiled again for a new workflow id"
    );
}
