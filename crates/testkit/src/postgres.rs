//! A throwaway PostgreSQL database per test, on the server `scripts/pg-test-server` started
//! (`scripts/test` starts one and exports `ZAIBEI_TEST_POSTGRES_URL`).
//!
//! Databases are created with `psql`, so the test kit needs no SQL driver of its own.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable naming the test server: `postgres://USER@127.0.0.1:PORT/postgres`.
pub const POSTGRES_URL_VAR: &str = "ZAIBEI_TEST_POSTGRES_URL";

/// The URL of the test PostgreSQL server.
///
/// # Panics
///
/// When `ZAIBEI_TEST_POSTGRES_URL` is not set: the PostgreSQL tests must run, never skip
/// silently. Run them through `scripts/test`, or start a server with
/// `eval "$(scripts/pg-test-server start DIR)"`.
pub fn server_url() -> String {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
        _ => panic!(
            "{POSTGRES_URL_VAR} is not set: the PostgreSQL tests need a server. Run them with \
             scripts/test (it starts one), or start one yourself: \
             eval \"$(scripts/pg-test-server start /tmp/zaibei-pg)\""
        ),
    }
}

/// `url` with its database name replaced by `database` (query string kept).
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let root = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

/// Creates a new, uniquely named, empty database on the test server and returns its URL.
///
/// # Panics
///
/// When the server is not configured (see [`server_url`]) or `psql` fails.
pub fn fresh_database() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let server = server_url();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "zbtest_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let out = Command::new("psql")
        .arg("--no-psqlrc")
        .arg("--quiet")
        .arg("-v")
        .arg("ON_ERROR_STOP=1")
        .arg("--dbname")
        .arg(&server)
        .arg("--command")
        .arg(format!("CREATE DATABASE \"{name}\""))
        .output();
    match out {
        Ok(o) if o.status.success() => with_database(&server, &name),
        Ok(o) => panic!(
            "creating database {name} on {server} with psql failed ({}): {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("cannot run psql (install the postgresql client): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced() {
        assert_eq!(
            with_database("postgres://zb@127.0.0.1:5432/postgres", "x"),
            "postgres://zb@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://zb@127.0.0.1:5432/postgres?sslmode=disable", "x"),
            "postgres://zb@127.0.0.1:5432/x?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://zb@127.0.0.1:5432", "x"),
            "postgres://zb@127.0.0.1:5432/x"
        );
    }
}
