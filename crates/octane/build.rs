//! Marks the Postgres half of the behaviour tests as runnable when
//! `OCTANE_TEST_POSTGRES_URL` is set; without it they show as ignored,
//! with the reason, in `cargo test`'s output.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(octane_postgres_tests)");
    println!("cargo::rerun-if-env-changed=OCTANE_TEST_POSTGRES_URL");
    if std::env::var_os("OCTANE_TEST_POSTGRES_URL").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=octane_postgres_tests");
    }
}
