//! Jobs: what the server schedules and agents (or the server itself) run, and what they report.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A backup of a policy's paths, run by the policy's agent.
    Backup,
    /// A structural check of a repository, run by the server with the maintenance key.
    Check,
    /// Retention of a policy (forget), run by the server with the maintenance key.
    Forget,
    /// Removal of unused data (prune), run by the server with the maintenance key.
    Prune,
    /// Content verification (`check --read-data`), run by the policy's agent with the full key.
    Verify,
    /// A DR drill (restore into scratch space, verify, RTO/RPO), run by the policy's agent.
    Drill,
    /// A restore of a snapshot into a directory of the policy's agent host.
    Restore,
    /// A copy of a repository's snapshots into another repository of the tenant sharing its
    /// key material (typically on another storage site), run by the server with the
    /// maintenance keys.
    Copy,
}

impl JobKind {
    /// The stable code of the kind.
    pub fn code(self) -> &'static str {
        match self {
            JobKind::Backup => "backup",
            JobKind::Check => "check",
            JobKind::Forget => "forget",
            JobKind::Prune => "prune",
            JobKind::Verify => "verify",
            JobKind::Drill => "drill",
            JobKind::Restore => "restore",
            JobKind::Copy => "copy",
        }
    }

    /// Every kind.
    pub const ALL: &'static [JobKind] = &[
        JobKind::Backup,
        JobKind::Check,
        JobKind::Forget,
        JobKind::Prune,
        JobKind::Verify,
        JobKind::Drill,
        JobKind::Restore,
        JobKind::Copy,
    ];

    /// The kind with this code.
    pub fn from_code(code: &str) -> Option<JobKind> {
        JobKind::ALL.iter().copied().find(|k| k.code() == code)
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting to be claimed.
    Queued,
    /// Claimed by a runner, which reports on it.
    Running,
    /// Finished and succeeded.
    Succeeded,
    /// Finished and failed (the error says why).
    Failed,
    /// Cancelled before it finished.
    Cancelled,
}

impl JobState {
    /// The stable code of the state.
    pub fn code(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state with this code.
    pub fn from_code(code: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|k| k.code() == code)
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// How many snapshots of a policy's series to keep (as `zaibei forget --keep-*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// The newest N snapshots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// The newest snapshot of each of the last N hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_hourly: Option<u32>,
    /// The newest snapshot of each of the last N days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_daily: Option<u32>,
    /// The newest snapshot of each of the last N weeks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_weekly: Option<u32>,
    /// The newest snapshot of each of the last N months.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_monthly: Option<u32>,
    /// The newest snapshot of each of the last N years.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_yearly: Option<u32>,
}

impl Retention {
    /// Whether the policy keeps everything (no rule given).
    pub fn keeps_all(&self) -> bool {
        self.keep_last.is_none()
            && self.keep_hourly.is_none()
            && self.keep_daily.is_none()
            && self.keep_weekly.is_none()
            && self.keep_monthly.is_none()
            && self.keep_yearly.is_none()
    }
}

/// A job handed to an agent: everything it needs to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AgentJob {
    /// The job's id.
    pub id: String,
    /// What to do.
    pub kind: JobKind,
    /// The repository's name within the tenant (the agent builds its URL).
    pub repo: String,
    /// Paths to back up.
    pub paths: Vec<String>,
    /// Exclude patterns (as `zaibei backup --exclude`).
    pub excludes: Vec<String>,
    /// Tags for the snapshot.
    pub tags: Vec<String>,
    /// The snapshot a restore or drill is about (`latest` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The directory a restore writes into, on the agent's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What an agent reports about a job it runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobReport {
    /// `running` for progress, `succeeded` or `failed` at the end.
    pub state: JobState,
    /// Progress while running: bytes and files done so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<JobProgress>,
    /// The snapshot a successful backup made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The result's summary (the `--json` summary of the command that ran).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<serde_json::Value>,
    /// Why a failed job failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Progress of a running job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct JobProgress {
    /// Files processed.
    pub files: u64,
    /// Bytes processed.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for k in JobKind::ALL {
            assert_eq!(JobKind::from_code(k.code()), Some(*k));
        }
        assert_eq!(JobState::from_code("queued"), Some(JobState::Queued));
        assert_eq!(JobState::from_code("done"), None);
    }

    #[test]
    fn retention_rules() {
        let r = Retention {
            keep_last: Some(3),
            ..Retention::default()
        };
        assert!(!r.keeps_all());
        assert!(Retention::default().keeps_all());
        assert!(serde_json::from_str::<Retention>(r#"{"keep_everything": 1}"#).is_err());
    }
}
