//! The server's side of the audit log: records appended to the catalogue inside the
//! transaction of the change they describe, chained by SM3 (`zaibei-audit`), serialised across
//! replicas by a row lock on the chain head, and periodically signed with SM2 into checkpoints
//! anchored in a separate store.

use sqlx::{AnyConnection, Row};
use zaibei_audit::{
    AnchorStore, AuditEvent, AuditRecord, CheckpointPolicy, CheckpointSigner, Hash,
};

use crate::catalogue::Catalogue;
use crate::error::{ApiError, ServerError};
use crate::time::now_ms;

/// The audit log of this server.
#[derive(Debug)]
pub struct Audit {
    signer: CheckpointSigner,
    anchors: AnchorStore,
    policy: CheckpointPolicy,
}

impl Audit {
    /// An audit log that signs with `signer` and anchors into `anchors`.
    pub fn new(
        signer: CheckpointSigner,
        anchors: AnchorStore,
        every_records: u64,
        every_secs: u64,
    ) -> Audit {
        Audit {
            signer,
            anchors,
            policy: CheckpointPolicy {
                every_records,
                every_ms: crate::time::secs_to_ms(every_secs),
            },
        }
    }

    /// The anchor store (export).
    pub fn anchors(&self) -> &AnchorStore {
        &self.anchors
    }

    /// The checkpoint signer (its public key is exported to the audit administrator).
    pub fn signer(&self) -> &CheckpointSigner {
        &self.signer
    }

    /// Appends `event` inside the caller's transaction: the record commits with the change it
    /// describes, or neither does. The head row lock orders appends of every replica.
    pub async fn append(
        &self,
        cat: &Catalogue,
        conn: &mut AnyConnection,
        event: AuditEvent,
    ) -> Result<u64, ApiError> {
        let head = sqlx::query(&format!(
            "SELECT seq, hash FROM audit_head WHERE id = 1{}",
            cat.for_update()
        ))
        .fetch_one(&mut *conn)
        .await?;
        let seq: i64 = head.try_get("seq")?;
        let hash: String = head.try_get("hash")?;
        let prev = if seq == 0 {
            Hash::ZERO
        } else {
            Hash::from_hex(&hash).map_err(|e| ApiError::internal("reading the audit head", e))?
        };
        let next = u64::try_from(seq).unwrap_or(0) + 1;
        let record = AuditRecord::at(next, prev, event);
        let json = serde_json::to_string(&record)
            .map_err(|e| ApiError::internal("encoding an audit record", e))?;
        let seq_db = i64::try_from(next).map_err(|e| ApiError::internal("audit sequence", e))?;
        sqlx::query(
            "INSERT INTO audit_log (seq, record, time_ms, tenant, actor, action, outcome) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(seq_db)
        .bind(json)
        .bind(record.event.time)
        .bind(record.event.tenant.clone())
        .bind(record.event.actor.clone())
        .bind(record.event.action.code())
        .bind(record.event.outcome.code())
        .execute(&mut *conn)
        .await?;
        sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq_db)
            .bind(record.hash.to_hex())
            .execute(&mut *conn)
            .await?;
        Ok(next)
    }

    /// Appends `event` in a transaction of its own (events that change nothing else, such as
    /// a refused request). Failures are logged: refusing the request has already happened.
    pub async fn append_alone(&self, cat: &Catalogue, event: AuditEvent) {
        let result = async {
            let mut tx = cat.begin_write().await?;
            self.append(cat, &mut tx, event).await?;
            tx.commit().await?;
            Ok::<(), ApiError>(())
        }
        .await;
        match result {
            Ok(()) => self.after_commit(cat).await,
            Err(e) => tracing::error!("appending to the audit log: {e}"),
        }
    }

    /// Call after committing appended records: anchors a checkpoint when one is due.
    pub async fn after_commit(&self, cat: &Catalogue) {
        if let Err(e) = self.checkpoint(cat, false).await {
            tracing::error!("anchoring an audit checkpoint: {e}");
        }
    }

    /// Signs and anchors a checkpoint of the chain head when one is due (or always, with
    /// `force`, when records follow the last one). Several replicas may race: the anchor of a
    /// given head is the same object, and the catalogue only moves forward.
    pub async fn checkpoint(
        &self,
        cat: &Catalogue,
        force: bool,
    ) -> Result<Option<u64>, ServerError> {
        let head = sqlx::query(
            "SELECT seq, hash, checkpoint_seq, checkpoint_ms FROM audit_head WHERE id = 1",
        )
        .fetch_one(&cat.pool)
        .await?;
        let seq: i64 = head.try_get("seq")?;
        let hash: String = head.try_get("hash")?;
        let cp_seq: i64 = head.try_get("checkpoint_seq")?;
        let cp_ms: i64 = head.try_get("checkpoint_ms")?;
        let now = now_ms();
        let (seq_u, cp_u) = (
            u64::try_from(seq).unwrap_or(0),
            u64::try_from(cp_seq).unwrap_or(0),
        );
        if seq_u <= cp_u || !(force || self.policy.is_due_after(cp_u, cp_ms, seq_u, now)) {
            return Ok(None);
        }
        let head_hash = Hash::from_hex(&hash).map_err(|e| ServerError::Audit(e.to_string()))?;
        let cp = self
            .signer
            .sign(seq_u, head_hash, now)
            .map_err(|e| ServerError::Audit(e.to_string()))?;
        match self.anchors.put(&cp).await {
            Ok(_) => {}
            Err(zaibei_audit::AuditError::Store(e))
                if e.kind == zaibei_store::StoreErrorKind::AlreadyExists => {}
            Err(zaibei_audit::AuditError::AnchorConflict { name }) => {
                // Another request or replica checkpointed the same head a moment earlier
                // (signed at another time): its anchor stands, provided it is of this head.
                let bytes = self
                    .anchors
                    .store()
                    .get(&name)
                    .await
                    .map_err(|e| ServerError::Audit(e.to_string()))?;
                let existing = zaibei_audit::Checkpoint::from_json(&bytes)
                    .map_err(|e| ServerError::Audit(e.to_string()))?;
                if existing.seq != cp.seq || existing.head != cp.head {
                    return Err(ServerError::Audit(format!(
                        "the audit anchor {name} holds another head than seq {seq_u}'s"
                    )));
                }
            }
            Err(e) => return Err(ServerError::Audit(e.to_string())),
        }
        sqlx::query(
            "UPDATE audit_head SET checkpoint_seq = $1, checkpoint_ms = $2 \
             WHERE id = 1 AND checkpoint_seq < $3",
        )
        .bind(seq)
        .bind(now)
        .bind(seq)
        .execute(&cat.pool)
        .await?;
        Ok(Some(seq_u))
    }
}
