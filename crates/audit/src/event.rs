//! What happened: the audit event and its closed set of actions.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Defines [`AuditAction`] with its stable codes in one place.
macro_rules! actions {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal,)*) => {
        /// The kind of a security-relevant event: a closed set with stable `snake_case` codes.
        ///
        /// The code (not the Rust name) is what is hashed, stored and exported; a released
        /// code is never renamed or reused. A new action gets a new code, and a verifier that
        /// does not know it reports the record as unreadable rather than guessing.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum AuditAction {
            $($(#[doc = $doc])* $variant,)*
        }

        impl AuditAction {
            /// Every action, in declaration order.
            pub const ALL: &'static [AuditAction] = &[$(AuditAction::$variant,)*];

            /// The stable code, e.g. `login_failed`.
            pub fn code(self) -> &'static str {
                match self {
                    $(AuditAction::$variant => $code,)*
                }
            }

            /// The action of a code, if it is one.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(AuditAction::$variant),)*
                    _ => None,
                }
            }
        }
    };
}

actions! {
    /// A user logged in (password, and second factor where required).
    Login = "login",
    /// A login was refused (wrong password, unknown user, locked account, bad second factor).
    LoginFailed = "login_failed",
    /// A user logged out or a session was ended.
    Logout = "logout",
    /// An API token was created.
    TokenCreated = "token_created",
    /// An API token was used to authenticate a request (its first use per session or per
    /// period, as the server decides; every refused use is `access_denied`).
    TokenUsed = "token_used",
    /// An API token was revoked.
    TokenRevoked = "token_revoked",
    /// A user account was created.
    UserCreated = "user_created",
    /// A user account was changed (name, contact, enabled or disabled).
    UserChanged = "user_changed",
    /// A user account was deleted.
    UserDeleted = "user_deleted",
    /// A role was granted to a user.
    RoleGranted = "role_granted",
    /// A role was taken from a user.
    RoleRevoked = "role_revoked",
    /// A password was changed or reset.
    PasswordChanged = "password_changed",
    /// An account was locked (too many failed logins, or by an administrator).
    AccountLocked = "account_locked",
    /// A locked account was unlocked. (Addition to the issue's list: the counterpart of
    /// `account_locked`.)
    AccountUnlocked = "account_unlocked",
    /// A tenant was created.
    TenantCreated = "tenant_created",
    /// A tenant was deleted.
    TenantDeleted = "tenant_deleted",
    /// A backup policy was created.
    PolicyCreated = "policy_created",
    /// A backup policy was changed.
    PolicyChanged = "policy_changed",
    /// A backup policy was deleted.
    PolicyDeleted = "policy_deleted",
    /// A job was created.
    JobCreated = "job_created",
    /// A job was changed.
    JobChanged = "job_changed",
    /// A job was deleted.
    JobDeleted = "job_deleted",
    /// A job was started (by its schedule or by hand).
    JobRun = "job_run",
    /// An agent registered with the server.
    AgentRegistered = "agent_registered",
    /// An agent was removed and its credentials revoked. (Addition: the counterpart of
    /// `agent_registered`.)
    AgentRevoked = "agent_revoked",
    /// An agent's registration or request token was presented a second time (replay).
    AgentTokenReplayed = "agent_token_replayed",
    /// A repository was created.
    RepoCreated = "repo_created",
    /// A repository was deleted.
    RepoDeleted = "repo_deleted",
    /// Repository keys changed: a key added or removed, a password changed. (Addition:
    /// whoever holds a repository key can read every backup in it.)
    RepoKeyChanged = "repo_key_changed",
    /// Backups were forgotten (snapshots removed by hand or by retention). (Addition: a
    /// deletion of backups, which the issue asks to audit.)
    SnapshotForgotten = "snapshot_forgotten",
    /// Unreferenced data was pruned from a repository. (Addition: a deletion.)
    RepoPruned = "repo_pruned",
    /// Any other object was deleted.
    ObjectDeleted = "object_deleted",
    /// A restore was started.
    Restore = "restore",
    /// A server or security setting was changed.
    ConfigChanged = "config_changed",
    /// A request was refused for want of a privilege.
    AccessDenied = "access_denied",
    /// The audit log was queried by the audit administrator. (Addition: reading the audit
    /// log is itself audited.)
    AuditQueried = "audit_queried",
    /// The audit log or its checkpoints were exported.
    AuditExported = "audit_exported",
    /// A checkpoint of the audit chain was signed and anchored. (Addition: ties the chain to
    /// its anchors; `target` is the anchor object name.)
    AuditCheckpoint = "audit_checkpoint",
    /// The audit checkpoint signing key was created or replaced. (Addition: a verifier needs
    /// to learn of every key.)
    AuditKeyChanged = "audit_key_changed",
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// The code is not one of [`AuditAction`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit action {0:?}")]
pub struct UnknownAction(pub String);

impl FromStr for AuditAction {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditAction::from_code(s).ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

impl Serialize for AuditAction {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for AuditAction {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        AuditAction::from_code(&s).ok_or_else(|| serde::de::Error::custom(UnknownAction(s.into())))
    }
}

/// How an event ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The operation was done.
    Success,
    /// The operation was attempted and failed (wrong password, error while running).
    Failure,
    /// The operation was refused by authorisation (missing privilege, locked account).
    Denied,
}

impl Outcome {
    /// The stable code: `success`, `failure` or `denied`.
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One security-relevant event, as the server hands it to the log.
///
/// `details` is a JSON object of action-specific facts (changed fields, job id, snapshot ids)
/// or `null`. Its hash uses the canonical JSON of [`crate::canonical_json`], so key order and
/// number spelling (`1`, `1.0`, `1e0`) do not matter; store it in a text column and give it back
/// unchanged. Never put secrets (passwords, tokens) in an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    /// When, in milliseconds since 1970-01-01T00:00:00Z.
    pub time: i64,
    /// The tenant concerned; `None` for platform-wide events.
    pub tenant: Option<String>,
    /// Who: a user name, a token id (`token:ID`), an agent id, or `anonymous`.
    pub actor: String,
    /// What.
    pub action: AuditAction,
    /// On what: a user, role, job, repository, object name or setting.
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// From where: the client's address, where known.
    pub source: Option<String>,
    /// Action-specific facts: a JSON object, or `null`.
    #[serde(default)]
    pub details: serde_json::Value,
}

impl AuditEvent {
    /// An event at `time` (Unix milliseconds) with no tenant, source or details.
    pub fn new(
        time: i64,
        actor: impl Into<String>,
        action: AuditAction,
        target: impl Into<String>,
        outcome: Outcome,
    ) -> Self {
        AuditEvent {
            time,
            tenant: None,
            actor: actor.into(),
            action,
            target: target.into(),
            outcome,
            source: None,
            details: serde_json::Value::Null,
        }
    }

    /// The same event for `tenant`.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The same event from the client address `source`.
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same event with `details` (a JSON object, or `null`).
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// The current time in Unix milliseconds (0 if the clock is before 1970, saturated in the far
/// future).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for &a in AuditAction::ALL {
            let code = a.code();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(
                code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{code}"
            );
            assert_eq!(AuditAction::from_code(code), Some(a));
            assert_eq!(code.parse::<AuditAction>().unwrap(), a);
            let json = serde_json::to_string(&a).unwrap();
            assert_eq!(json, format!("\"{code}\""));
            assert_eq!(serde_json::from_str::<AuditAction>(&json).unwrap(), a);
        }
        assert!(serde_json::from_str::<AuditAction>("\"nope\"").is_err());
        assert!("Login".parse::<AuditAction>().is_err());
    }

    #[test]
    fn issue_actions_are_all_present() {
        for code in [
            "login",
            "login_failed",
            "logout",
            "token_created",
            "token_used",
            "token_revoked",
            "user_created",
            "user_changed",
            "user_deleted",
            "role_granted",
            "role_revoked",
            "password_changed",
            "account_locked",
            "tenant_created",
            "tenant_deleted",
            "policy_created",
            "policy_changed",
            "policy_deleted",
            "job_created",
            "job_changed",
            "job_deleted",
            "job_run",
            "agent_registered",
            "agent_token_replayed",
            "repo_created",
            "repo_deleted",
            "object_deleted",
            "restore",
            "config_changed",
            "access_denied",
            "audit_exported",
        ] {
            assert!(AuditAction::from_code(code).is_some(), "{code}");
        }
    }

    #[test]
    fn event_json_shape() {
        let e = AuditEvent::new(5, "alice", AuditAction::Login, "alice", Outcome::Success)
            .with_tenant("t1")
            .with_source("10.0.0.1")
            .with_details(serde_json::json!({"mfa": true}));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"time": 5, "tenant": "t1", "actor": "alice", "action": "login",
                "target": "alice", "outcome": "success", "source": "10.0.0.1",
                "details": {"mfa": true}})
        );
        let back: AuditEvent = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
        let extra = serde_json::json!({"time": 5, "tenant": null, "actor": "a", "action": "login",
            "target": "a", "outcome": "success", "source": null, "details": null, "x": 1});
        assert!(serde_json::from_value::<AuditEvent>(extra).is_err());
        assert!(now_ms() > 1_600_000_000_000);
    }
}
