//! The audit log through the server: exported (JSON Lines), with its anchored checkpoints and
//! signing key, it verifies clean; tampering with the catalogue directly — an edited, removed,
//! inserted, reordered or truncated record — is caught by `zaibei_audit::verify`. Appends of
//! two replicas on one catalogue make one unforked chain.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[macro_use]
mod common;

use common::{Backend, TestServer};
use serde_json::json;
use sqlx::Row;
use zaibei_audit::{AuditRecord, Checkpoint, Finding, VerifyReport};
use zaibei_crypto::Sm2VerifyingKey;

/// A checkpoint every few records, so that most of the log is anchored.
const EVERY: u64 = 5;

/// What the audit administrator takes away to verify.
struct Exported {
    records: Vec<AuditRecord>,
    checkpoints: Vec<Checkpoint>,
    key: Sm2VerifyingKey,
}

impl Exported {
    fn verify(&self) -> VerifyReport {
        zaibei_audit::verify(
            &self.records,
            &self.checkpoints,
            std::slice::from_ref(&self.key),
        )
    }
}

/// Checkpoints first, then the records: a checkpoint fetched after the export could cover
/// records appended since (the export's own record among them) and look like a cut tail.
async fn export(srv: &TestServer, aud: &str) -> Exported {
    let checkpoints: Vec<Checkpoint> =
        serde_json::from_value(srv.get("/api/v1/audit/checkpoints", aud).await.ok()).unwrap();
    let records = srv.audit_export(aud).await;
    let key = srv.get("/api/v1/audit/key", aud).await;
    assert_eq!(key.status, common::StatusCode::OK);
    let key = Sm2VerifyingKey::from_public_key_pem(&key.text()).expect("the audit key");
    Exported {
        records,
        checkpoints,
        key,
    }
}

/// A server with some history; returns it with the audit administrator's session.
async fn with_history(backend: Backend) -> (TestServer, String) {
    let srv = common::start_with(backend, |c| c.audit_checkpoint_records = EVERY).await;
    let aud = srv.admin("auditadmin").await;
    let sys = srv.admin("sysadmin").await;
    let alpha = srv.tenant_fixture(&sys, "alpha").await;
    srv.try_login("alpha-op", "Wrong-Password-1", None).await;
    srv.get("/api/v1/tenants/beta/repos", &alpha.operator).await;
    srv.create_repo("alpha", &alpha.operator, "second").await;
    (srv, aud)
}

async fn record_text(srv: &TestServer, seq: i64) -> AuditRecord {
    let cat = srv.catalogue().await;
    let row = sqlx::query("SELECT record FROM audit_log WHERE seq = $1")
        .bind(seq)
        .fetch_one(&cat.pool)
        .await
        .unwrap();
    serde_json::from_str(&row.try_get::<String, _>("record").unwrap()).unwrap()
}

async fn exec(srv: &TestServer, sql: &str, binds: &[i64]) {
    let cat = srv.catalogue().await;
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(*b);
    }
    q.execute(&cat.pool).await.unwrap();
}

async fn set_record(srv: &TestServer, seq: i64, record: &AuditRecord) {
    let cat = srv.catalogue().await;
    sqlx::query("UPDATE audit_log SET record = $1 WHERE seq = $2")
        .bind(serde_json::to_string(record).unwrap())
        .bind(seq)
        .execute(&cat.pool)
        .await
        .unwrap();
}

/// The untouched log verifies, with every checkpoint's signature and head.
async fn clean_log_verifies(backend: Backend) {
    let (srv, aud) = with_history(backend).await;
    let e = export(&srv, &aud).await;
    let report = e.verify();
    assert!(report.is_ok(), "{report:?}");
    assert!(e.records.len() > 15, "{} records", e.records.len());
    assert_eq!(report.records, e.records.len() as u64);
    assert!(report.checkpoints_verified >= 3, "{report:?}");
    assert_eq!(report.checkpoints_verified, e.checkpoints.len() as u64);
    assert!(report.unanchored_records < EVERY + 2, "{report:?}");
    for (i, r) in e.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
    // The export itself is in the log.
    let again = srv.audit_export(&aud).await;
    assert!(
        again
            .iter()
            .any(|r| r.event.action == zaibei_audit::AuditAction::AuditExported)
    );
    // Only the audit administrator exports.
    let sys = srv.admin("sysadmin").await;
    srv.get("/api/v1/audit/export", &sys)
        .await
        .assert_error(403, "forbidden");
}

/// A record's text edited in the catalogue (its hash left, or recomputed).
async fn edited_record_is_caught(backend: Backend) {
    let (srv, aud) = with_history(backend).await;
    let mut r = record_text(&srv, 3).await;
    r.event.actor = "mallory".into();
    set_record(&srv, 3, &r).await;
    let report = export(&srv, &aud).await.verify();
    assert!(
        report.findings.contains(&Finding::Edited { seq: 3 }),
        "{report:?}"
    );

    // A forger who recomputes the hash breaks the next link and the anchored head.
    let r = AuditRecord::at(r.seq, r.prev, r.event.clone());
    set_record(&srv, 3, &r).await;
    let report = export(&srv, &aud).await.verify();
    assert!(
        !report.findings.contains(&Finding::Edited { seq: 3 }),
        "{report:?}"
    );
    assert!(
        report.findings.contains(&Finding::BrokenLink { seq: 4 }),
        "{report:?}"
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::ChainRewritten { .. })),
        "{report:?}"
    );
}

/// A row deleted from the catalogue.
async fn removed_record_is_caught(backend: Backend) {
    let (srv, aud) = with_history(backend).await;
    exec(&srv, "DELETE FROM audit_log WHERE seq = $1", &[4]).await;
    let report = export(&srv, &aud).await.verify();
    assert!(
        report
            .findings
            .contains(&Finding::Removed { first: 4, last: 4 }),
        "{report:?}"
    );
}

/// A forged row inserted: a record claiming an existing seq, properly chained to the record
/// before it (the primary key keeps it out of the middle, so it lands at the end).
async fn inserted_record_is_caught(backend: Backend) {
    let (srv, aud) = with_history(backend).await;
    let r3 = record_text(&srv, 3).await;
    let mut forged = record_text(&srv, 4).await.event;
    forged.actor = "mallory".into();
    forged.details = json!({ "forged": true });
    let forged = AuditRecord::at(4, r3.hash, forged);
    let cat = srv.catalogue().await;
    sqlx::query("INSERT INTO audit_log (seq, record, time_ms, tenant, actor, action, outcome) VALUES ($1, $2, $3, NULL, $4, $5, $6)")
        .bind(1_000_000i64)
        .bind(serde_json::to_string(&forged).unwrap())
        .bind(forged.event.time)
        .bind("mallory")
        .bind(forged.event.action.code())
        .bind(forged.event.outcome.code())
        .execute(&cat.pool)
        .await
        .unwrap();
    let report = export(&srv, &aud).await.verify();
    assert!(
        report.findings.contains(&Finding::Inserted { seq: 4 }),
        "{report:?}"
    );
}

/// Two rows' positions swapped.
async fn reordered_records_are_caught(backend: Backend) {
    let (srv, aud) = with_history(backend).await;
    exec(&srv, "UPDATE audit_log SET seq = -1 WHERE seq = $1", &[5]).await;
    exec(
        &srv,
        "UPDATE audit_log SET seq = $1 WHERE seq = $2",
        &[5, 6],
    )
    .await;
    exec(&srv, "UPDATE audit_log SET seq = $1 WHERE seq = -1", &[6]).await;
    let report = export(&srv, &aud).await.verify();
    assert!(
        report
            .findings
            .contains(&Finding::Reordered { seq: 5, after: 6 }),
        "{report:?}"
    );
}

/// The tail cut off (and the chain head moved back to match): the anchored checkpoints outside
/// the catalogue still name the lost records. Grown again, the log disagrees with them.
async fn truncated_tail_is_caught(backend: Backend) {
    let (srv, aud) = with_history(backend).await;
    let checkpoints: Vec<Checkpoint> =
        serde_json::from_value(srv.get("/api/v1/audit/checkpoints", &aud).await.ok()).unwrap();
    let anchored = checkpoints
        .iter()
        .map(|c| c.seq)
        .max()
        .expect("a checkpoint");
    let keep = i64::try_from(anchored).unwrap() - 3;
    let last = record_text(&srv, keep).await;
    exec(&srv, "DELETE FROM audit_log WHERE seq > $1", &[keep]).await;
    let cat = srv.catalogue().await;
    sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
        .bind(keep)
        .bind(last.hash.to_hex())
        .execute(&cat.pool)
        .await
        .unwrap();
    let e = export(&srv, &aud).await;
    assert_eq!(e.records.last().unwrap().seq, keep as u64);
    let report = e.verify();
    assert!(
        report.findings.contains(&Finding::TruncatedTail {
            last_seq: keep as u64,
            anchored_seq: anchored
        }),
        "{report:?}"
    );
    // The server goes on appending after the cut: the log grows past the anchored seq with
    // other records, and the checkpoint no longer matches.
    let sys = srv.admin("sysadmin").await;
    for i in 0..8 {
        srv.post(
            "/api/v1/tenants",
            &sys,
            json!({ "name": format!("later-{i}") }),
        )
        .await
        .ok();
    }
    let e = export(&srv, &aud).await;
    assert!(e.records.last().unwrap().seq > anchored);
    let report = e.verify();
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::ChainRewritten { checkpoint_seq, .. } if *checkpoint_seq == anchored)),
        "{report:?}"
    );
}

/// Two replicas appending at once on one catalogue: one chain, consecutive, verified.
async fn two_replicas_one_chain(backend: Backend) {
    let a = common::start_with(backend, |c| c.audit_checkpoint_records = EVERY).await;
    let b = a.replica(|_| {}).await;
    let sys_a = a.admin("sysadmin").await;
    let sys_b = b.admin("sysadmin").await;
    let aud = a.admin("auditadmin").await;
    let mut tasks = Vec::new();
    for (n, (srv, token)) in [(&a, &sys_a), (&b, &sys_b)].into_iter().enumerate() {
        for i in 0..12 {
            let client = srv.client.clone();
            let base = srv.base.clone();
            let token = token.clone();
            tasks.push(tokio::spawn(async move {
                let r = client
                    .post(format!("{base}/api/v1/tenants"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(json!({ "name": format!("t-{n}-{i}") }).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), common::StatusCode::CREATED);
                // A refused request is audited in a transaction of its own.
                let r = client
                    .post(format!("{base}/api/v1/login"))
                    .header("content-type", "application/json")
                    .body(json!({ "user": "nobody", "password": "x" }).to_string())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), common::StatusCode::UNAUTHORIZED);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    let e = export(&a, &aud).await;
    for (i, r) in e.records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1, "seqs are consecutive");
    }
    let created = e
        .records
        .iter()
        .filter(|r| r.event.action == zaibei_audit::AuditAction::TenantCreated)
        .count();
    assert_eq!(created, 24);
    let report = e.verify();
    assert!(report.is_ok(), "{report:?}");
    assert!(report.checkpoints_verified >= 4, "{report:?}");
    // The other replica exports the same chain.
    let from_b = export(&b, &aud).await;
    assert_eq!(&from_b.records[..e.records.len()], &e.records[..]);
}

both_backends!(
    clean_log_verifies,
    edited_record_is_caught,
    removed_record_is_caught,
    inserted_record_is_caught,
    reordered_records_are_caught,
    truncated_tail_is_caught,
    two_replicas_one_chain,
);
