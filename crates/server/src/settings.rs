//! Settings kept in the catalogue (shared by every replica): the security policy.

use sqlx::Row;
use zaibei_types::api::SecurityPolicy;

use crate::catalogue::Catalogue;
use crate::error::ApiError;

const SECURITY_POLICY: &str = "security_policy";

/// The security policy in force (the default until the security administrator sets one).
pub async fn security_policy(cat: &Catalogue) -> Result<SecurityPolicy, ApiError> {
    let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(SECURITY_POLICY)
        .fetch_optional(&cat.pool)
        .await?;
    match row {
        None => Ok(SecurityPolicy::default()),
        Some(row) => {
            let text: String = row.try_get("value")?;
            serde_json::from_str(&text)
                .map_err(|e| ApiError::internal("reading the security policy", e))
        }
    }
}

/// Stores the security policy inside `conn`'s transaction.
pub async fn set_security_policy(
    conn: &mut sqlx::AnyConnection,
    policy: &SecurityPolicy,
) -> Result<(), ApiError> {
    let text = serde_json::to_string(policy)
        .map_err(|e| ApiError::internal("encoding the security policy", e))?;
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(SECURITY_POLICY)
        .execute(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
        .bind(SECURITY_POLICY)
        .bind(text)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
