//! The catalogue: the server's SQL database (SQLite embedded by default, PostgreSQL to scale),
//! opened through sqlx's `Any` driver with one migration set per dialect.

use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::ServerError;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Which SQL dialect the catalogue speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite: one writer at a time, so a transaction's reads are already serialised.
    Sqlite,
    /// PostgreSQL: row locks (`FOR UPDATE`) serialise replicas.
    Postgres,
}

/// The opened catalogue.
#[derive(Debug, Clone)]
pub struct Catalogue {
    /// The connection pool.
    pub pool: AnyPool,
    /// Its dialect.
    pub dialect: Dialect,
}

impl Catalogue {
    /// Connects to `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Catalogue, ServerError> {
        install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(ServerError::Config(format!(
                "unsupported database URL {:?}: use sqlite://PATH or postgres://…",
                redact(url)
            )));
        };
        let mut options = AnyPoolOptions::new()
            .max_connections(if dialect == Dialect::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(30));
        if dialect == Dialect::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA busy_timeout = 30000").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(url).await.map_err(|e| {
            ServerError::Database(format!("cannot open the catalogue {}: {e}", redact(url)))
        })?;
        let migrator = match dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator.run(&pool).await.map_err(|e| {
            ServerError::Database(format!("migrating the catalogue {}: {e}", redact(url)))
        })?;
        Ok(Catalogue { pool, dialect })
    }

    /// Starts a transaction that writes: on SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so read-then-write sequences in it are serialised.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        match self.dialect {
            Dialect::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        }
    }

    /// ` FOR UPDATE` on PostgreSQL, nothing on SQLite (whose writers are serialised).
    pub fn for_update(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// ` FOR UPDATE SKIP LOCKED` on PostgreSQL, nothing on SQLite.
    pub fn skip_locked(&self) -> &'static str {
        match self.dialect {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// Whether the catalogue answers (readiness).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(
            redact("postgres://zb:secret@127.0.0.1:5432/zb"),
            "postgres://zb:***@127.0.0.1:5432/zb"
        );
        assert_eq!(redact("sqlite:///x.db"), "sqlite:///x.db");
    }
}
