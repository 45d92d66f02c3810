//! Who is calling: bearer tokens resolved against the catalogue into a [`Caller`].

pub mod password;
pub mod token;
pub mod totp;

use sqlx::Row;
use zaibei_types::{Privilege, Role};

use crate::catalogue::Catalogue;
use crate::error::ApiError;
use crate::time::now_ms;

/// The kinds of token the catalogue keeps.
pub mod kind {
    /// A login session.
    pub const SESSION: &str = "session";
    /// A scoped API token made by a user.
    pub const API: &str = "api";
    /// A registered agent's token.
    pub const AGENT: &str = "agent";
    /// A one-time agent registration token (never a bearer token).
    pub const REGISTER: &str = "register";
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id.
    pub token_id: String,
    /// The token's kind ([`kind`]).
    pub kind: String,
    /// The user, for user tokens.
    pub user: Option<String>,
    /// The agent, for agent tokens.
    pub agent: Option<String>,
    /// The role in effect.
    pub role: Role,
    /// The tenant of a tenant role.
    pub tenant: Option<String>,
    /// The privileges the token is limited to (none: the role's).
    pub scope: Option<Vec<Privilege>>,
    /// The repository the token is limited to.
    pub repo: Option<String>,
    /// When the token was last used before this request (Unix ms).
    pub last_used_ms: Option<i64>,
}

impl Caller {
    /// Who, for the audit log: the user name, or `agent:ID`.
    pub fn actor(&self) -> String {
        match (&self.user, &self.agent) {
            (Some(u), _) => u.clone(),
            (None, Some(a)) => format!("agent:{a}"),
            (None, None) => format!("token:{}", self.token_id),
        }
    }

    /// Whether the caller holds `privilege` (its role has it and its token allows it).
    pub fn holds(&self, privilege: Privilege) -> bool {
        self.role.holds(privilege)
            && self
                .scope
                .as_ref()
                .is_none_or(|scope| scope.contains(&privilege))
    }

    /// The privileges in effect.
    pub fn privileges(&self) -> Vec<Privilege> {
        Privilege::ALL
            .iter()
            .copied()
            .filter(|p| self.holds(*p))
            .collect()
    }
}

/// The token of an `Authorization: Bearer …` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Resolves a bearer token: 401 `invalid_token`, `token_expired`, `token_revoked`,
/// `account_disabled` or `account_locked` when it cannot be used.
pub async fn resolve(cat: &Catalogue, bearer: &str) -> Result<Caller, ApiError> {
    let invalid = || ApiError::unauthorized("invalid_token", "the token is not valid");
    let (id, secret) = token::parse(bearer).ok_or_else(invalid)?;
    let row = sqlx::query(
        "SELECT t.kind, t.user_name, t.agent, t.tenant, t.secret_hash, t.privileges, t.repo, \
         t.expires_ms, t.revoked, t.last_used_ms, u.role, u.tenant AS user_tenant, u.disabled, \
         u.locked_until_ms FROM tokens t LEFT JOIN users u ON u.name = t.user_name WHERE t.id = $1",
    )
    .bind(id)
    .fetch_optional(&cat.pool)
    .await?
    .ok_or_else(invalid)?;
    let stored: String = row.try_get("secret_hash")?;
    if !password::constant_time_eq(token::hash_secret(secret).as_bytes(), stored.as_bytes()) {
        return Err(invalid());
    }
    let kind: String = row.try_get("kind")?;
    if kind == kind::REGISTER {
        return Err(invalid());
    }
    if row.try_get::<i64, _>("revoked")? != 0 {
        return Err(ApiError::unauthorized(
            "token_revoked",
            "the token was revoked",
        ));
    }
    let now = now_ms();
    if row.try_get::<i64, _>("expires_ms")? <= now {
        return Err(ApiError::unauthorized(
            "token_expired",
            "the token has expired",
        ));
    }
    let user: Option<String> = row.try_get("user_name")?;
    let agent: Option<String> = row.try_get("agent")?;
    let (role, tenant) = if agent.is_some() {
        (Role::Agent, row.try_get::<Option<String>, _>("tenant")?)
    } else {
        let role: Option<String> = row.try_get("role")?;
        let role = role
            .as_deref()
            .and_then(Role::from_code)
            .ok_or_else(invalid)?;
        if row.try_get::<Option<i64>, _>("disabled")?.unwrap_or(0) != 0 {
            return Err(ApiError::unauthorized(
                "account_disabled",
                "the account is disabled",
            ));
        }
        if row
            .try_get::<Option<i64>, _>("locked_until_ms")?
            .is_some_and(|until| until > now)
        {
            return Err(ApiError::unauthorized(
                "account_locked",
                "the account is locked",
            ));
        }
        (role, row.try_get::<Option<String>, _>("user_tenant")?)
    };
    let scope: Option<String> = row.try_get("privileges")?;
    let scope = match scope {
        None => None,
        Some(text) => Some(
            text.split(',')
                .filter(|c| !c.is_empty())
                .map(|c| Privilege::from_code(c).ok_or_else(invalid))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Caller {
        token_id: id.to_owned(),
        kind,
        user,
        agent,
        role,
        tenant,
        scope,
        repo: row.try_get("repo")?,
        last_used_ms: row.try_get("last_used_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
    }
}
