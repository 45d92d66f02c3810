//! First start: the three administrators (系统管理员, 安全管理员, 审计管理员) are created with
//! random passwords, written once to a file only root can read. Nothing else is preset.

use std::path::{Path, PathBuf};

use sqlx::Row;
use zaibei_audit::{AuditAction, Outcome};
use zaibei_types::Role;

use crate::api::ctx::event;
use crate::audit::Audit;
use crate::auth::password;
use crate::catalogue::Catalogue;
use crate::error::ServerError;
use crate::time::now_ms;

/// The administrators created on first start.
pub const ADMINS: [(&str, Role); 3] = [
    ("sysadmin", Role::SystemAdmin),
    ("secadmin", Role::SecurityAdmin),
    ("auditadmin", Role::AuditAdmin),
];

/// Creates the administrators when the catalogue has no user at all; returns the file their
/// passwords were written to.
pub async fn ensure_admins(
    cat: &Catalogue,
    audit: &Audit,
    data_dir: &Path,
    iterations: u32,
) -> Result<Option<PathBuf>, ServerError> {
    let users: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
        .fetch_one(&cat.pool)
        .await?
        .try_get("n")?;
    if users > 0 {
        return Ok(None);
    }
    let mut lines = String::from(
        "# zaibei: initial administrator passwords. Log in, change each password, then delete this file.\n",
    );
    let mut tx = cat.begin_write().await?;
    for (name, role) in ADMINS {
        let secret: [u8; 12] =
            zaibei_crypto::random_array().map_err(|e| ServerError::Config(e.to_string()))?;
        // Four classes, so the initial password satisfies the default policy.
        let pw = format!("Zb-{}-9a", hex::encode(secret));
        let hash = password::hash(&pw, iterations).map_err(ServerError::Config)?;
        sqlx::query(
            "INSERT INTO users (name, role, password_hash, created_ms) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(name)
        .bind(role.code())
        .bind(hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        let e = event(
            "server",
            None,
            AuditAction::UserCreated,
            None,
            format!("user:{name}"),
            Outcome::Success,
        )
        .with_details(serde_json::json!({ "role": role.code(), "bootstrap": true }));
        audit
            .append(cat, &mut tx, e)
            .await
            .map_err(|e| ServerError::Audit(e.to_string()))?;
        lines.push_str(&format!("{name} {} {pw}\n", role.code()));
    }
    let file = data_dir.join("initial-admin-passwords.txt");
    crate::tls::write_new(&file, lines.as_bytes(), 0o600)?;
    tx.commit().await?;
    audit.after_commit(cat).await;
    Ok(Some(file))
}
