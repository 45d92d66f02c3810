//! Running jobs: claim, run `zaibei backup` (or `check --read-data`, `drill`, `restore`) against
//! the server's repository API with the agent's token, report a heartbeat while it runs, then
//! the result.

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
    /// The only directory restores may write beneath (none: restore jobs are refused). The
    /// host decides this, not the server, so nobody who controls the server can make the agent
    /// overwrite the host's files.
    pub restore_root: Option<PathBuf>,
}

/// Whether a restore into `target` is allowed: beneath `root`, no `..`, and not an existing
/// non-empty directory (a restore never overwrites what the host holds).
pub fn check_restore_target(root: Option<&std::path::Path>, target: &str) -> Result<(), String> {
    use std::path::{Component, Path};
    let root = root.ok_or("this agent takes no restore jobs (start it with --restore-root DIR)")?;
    let target = Path::new(target);
    if !target.is_absolute()
        || target
            .components()
            .any(|c| matches!(c, Component::ParentDir))
    {
        return Err(format!(
            "restore target {} is not a plain absolute path",
            target.display()
        ));
    }
    if !target.starts_with(root) || target == root {
        return Err(format!(
            "restore target {} is not beneath this agent's restore root {}",
            target.display(),
            root.display()
        ));
    }
    match std::fs::read_dir(target) {
        Ok(entries) => {
            if entries.into_iter().next().is_some() {
                Err(format!(
                    "restore target {} exists and is not empty",
                    target.display()
                ))
            } else {
                Ok(())
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("restore target {}: {e}", target.display())),
    }
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
        JobKind::Backup | JobKind::Verify | JobKind::Drill | JobKind::Restore => {
            run_job(client, creds, opts, &job).await
        }
        other => failed(format!("agents do not run {} jobs", other.code())),
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

/// The `zaibei` arguments (after `--json -r REPO`) that run `job`.
pub fn job_args(job: &AgentJob) -> Result<Vec<String>, String> {
    let snapshot = job.snapshot.clone().unwrap_or_else(|| "latest".into());
    let mut args = Vec::new();
    match job.kind {
        JobKind::Backup => {
            if job.paths.is_empty() {
                return Err("the policy names no paths".into());
            }
            args.push("backup".to_owned());
            for e in &job.excludes {
                args.extend(["--exclude".to_owned(), e.clone()]);
            }
            for t in &job.tags {
                args.extend(["--tag".to_owned(), t.clone()]);
            }
            args.push("--".to_owned());
            args.extend(job.paths.iter().cloned());
        }
        JobKind::Verify => args.extend(["check".to_owned(), "--read-data".to_owned()]),
        JobKind::Drill => {
            args.push("drill".to_owned());
            for t in &job.tags {
                args.extend(["--tag".to_owned(), t.clone()]);
            }
            if snapshot != "latest" {
                args.extend(["--".to_owned(), snapshot]);
            }
        }
        JobKind::Restore => {
            let target = job
                .target
                .clone()
                .ok_or("a restore names its target directory")?;
            args.extend([
                "restore".to_owned(),
                "--target".to_owned(),
                target,
                "--".to_owned(),
                snapshot,
            ]);
        }
        other => return Err(format!("agents do not run {} jobs", other.code())),
    }
    Ok(args)
}

async fn run_job(
    client: &AgentClient,
    creds: &Credentials,
    opts: &RunOptions,
    job: &AgentJob,
) -> JobReport {
    if job.kind == JobKind::Restore {
        let target = job.target.as_deref().unwrap_or("");
        if let Err(e) = check_restore_target(opts.restore_root.as_deref(), target) {
            return failed(e);
        }
    }
    let args = match job_args(job) {
        Ok(a) => a,
        Err(e) => return failed(e),
    };
    let repo = format!("{}/{}/{}", creds.server, creds.tenant, job.repo);
    let mut cmd = tokio::process::Command::new(&opts.zaibei);
    cmd.arg("--json").arg("-r").arg(&repo).args(&args);
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
    // Stdout is read line by line: `status` lines carry live progress for the heartbeats,
    // and the last JSON object is the command's summary.
    let progress = std::sync::Arc::new(std::sync::Mutex::new(None::<JobProgress>));
    let out = {
        let progress = std::sync::Arc::clone(&progress);
        tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(&mut stdout).lines();
            let mut last = None;
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(value) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                if value.get("message_type").and_then(|t| t.as_str()) == Some("status") {
                    let count = |f: &str| value.get(f).and_then(|v| v.as_u64()).unwrap_or(0);
                    if let Ok(mut p) = progress.lock() {
                        *p = Some(JobProgress {
                            files: count("files_done"),
                            bytes: count("bytes_done"),
                        });
                    }
                } else if value.is_object() {
                    last = Some(value);
                }
            }
            last
        })
    };
    let err = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf).await;
        buf
    });
    let status = loop {
        tokio::select! {
            s = child.wait() => break s,
            () = tokio::time::sleep(opts.heartbeat) => {
                let now = progress.lock().ok().and_then(|p| p.clone());
                let beat = JobReport { state: JobState::Running, progress: now, snapshot: None, summary: None, error: None };
                if let Err(e) = client.report(&creds.tenant, &creds.token, &job.id, &beat).await {
                    tracing::warn!("heartbeat of job {}: {e}", job.id);
                }
            }
        }
    };
    let summary = out.await.ok().flatten();
    let stderr = err.await.unwrap_or_default();
    let status = match status {
        Ok(s) => s,
        Err(e) => return failed(format!("waiting for the {}: {e}", job.kind.code())),
    };
    if !status.success() {
        let tail: Vec<&str> = std::str::from_utf8(&stderr)
            .unwrap_or("")
            .lines()
            .rev()
            .take(5)
            .collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        return JobReport {
            state: JobState::Failed,
            progress: None,
            snapshot: None,
            summary,
            error: Some(format!(
                "{} exited with {status}: {}",
                job.kind.code(),
                tail.join("\n")
            )),
        };
    }
    let Some(summary) = summary else {
        return failed(format!("{} printed no summary", job.kind.code()));
    };
    let count = |field: &str| summary.get(field).and_then(|v| v.as_u64()).unwrap_or(0);
    let progress = JobProgress {
        files: count("total_files_processed"),
        bytes: count("total_bytes_processed"),
    };
    JobReport {
        state: JobState::Succeeded,
        progress: Some(progress),
        snapshot: match job.kind {
            JobKind::Backup => summary
                .get("snapshot_id")
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            _ => None,
        },
        summary: Some(summary),
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_targets_stay_beneath_the_root_and_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("restores");
        std::fs::create_dir_all(root.join("full")).unwrap();
        std::fs::write(root.join("full/x"), b"x").unwrap();
        let t = |p: &str| check_restore_target(Some(&root), &root.join(p).display().to_string());
        assert!(t("new").is_ok());
        assert!(t("full").is_err(), "non-empty");
        assert!(t("a/../../etc").is_err(), "parent components");
        assert!(check_restore_target(Some(&root), "/etc").is_err());
        assert!(check_restore_target(Some(&root), "relative").is_err());
        assert!(check_restore_target(None, "/tmp/x").is_err());
        assert!(check_restore_target(Some(&root), &root.display().to_string()).is_err());
    }

    #[test]
    fn job_arguments() {
        let job = AgentJob {
            id: "j".into(),
            kind: JobKind::Restore,
            repo: "r".into(),
            paths: vec![],
            excludes: vec![],
            tags: vec![],
            snapshot: Some("abc".into()),
            target: Some("/srv/restores/x".into()),
        };
        assert_eq!(
            job_args(&job).unwrap(),
            ["restore", "--target", "/srv/restores/x", "--", "abc"]
        );
        let backup = AgentJob {
            kind: JobKind::Backup,
            ..job.clone()
        };
        assert!(job_args(&backup).is_err(), "a backup without paths");
        let verify = AgentJob {
            kind: JobKind::Verify,
            ..job
        };
        assert_eq!(job_args(&verify).unwrap(), ["check", "--read-data"]);
    }
}
