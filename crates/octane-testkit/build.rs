// Marks the Postgres half of the behaviour tests as runnable when
// `OCTANE_TEST_POSTGRES_URL` is set (and the server-restart test when
// `OCTANE_TEST_POSTGRES_CLUSTER` is too); without them those tests show as
// ignored, with the reason, in `cargo test`'s output.

fn main() {
    for (var, cfg) in [
        ("OCTANE_TEST_POSTGRES_URL", "octane_postgres_tests"),
        // `VERSION CLUSTER` for `pg_ctlcluster`: lets a test restart the
        // server (CI sets it; it needs the rights to do so).
        (
            "OCTANE_TEST_POSTGRES_CLUSTER",
            "octane_postgres_restart_tests",
        ),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        println!("cargo::rerun-if-env-changed={var}");
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
