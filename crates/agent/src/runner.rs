//! Running jobs: claim, run `zaibei backup` against the server's repository API with the
//! agent's token, report a heartbeat while it runs, then the result.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use zaibei_types::jobs::{AgentJob, JobKind, JobProgress, JobReport, JobState};

use crate::client::{AgentClient, ClientError};
use crate::credentials::Credentials;

/// How the agent runs jobs.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `zaibei` binary that runs backups (normally this very executable).
    pub zaibei: PathBuf,
    /// The repository password file (the key never leaves this host).
    pub password_file: PathBuf,
    /// The server's CA certificate file, passed on to the backup.
    pub server_ca: Option<PathBuf>,
    /// Time between claims when there is nothing to do.
    pub poll: Duration,
    /// Time between heartbeats while a job runs.
    pub heartbeat: Duration,
}

/// Claims and runs at most one job; returns whether there was one.
pub async fn run_once(
    client: &AgentClient,
    creds: &Credentials,
    opts: &RunOptions,
) -> Result<bool, ClientError> {
    let Some(job) = client.claim(&creds.tenant, &creds.token).await? else {
        return Ok(false);
    };
    tracing::info!(
        "job {} ({:?}) for repository {}",
        job.id,
        job.kind,
        job.repo
    );
    let report = match job.kind {
        JobKind::Backup => run_backup(client, creds, opts, &job).await,
        other => JobReport {
            state: JobState::Failed,
            progress: None,
            snapshot: None,
            summary: None,
            error: Some(format!("agents do not run {} jobs", other.code())),
        },
    };
    match &report.error {
        None => tracing::info!(
            "job {} succeeded: snapshot {}",
            job.id,
            report.snapshot.as_deref().unwrap_or("?")
        ),
        Some(e) => tracing::warn!("job {} failed: {e}", job.id),
    }
    // The result must reach the server: retry transient failures for a while.
    let mut wait = Duration::from_secs(1);
    loop {
        match client
            .report(&creds.tenant, &creds.token, &job.id, &report)
            .await
        {
            Ok(()) => return Ok(true),
            Err(e) if e.is_transient() && wait < Duration::from_secs(300) => {
                tracing::warn!("reporting job {}: {e}; retrying in {wait:?}", job.id);
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs until `stop` resolves: claims a job whenever idle, waits `poll` when there is none
/// or the server is unreachable.
pub async fn run_loop(
    client: &AgentClient,
    creds: &Credentials,
    opts: &RunOptions,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    loop {
        let worked = tokio::select! {
            r = run_once(client, creds, opts) => r,
            () = &mut stop => return,
        };
        let pause = match worked {
            Ok(true) => Duration::ZERO,
            Ok(false) => opts.poll,
            Err(e) => {
                tracing::warn!("{e}");
                opts.poll
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = &mut stop => return,
        }
    }
}

fn failed(error: String) -> JobReport {
    JobReport {
        state: JobState::Failed,
        progress: None,
        snapshot: None,
        summary: None,
        error: Some(error),
    }
}

async fn run_backup(
    client: &AgentClient,
    creds: &Credentials,
    opts: &RunOptions,
    job: &AgentJob,
) -> JobReport {
    if job.paths.is_empty() {
        return failed("the policy names no paths".into());
    }
    let repo = format!("{}/{}/{}", creds.server, creds.tenant, job.repo);
    let mut cmd = tokio::process::Command::new(&opts.zaibei);
    cmd.arg("--json").arg("backup").arg("-r").arg(&repo);
    for e in &job.excludes {
        cmd.arg("--exclude").arg(e);
    }
    for t in &job.tags {
        cmd.arg("--tag").arg(t);
    }
    cmd.arg("--").args(&job.paths);
    cmd.env("ZAIBEI_TOKEN", &creds.token)
        .env("ZAIBEI_PASSWORD_FILE", &opts.password_file)
        .env_remove("ZAIBEI_REPOSITORY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(ca) = &opts.server_ca {
        cmd.env("ZAIBEI_SERVER_CA", ca);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return failed(format!("starting {}: {e}", opts.zaibei.display())),
    };
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return failed("the backup's output could not be captured".into());
    };
    let out = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf).await;
        buf
    });
    let err = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            () = tokio::time::sleep(opts.heartbeat) => {
                let beat = JobReport { state: JobState::Running, progress: None, snapshot: None, summary: None, error: None };
                if let Err(e) = client.report(&creds.tenant, &creds.token, &job.id, &beat).await {
                    tracing::warn!("heartbeat of job {}: {e}", job.id);
                }
            }
        }
    };
    let stdout = out.await.unwrap_or_default();
    let stderr = err.await.unwrap_or_default();
    let status = match status {
        Ok(s) => s,
        Err(e) => return failed(format!("waiting for the backup: {e}")),
    };
    let summary = String::from_utf8_lossy(&stdout)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("message_type").and_then(|t| t.as_str()) == Some("summary"));
    if !status.success() || summary.is_none() {
        let tail: String = String::from_utf8_lossy(&stderr)
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        return failed(format!("backup exited with {status}: {tail}"));
    }
    let summary = summary.unwrap_or_default();
    let progress = JobProgress {
        files: summary
            .get("total_files_processed")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
        bytes: summary
            .get("total_bytes_processed")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
    };
    JobReport {
        state: JobState::Succeeded,
        progress: Some(progress),
        snapshot: summary
            .get("snapshot_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        summary: Some(summary),
        error: None,
    }
}
