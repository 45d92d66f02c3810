//! Prometheus metrics: counters kept in memory by this replica, and gauges read from the
//! catalogue at scrape time (so every replica reports the same platform-wide figures).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Row;

use crate::catalogue::Catalogue;
use crate::time::now_ms;

/// This replica's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    bytes_written: AtomicU64,
    bytes_read: AtomicU64,
}

impl Metrics {
    /// Counts bytes written into repositories.
    pub fn add_written(&self, n: i64) {
        self.bytes_written
            .fetch_add(u64::try_from(n).unwrap_or(0), Ordering::Relaxed);
    }

    /// Counts bytes read from repositories.
    pub fn add_read(&self, n: usize) {
        self.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// The exposition text.
    pub async fn render(&self, cat: &Catalogue) -> Result<String, sqlx::Error> {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP zaibei_repository_bytes_written_total Bytes of repository objects written through this replica.\n# TYPE zaibei_repository_bytes_written_total counter\nzaibei_repository_bytes_written_total {}",
            self.bytes_written.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zaibei_repository_bytes_read_total Bytes of repository objects read through this replica.\n# TYPE zaibei_repository_bytes_read_total counter\nzaibei_repository_bytes_read_total {}",
            self.bytes_read.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP zaibei_jobs Jobs by tenant, kind and state.\n# TYPE zaibei_jobs gauge"
        );
        for row in sqlx::query("SELECT tenant, kind, state, COUNT(*) AS n FROM jobs GROUP BY tenant, kind, state ORDER BY tenant, kind, state")
            .fetch_all(&cat.pool)
            .await?
        {
            let tenant: String = row.try_get("tenant")?;
            let kind: String = row.try_get("kind")?;
            let state: String = row.try_get("state")?;
            let n: i64 = row.try_get("n")?;
            let _ = writeln!(out, "zaibei_jobs{{tenant=\"{}\",kind=\"{}\",state=\"{}\"}} {n}", label(&tenant), label(&kind), label(&state));
        }
        let _ = writeln!(
            out,
            "# HELP zaibei_job_errors Failed jobs by tenant.\n# TYPE zaibei_job_errors gauge"
        );
        for row in sqlx::query("SELECT tenant, COUNT(*) AS n FROM jobs WHERE state = 'failed' GROUP BY tenant ORDER BY tenant")
            .fetch_all(&cat.pool)
            .await?
        {
            let tenant: String = row.try_get("tenant")?;
            let n: i64 = row.try_get("n")?;
            let _ = writeln!(out, "zaibei_job_errors{{tenant=\"{}\"}} {n}", label(&tenant));
        }
        let _ = writeln!(
            out,
            "# HELP zaibei_repository_bytes Bytes stored per repository.\n# TYPE zaibei_repository_bytes gauge"
        );
        for row in sqlx::query("SELECT tenant, name, used_bytes FROM repos ORDER BY tenant, name")
            .fetch_all(&cat.pool)
            .await?
        {
            let tenant: String = row.try_get("tenant")?;
            let name: String = row.try_get("name")?;
            let n: i64 = row.try_get("used_bytes")?;
            let _ = writeln!(
                out,
                "zaibei_repository_bytes{{tenant=\"{}\",repo=\"{}\"}} {n}",
                label(&tenant),
                label(&name)
            );
        }
        let _ = writeln!(
            out,
            "# HELP zaibei_rpo_lag_seconds Seconds since the last successful backup of each policy (-1: never).\n# TYPE zaibei_rpo_lag_seconds gauge"
        );
        let now = now_ms();
        for row in sqlx::query("SELECT p.tenant, p.name, (SELECT MAX(j.finished_ms) FROM jobs j WHERE j.policy = p.id AND j.kind = 'backup' AND j.state = 'succeeded') AS last FROM policies p ORDER BY p.tenant, p.name")
            .fetch_all(&cat.pool)
            .await?
        {
            let tenant: String = row.try_get("tenant")?;
            let name: String = row.try_get("name")?;
            let last: Option<i64> = row.try_get("last")?;
            let lag = last.map_or(-1.0, |l| (now - l) as f64 / 1000.0);
            let _ = writeln!(out, "zaibei_rpo_lag_seconds{{tenant=\"{}\",policy=\"{}\"}} {lag}", label(&tenant), label(&name));
        }
        Ok(out)
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
