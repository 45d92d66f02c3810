//! Server-side jobs: structural check, retention (forget) and prune of tenants' repositories,
//! run with the repository's maintenance-only key — which reads which blobs snapshots and
//! packs reference, never file contents or names. Restores, drills and content verification
//! need the full key and run where it is, on the protected hosts.

use std::sync::Arc;
use std::time::Duration;

use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_format::KeyScope;
use zaibei_repo::retention::{self, GroupBy, KeepPolicy};
use zaibei_repo::{CheckOptions, PruneOptions, Repository};
use zaibei_types::api::PolicySpec;
use zaibei_types::jobs::{JobKind, JobState};

use crate::api::ctx::event;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time::now_ms;

/// The sealing context of a repository's maintenance key.
pub fn key_context(tenant: &str, repo: &str) -> String {
    format!("zaibei maintenance key v1 {tenant}/{repo}")
}

/// Opens a repository with `password`, which must belong to a maintenance-only key.
pub async fn open_maintenance(
    st: &AppState,
    tenant: &str,
    repo: &str,
    password: &[u8],
) -> Result<Repository, String> {
    let site = crate::api::repos::require_repo(st, tenant, repo)
        .await
        .map_err(|e| e.to_string())?;
    let store = st
        .storage
        .open(site.as_deref(), tenant, repo)
        .map_err(|e| e.to_string())?;
    let opened = Repository::open(store, password)
        .await
        .map_err(|e| format!("opening {tenant}/{repo}: {e}"))?;
    if opened.scope() != KeyScope::Maintenance {
        return Err("this key reads file contents; the server takes only maintenance-only keys (`zaibei key add --maintenance-only`)".into());
    }
    Ok(opened)
}

/// The maintenance key's password of a repository, when one was registered.
async fn password_of(
    st: &AppState,
    tenant: &str,
    repo: &str,
) -> Result<zaibei_crypto::Zeroizing<Vec<u8>>, String> {
    let row = sqlx::query("SELECT maintenance_key FROM repos WHERE tenant = $1 AND name = $2")
        .bind(tenant)
        .bind(repo)
        .fetch_optional(&st.cat.pool)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no repository {tenant}/{repo}"))?;
    let sealed: Option<String> = row.try_get("maintenance_key").map_err(|e| e.to_string())?;
    let sealed =
        sealed.ok_or_else(|| "no maintenance key is registered for this repository".to_owned())?;
    st.secret.open(&key_context(tenant, repo), &sealed)
}

/// Claims one queued server-side job and runs it; returns whether there was one.
pub async fn run_one(st: &AppState) -> Result<bool, ApiError> {
    let now = now_ms();
    let mut tx = st.cat.begin_write().await?;
    let row = sqlx::query(&format!(
        "SELECT id, tenant, kind, policy, repo, params FROM jobs WHERE agent IS NULL AND state = 'queued' ORDER BY queued_ms, id LIMIT 1{}",
        st.cat.skip_locked()
    ))
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    let id: String = row.try_get("id")?;
    let claimed = sqlx::query("UPDATE jobs SET state = 'running', runner = $1, started_ms = $2, heartbeat_ms = $3 WHERE id = $4 AND state = 'queued'")
        .bind(&st.replica)
        .bind(now)
        .bind(now)
        .bind(&id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    if claimed != 1 {
        return Ok(false);
    }
    let tenant: String = row.try_get("tenant")?;
    let kind: String = row.try_get("kind")?;
    let policy: Option<String> = row.try_get("policy")?;
    let repo: String = row.try_get("repo")?;
    let params: Option<String> = row.try_get("params")?;
    let target: Option<String> = params
        .and_then(|p| serde_json::from_str::<serde_json::Value>(&p).ok())
        .and_then(|v| v.get("target").and_then(|t| t.as_str()).map(str::to_owned));
    let heartbeat = {
        let st = st.clone();
        let id = id.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let _ = sqlx::query(
                    "UPDATE jobs SET heartbeat_ms = $1 WHERE id = $2 AND state = 'running'",
                )
                .bind(now_ms())
                .bind(&id)
                .execute(&st.cat.pool)
                .await;
            }
        })
    };
    // The repository library's futures are not `Send` (their stream closures borrow), so a
    // job runs on a blocking thread that drives it with this runtime's handle.
    let handle = tokio::runtime::Handle::current();
    let job = {
        let st = st.clone();
        let (kind, tenant, repo, policy, target) = (
            kind.clone(),
            tenant.clone(),
            repo.clone(),
            policy.clone(),
            target.clone(),
        );
        tokio::task::spawn_blocking(move || {
            handle.block_on(async move {
                match JobKind::from_code(&kind) {
                    Some(JobKind::Check) => check(&st, &tenant, &repo).await,
                    Some(JobKind::Forget) => forget(&st, &tenant, &repo, policy.as_deref()).await,
                    Some(JobKind::Prune) => prune(&st, &tenant, &repo).await,
                    Some(JobKind::Copy) => copy(&st, &tenant, &repo, target.as_deref()).await,
                    _ => Err(format!("the server does not run {kind} jobs")),
                }
            })
        })
    };
    let result = job
        .await
        .unwrap_or_else(|e| Err(format!("the job's thread failed: {e}")));
    heartbeat.abort();
    let (state, summary, error) = match result {
        Ok(summary) => (JobState::Succeeded, Some(summary), None),
        Err(e) => (JobState::Failed, None, Some(e)),
    };
    let mut tx = st.cat.begin_write().await?;
    sqlx::query("UPDATE jobs SET state = $1, finished_ms = $2, heartbeat_ms = $3, summary = $4, error = $5 WHERE id = $6 AND state = 'running'")
        .bind(state.code())
        .bind(now_ms())
        .bind(now_ms())
        .bind(summary.as_ref().map(ToString::to_string))
        .bind(error.clone())
        .bind(&id)
        .execute(&mut *tx)
        .await?;
    let outcome = if error.is_none() {
        Outcome::Success
    } else {
        Outcome::Failure
    };
    let action = match JobKind::from_code(&kind) {
        Some(JobKind::Forget) => AuditAction::SnapshotForgotten,
        Some(JobKind::Prune) => AuditAction::RepoPruned,
        _ => AuditAction::JobRun,
    };
    let e = event(
        format!("server:{}", st.replica),
        None,
        action,
        Some(&tenant),
        format!("job:{id}"),
        outcome,
    )
    .with_details(
        serde_json::json!({ "kind": kind, "repo": repo, "summary": summary, "error": error }),
    );
    st.audit.append(&st.cat, &mut tx, e).await?;
    tx.commit().await?;
    st.audit.after_commit(&st.cat).await;
    Ok(true)
}

/// Refuses destructive work on a repository that belongs to a set of sites: its primary and
/// fencing are decided by `zaibei sync` among the sites, which this server cannot ask.
async fn refuse_sites(repo: &Repository) -> Result<(), String> {
    let state = repo.site_state().await.map_err(|e| e.to_string())?;
    if state.record.is_some() || state.newer_unreadable() {
        return Err("this repository belongs to a set of sites: forget and prune run at its primary (`zaibei forget`, `zaibei sync --prune`), where fencing is checked".into());
    }
    Ok(())
}

async fn check(st: &AppState, tenant: &str, repo: &str) -> Result<serde_json::Value, String> {
    let pw = password_of(st, tenant, repo).await?;
    let opened = open_maintenance(st, tenant, repo, &pw).await?;
    let indexed = opened.load_index().await.map_err(|e| e.to_string())?;
    let report = zaibei_repo::check(&indexed, CheckOptions::default(), &|_, _, _| {})
        .await
        .map_err(|e| e.to_string())?;
    let errors = report.errors();
    let problems: Vec<String> = report
        .problems
        .iter()
        .take(100)
        .map(|p| format!("{p:?}"))
        .collect();
    if errors > 0 {
        return Err(format!(
            "check found {errors} errors: {}",
            problems.join("; ")
        ));
    }
    Ok(serde_json::json!({ "errors": 0, "warnings": report.problems.len(), "problems": problems }))
}

async fn forget(
    st: &AppState,
    tenant: &str,
    repo: &str,
    policy: Option<&str>,
) -> Result<serde_json::Value, String> {
    let policy = policy.ok_or("a forget job names its policy")?;
    let text: String = sqlx::query("SELECT spec FROM policies WHERE id = $1 AND tenant = $2")
        .bind(policy)
        .bind(tenant)
        .fetch_optional(&st.cat.pool)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the policy was deleted")?
        .try_get("spec")
        .map_err(|e| e.to_string())?;
    let spec: PolicySpec = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    if spec.retention.keeps_all() {
        return Ok(serde_json::json!({ "forgotten": [], "kept": "all" }));
    }
    let keep = KeepPolicy {
        last: spec.retention.keep_last,
        hourly: spec.retention.keep_hourly,
        daily: spec.retention.keep_daily,
        weekly: spec.retention.keep_weekly,
        monthly: spec.retention.keep_monthly,
        yearly: spec.retention.keep_yearly,
        ..KeepPolicy::default()
    };
    let pw = password_of(st, tenant, repo).await?;
    let opened = open_maintenance(st, tenant, repo, &pw).await?;
    refuse_sites(&opened).await?;
    let list = opened.list_snapshots().await.map_err(|e| e.to_string())?;
    // Retention counts only the snapshots this policy's backup jobs reported, each at the time
    // the server saw its job finish — not the time written inside it. A compromised agent can
    // thus not date forged snapshots to push the real ones out: it would need as many
    // scheduled runs as the policy keeps snapshots.
    let observed: std::collections::HashMap<String, i64> = sqlx::query(
        "SELECT snapshot, finished_ms FROM jobs WHERE policy = $1 AND tenant = $2 AND kind = 'backup' \
         AND state = 'succeeded' AND snapshot IS NOT NULL AND finished_ms IS NOT NULL",
    )
    .bind(policy)
    .bind(tenant)
    .fetch_all(&st.cat.pool)
    .await
    .map_err(|e| e.to_string())?
    .iter()
    .filter_map(|r| Some((r.try_get::<String, _>("snapshot").ok()?, r.try_get::<i64, _>("finished_ms").ok()?)))
    .collect();
    let series: Vec<_> = list
        .snapshots
        .into_iter()
        .filter_map(|(id, mut snap)| {
            let seen = *observed.get(&id.to_hex())?;
            snap.time = zaibei_format::Timestamp {
                secs: seen.div_euclid(1000),
                nanos: u32::try_from(seen.rem_euclid(1000) * 1_000_000).unwrap_or(0),
            };
            Some((id, snap))
        })
        .collect();
    let by = GroupBy::parse("host,paths").map_err(|e| e.to_string())?;
    let mut doomed = Vec::new();
    let mut kept = 0usize;
    for group in retention::apply(&keep, &series, by, &jiff::tz::TimeZone::UTC) {
        for d in group.decisions {
            if d.keep() {
                kept += 1;
            } else {
                doomed.push(d.id);
            }
        }
    }
    if !doomed.is_empty() {
        opened
            .forget_snapshots(&doomed)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(serde_json::json!({
        "forgotten": doomed.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "kept": kept,
        "damaged": list.damaged.len(),
    }))
}

async fn prune(st: &AppState, tenant: &str, repo: &str) -> Result<serde_json::Value, String> {
    let pw = password_of(st, tenant, repo).await?;
    let opened = open_maintenance(st, tenant, repo, &pw).await?;
    refuse_sites(&opened).await?;
    let indexed = opened.load_index().await.map_err(|e| e.to_string())?;
    let report = zaibei_repo::prune(&indexed, &PruneOptions::default(), &|_, _, _| {})
        .await
        .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "snapshots": report.snapshots,
        "packs": report.packs,
        "pack_bytes": report.pack_bytes,
        "used_bytes": report.used_bytes,
        "unused_bytes": report.unused_bytes,
        "unused_bytes_after": report.unused_bytes_after,
        "unused_packs": report.unused_packs,
        "orphan_packs": report.orphan_packs,
        "repacked_packs": report.repacked_packs,
    }))
}

/// Copies every snapshot of `repo` that `target` lacks into `target`, a repository of the same
/// tenant that shares its key material (created with `zaibei init --from`), moving packs as
/// they are: the maintenance keys suffice, nothing is decrypted or re-encrypted.
async fn copy(
    st: &AppState,
    tenant: &str,
    repo: &str,
    target: Option<&str>,
) -> Result<serde_json::Value, String> {
    let target = target.ok_or("a copy job names its target repository")?;
    if target == repo {
        return Err("a repository is not copied into itself".into());
    }
    let src_pw = password_of(st, tenant, repo).await?;
    let dst_pw = password_of(st, tenant, target).await?;
    let src = open_maintenance(st, tenant, repo, &src_pw).await?;
    let dst = open_maintenance(st, tenant, target, &dst_pw).await?;
    let src = Arc::new(src.load_index().await.map_err(|e| e.to_string())?);
    let dst = Arc::new(dst.load_index().await.map_err(|e| e.to_string())?);
    if zaibei_repo::copy::copy_mode(&src, &dst) != zaibei_repo::copy::CopyMode::Packs {
        return Err(format!(
            "{tenant}/{target} does not share key material with {tenant}/{repo}: create it with `zaibei init --from` (the server cannot re-encrypt without the content key)"
        ));
    }
    let list = src.list_snapshots().await.map_err(|e| e.to_string())?;
    let report = zaibei_repo::copy::copy_snapshots(
        &src,
        &dst,
        list.snapshots,
        &zaibei_repo::copy::CopyOptions::default(),
        &|_, _, _| {},
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(serde_json::json!({
        "target": target,
        "copied": report.copied.iter().map(|c| c.source.to_hex()).collect::<Vec<_>>(),
        "already_present": report.present.len(),
        "bytes_written": report.bytes_written,
        "objects_verified": report.objects_verified,
        "damaged_at_source": list.damaged.len(),
    }))
}

/// Runs queued server-side jobs one after another until `stop`.
pub async fn worker(st: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let st = Arc::new(st);
    loop {
        // A job under way runs to its end (prune and forget are crash-safe, but a job left
        // half-done would stay "running" until it is declared stale); shutdown waits for it.
        if *stop.borrow() {
            return;
        }
        let ran = run_one(&st).await;
        let pause = match ran {
            Ok(true) => Duration::ZERO,
            Ok(false) => Duration::from_secs(st.config.scheduler_interval_secs.max(1)),
            Err(e) => {
                tracing::error!("server job: {e}");
                Duration::from_secs(st.config.scheduler_interval_secs.max(1))
            }
        };
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}
