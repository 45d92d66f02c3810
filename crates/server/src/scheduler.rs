//! The scheduler: queues backup jobs of due policies and fails jobs whose runner went silent.
//! Every replica runs it; row locks (PostgreSQL `SKIP LOCKED`) and conditional updates make
//! sure a due policy is queued once and a job is claimed once.

use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_types::api::PolicySpec;

use crate::api::ctx::event;
use crate::api::policies::{queue_backup, queue_server_job};
use crate::error::ApiError;
use crate::schedule::Schedule;
use crate::state::AppState;
use crate::time::{now_ms, secs_to_ms};
use zaibei_types::jobs::JobKind;

/// One pass: queue what is due, expire what is stale. Returns the jobs queued.
pub async fn tick(st: &AppState) -> Result<usize, ApiError> {
    let now = now_ms();
    let mut queued = 0;
    let mut tx = st.cat.begin_write().await?;
    let due = sqlx::query(&format!(
        "SELECT id, tenant, name, spec FROM policies WHERE next_run_ms IS NOT NULL AND next_run_ms <= $1 ORDER BY next_run_ms LIMIT 100{}",
        st.cat.skip_locked()
    ))
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    for row in due {
        let id: String = row.try_get("id")?;
        let tenant: String = row.try_get("tenant")?;
        let name: String = row.try_get("name")?;
        let spec: PolicySpec = match serde_json::from_str(&row.try_get::<String, _>("spec")?) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("policy {tenant}/{name} is unreadable: {e}");
                continue;
            }
        };
        let next = Schedule::parse(&spec.schedule)
            .ok()
            .and_then(|s| s.next_after(now));
        sqlx::query("UPDATE policies SET next_run_ms = $1 WHERE id = $2")
            .bind(next)
            .bind(&id)
            .execute(&mut *tx)
            .await?;
        if let Some(job) = queue_backup(&mut tx, &tenant, &id, &spec).await? {
            queued += 1;
            let e = event(
                "scheduler",
                None,
                AuditAction::JobCreated,
                Some(&tenant),
                format!("job:{job}"),
                Outcome::Success,
            )
            .with_details(
                serde_json::json!({ "kind": "backup", "policy": name, "replica": st.replica }),
            );
            st.audit.append(&st.cat, &mut tx, e).await?;
        }
    }
    // Scheduled structural checks and prunes of policies' repositories (server-side jobs,
    // only where a maintenance key is registered).
    for (kind, column, field) in [
        (JobKind::Check, "next_check_ms", "check_schedule"),
        (JobKind::Prune, "next_prune_ms", "prune_schedule"),
        (JobKind::Copy, "next_copy_ms", "copy_schedule"),
    ] {
        let due = sqlx::query(&format!(
            "SELECT id, tenant, spec FROM policies WHERE {column} IS NOT NULL AND {column} <= $1 \
             ORDER BY {column} LIMIT 100{}",
            st.cat.skip_locked()
        ))
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for row in due {
            let id: String = row.try_get("id")?;
            let tenant: String = row.try_get("tenant")?;
            let spec: PolicySpec = match serde_json::from_str(&row.try_get::<String, _>("spec")?) {
                Ok(s) => s,
                Err(_) => continue,
            };
            let schedule = match field {
                "check_schedule" => &spec.check_schedule,
                "prune_schedule" => &spec.prune_schedule,
                _ => &spec.copy_schedule,
            };
            let next = schedule
                .as_deref()
                .and_then(|t| Schedule::parse(t).ok())
                .and_then(|s| s.next_after(now));
            sqlx::query(&format!("UPDATE policies SET {column} = $1 WHERE id = $2"))
                .bind(next)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            let has_key =
                sqlx::query("SELECT maintenance_key FROM repos WHERE tenant = $1 AND name = $2")
                    .bind(&tenant)
                    .bind(&spec.repo)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.try_get::<Option<String>, _>("maintenance_key"))
                    .transpose()?
                    .flatten()
                    .is_some();
            if !has_key {
                tracing::warn!(
                    "policy {tenant}/{}: scheduled {} skipped, no maintenance key is registered for {}",
                    spec.name,
                    kind.code(),
                    spec.repo
                );
                continue;
            }
            if let Some(job) = queue_server_job(
                &mut tx,
                &tenant,
                kind,
                None,
                &spec.repo,
                if kind == JobKind::Copy {
                    spec.copy_to.as_deref()
                } else {
                    None
                },
            )
            .await?
            {
                queued += 1;
                let e = event("scheduler", None, AuditAction::JobCreated, Some(&tenant), format!("job:{job}"), Outcome::Success)
                    .with_details(serde_json::json!({ "kind": kind.code(), "policy": spec.name, "repo": spec.repo, "replica": st.replica }));
                st.audit.append(&st.cat, &mut tx, e).await?;
            }
        }
    }
    let stale = now - secs_to_ms(st.config.job_stale_secs);
    let expired = sqlx::query("UPDATE jobs SET state = 'failed', finished_ms = $1, error = 'the runner stopped reporting' WHERE state = 'running' AND heartbeat_ms < $2")
        .bind(now).bind(stale).execute(&mut *tx).await?.rows_affected();
    if expired > 0 {
        tracing::warn!("{expired} jobs failed: their runners stopped reporting");
    }
    tx.commit().await?;
    if queued > 0 {
        st.audit.after_commit(&st.cat).await;
    }
    Ok(queued)
}
