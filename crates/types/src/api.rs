//! Requests and answers of the server's JSON API under `/api/v1/`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::jobs::{JobKind, JobProgress, JobState, Retention};
use crate::{Privilege, Role};

/// The body of every error answer: `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable error code and a human message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, snake_case code (documented in the user guide).
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
}

/// `POST /api/v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user's name.
    pub user: String,
    /// The password.
    pub password: String,
    /// The current TOTP code, for users who enrolled one.
    #[serde(default)]
    pub totp: Option<String>,
}

/// A freshly issued token (shown once; the server keeps only its hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenIssued {
    /// The token's id (for listing and revoking).
    pub id: String,
    /// The secret bearer token.
    pub token: String,
    /// When it expires (Unix ms).
    pub expires_ms: i64,
}

/// Who the caller is.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Me {
    /// The user's name.
    pub user: String,
    /// Its role.
    pub role: Role,
    /// Its tenant (tenant roles only).
    pub tenant: Option<String>,
    /// The privileges in effect for this token.
    pub privileges: Vec<Privilege>,
    /// Whether TOTP is enrolled.
    pub totp: bool,
}

/// `POST /api/v1/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The current password.
    pub old: String,
    /// The new password (must satisfy the security policy).
    pub new: String,
}

/// `POST /api/v1/me/tokens`: a scoped API token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// A label.
    pub name: String,
    /// The privileges the token carries: a subset of the user's (all of them when absent).
    #[serde(default)]
    pub privileges: Option<Vec<Privilege>>,
    /// Restricts the token to one repository of the user's tenant.
    #[serde(default)]
    pub repo: Option<String>,
    /// Lifetime in seconds (capped by the security policy).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenInfo {
    /// Its id.
    pub id: String,
    /// Its label.
    pub name: String,
    /// `session`, `api` or `agent`.
    pub kind: String,
    /// The privileges it is limited to (none: the owner's).
    pub privileges: Option<Vec<Privilege>>,
    /// The repository it is limited to.
    pub repo: Option<String>,
    /// Expiry (Unix ms).
    pub expires_ms: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

/// `TOTP` enrolment: the secret to put into an authenticator app.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TotpEnrolment {
    /// Base32 secret.
    pub secret: String,
    /// `otpauth://` URI.
    pub uri: String,
}

/// `POST /api/v1/me/totp/confirm` and `DELETE /api/v1/me/totp`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// The current code.
    pub code: String,
}

/// A tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Its name (`[a-z0-9][a-z0-9_-]{0,62}`).
    pub name: String,
    /// Storage quota in bytes (none: unlimited).
    pub quota_bytes: Option<u64>,
    /// Bytes stored in its repositories.
    pub used_bytes: u64,
}

/// `POST /api/v1/tenants`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Its name.
    pub name: String,
    /// Storage quota in bytes.
    #[serde(default)]
    pub quota_bytes: Option<u64>,
}

/// A user account as listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    /// The name.
    pub name: String,
    /// The role.
    pub role: Role,
    /// The tenant of a tenant role.
    pub tenant: Option<String>,
    /// Disabled accounts cannot log in.
    pub disabled: bool,
    /// Locked until (Unix ms) after repeated failed logins.
    pub locked_until_ms: Option<i64>,
    /// Whether TOTP is enrolled.
    pub totp: bool,
}

/// `POST /api/v1/users` (the system administrator creates accounts; the role given must be a
/// tenant role — administrators' roles are given only by the security administrator).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// The name.
    pub name: String,
    /// Initial password (must satisfy the security policy).
    pub password: String,
    /// The role.
    pub role: Role,
    /// The tenant of a tenant role.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// `PATCH /api/v1/users/{user}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// Disable or enable the account.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// Reset the password.
    #[serde(default)]
    pub password: Option<String>,
}

/// `PUT /api/v1/users/{user}/role`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignRole {
    /// The new role.
    pub role: Role,
    /// The tenant, for tenant roles.
    #[serde(default)]
    pub tenant: Option<String>,
}

/// The security policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityPolicy {
    /// Minimum password length.
    pub min_password_len: u32,
    /// How many of the four classes (lower, upper, digit, other) a password needs.
    pub min_password_classes: u32,
    /// Failed logins in a row that lock an account.
    pub lockout_threshold: u32,
    /// How long a lock lasts, in seconds.
    pub lockout_secs: u64,
    /// Lifetime of a login session, in seconds.
    pub session_ttl_secs: u64,
    /// Longest lifetime of an API token, in seconds.
    pub max_token_ttl_secs: u64,
    /// Lifetime of an agent registration token, in seconds.
    pub registration_ttl_secs: u64,
}

impl Default for SecurityPolicy {
    fn default() -> Self {
        SecurityPolicy {
            min_password_len: 12,
            min_password_classes: 3,
            lockout_threshold: 5,
            lockout_secs: 15 * 60,
            session_ttl_secs: 8 * 3600,
            max_token_ttl_secs: 365 * 86400,
            registration_ttl_secs: 86400,
        }
    }
}

/// A repository of a tenant.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Repo {
    /// Its name within the tenant.
    pub name: String,
    /// Bytes stored.
    pub used_bytes: u64,
    /// Objects stored.
    pub objects: u64,
    /// The storage site it lives on (none: the server's default storage).
    pub site: Option<String>,
}

/// `POST /api/v1/tenants/{tenant}/repos`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRepo {
    /// Its name.
    pub name: String,
    /// The storage site to put it on (one of the server's `[sites]`; default storage when
    /// absent). A copy job replicates a repository to one on another site.
    #[serde(default)]
    pub site: Option<String>,
}

/// `PUT …/repos/{repo}/maintenance-key`: the password of a maintenance-only key
/// (`zaibei key add --maintenance-only`), which the server seals and uses for check, forget and
/// prune jobs. Keys that read contents are refused.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceKey {
    /// The key's password.
    pub password: String,
}

/// One object of a repository listing.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ObjectEntry {
    /// Its name.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// Last modification (Unix ms).
    pub modified_ms: Option<i64>,
}

/// `GET …/objects?prefix=…&after=…&limit=…`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ObjectList {
    /// The objects, sorted by name.
    pub objects: Vec<ObjectEntry>,
    /// Whether more follow after the last one.
    pub truncated: bool,
}

/// A one-time agent registration token.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegistrationIssued {
    /// The one-time token.
    pub token: String,
    /// Expiry (Unix ms).
    pub expires_ms: i64,
}

/// `POST /api/v1/agents/register`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// The one-time registration token.
    pub token: String,
    /// The host's name.
    pub hostname: String,
}

/// The agent's credentials, answered once at registration.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AgentCredentials {
    /// The agent's id.
    pub agent: String,
    /// Its tenant.
    pub tenant: String,
    /// Its long-lived bearer token (append-only on repositories).
    pub token: String,
}

/// An agent as listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Agent {
    /// Its id.
    pub id: String,
    /// Host name it registered with.
    pub hostname: String,
    /// When it last pulled (Unix ms).
    pub last_seen_ms: Option<i64>,
}

/// A backup policy: what an agent backs up, when, and what is kept.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    /// A name, unique in the tenant.
    pub name: String,
    /// The agent that runs it.
    pub agent: String,
    /// The repository it backs up into.
    pub repo: String,
    /// Paths to back up.
    pub paths: Vec<String>,
    /// Exclude patterns.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// When to back up: cron syntax with seconds (`sec min hour day month weekday`) or the
    /// usual five fields.
    pub schedule: String,
    /// What to keep.
    #[serde(default)]
    pub retention: Retention,
    /// The recovery point objective in seconds: the overview flags hosts whose last good backup
    /// is older.
    pub rpo_target_secs: u64,
    /// Disabled policies queue nothing.
    #[serde(default)]
    pub disabled: bool,
    /// When the server checks the repository's structure (cron, as `schedule`), with its
    /// registered maintenance key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_schedule: Option<String>,
    /// When the server prunes the repository (cron), with its registered maintenance key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune_schedule: Option<String>,
    /// A repository of the tenant (typically on another storage site) that the server keeps
    /// a copy in, on `copy_schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_to: Option<String>,
    /// When the server copies the repository's new snapshots to `copy_to` (cron).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copy_schedule: Option<String>,
}

/// A policy as stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Policy {
    /// Its id.
    pub id: String,
    /// Its settings.
    #[serde(flatten)]
    pub spec: PolicySpec,
    /// When the scheduler queues it next (Unix ms).
    pub next_run_ms: Option<i64>,
}

/// `POST /api/v1/tenants/{tenant}/jobs`: queue a job now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    /// What to do.
    pub kind: JobKind,
    /// The policy (backup, forget) or repository (check, prune) it is for.
    #[serde(default)]
    pub policy: Option<String>,
    /// The repository, for check and prune.
    #[serde(default)]
    pub repo: Option<String>,
    /// The snapshot a restore or drill is about (default `latest`).
    #[serde(default)]
    pub snapshot: Option<String>,
    /// The absolute directory on the agent's host a restore writes into; for a copy, the
    /// name of the repository to copy into.
    #[serde(default)]
    pub target: Option<String>,
}

/// A job as listed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Its id.
    pub id: String,
    /// What it does.
    pub kind: JobKind,
    /// Where it is.
    pub state: JobState,
    /// Its policy.
    pub policy: Option<String>,
    /// Its repository.
    pub repo: String,
    /// The agent that runs it.
    pub agent: Option<String>,
    /// Queued at (Unix ms).
    pub queued_ms: i64,
    /// Started at.
    pub started_ms: Option<i64>,
    /// Finished at.
    pub finished_ms: Option<i64>,
    /// Latest progress.
    pub progress: Option<JobProgress>,
    /// The snapshot a backup made.
    pub snapshot: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The result summary.
    pub summary: Option<serde_json::Value>,
}

/// Per protected host: time since the last good backup against the RPO target.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HostStatus {
    /// The agent.
    pub agent: String,
    /// Its host name.
    pub hostname: String,
    /// The policy.
    pub policy: String,
    /// When its last successful backup finished (Unix ms).
    pub last_good_ms: Option<i64>,
    /// Seconds since then (none: never).
    pub lag_secs: Option<u64>,
    /// The policy's target.
    pub rpo_target_secs: u64,
    /// Whether the lag is within the target.
    pub within_target: bool,
}
