//! Every kind of tampering with the audit log is detected and named precisely.
//!
//! The log has 23 records; signed checkpoints cover seqs 5, 10, 15 and 20.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::BufReader;
use std::sync::Arc;

use serde_json::json;
use zaibei_audit::{
    AnchorStore, AuditAction, AuditEvent, AuditRecord, Checkpoint, CheckpointSigner, Finding, Hash,
    Outcome, VerifyOptions, VerifyReport, read_jsonl, verify, verify_jsonl, write_jsonl,
};
use zaibei_crypto::Sm2VerifyingKey;
use zaibei_store::{FsStore, Store};

const N: u64 = 23;
const ANCHORED: [u64; 4] = [5, 10, 15, 20];

fn event(i: u64) -> AuditEvent {
    let actions = [
        AuditAction::Login,
        AuditAction::LoginFailed,
        AuditAction::TokenUsed,
        AuditAction::RoleGranted,
        AuditAction::PolicyChanged,
        AuditAction::Restore,
        AuditAction::ObjectDeleted,
        AuditAction::ConfigChanged,
    ];
    let action = actions[(i as usize) % actions.len()];
    let e = AuditEvent::new(
        1_700_000_000_000 + i as i64 * 1000,
        format!("user{}", i % 3),
        action,
        format!("target-{i}"),
        if i % 4 == 1 {
            Outcome::Failure
        } else {
            Outcome::Success
        },
    )
    .with_source(format!("10.0.0.{i}"))
    .with_details(json!({"i": i, "why": "test", "list": [1, 2, 3]}));
    if i.is_multiple_of(2) {
        e.with_tenant("acme")
    } else {
        e
    }
}

/// Appends records for `events` after `log`'s last record, hashing as the server does.
fn extend(log: &mut Vec<AuditRecord>, events: impl IntoIterator<Item = AuditEvent>) {
    for e in events {
        let r = AuditRecord::next(log.last(), e);
        log.push(r);
    }
}

struct Fixture {
    log: Vec<AuditRecord>,
    signer: CheckpointSigner,
    checkpoints: Vec<Checkpoint>,
}

impl Fixture {
    fn new() -> Self {
        let mut log = Vec::new();
        extend(&mut log, (1..=N).map(event));
        let signer = CheckpointSigner::generate().unwrap();
        let checkpoints = ANCHORED
            .iter()
            .map(|&s| {
                signer
                    .checkpoint(&log[s as usize - 1], 1_800_000_000_000 + s as i64)
                    .unwrap()
            })
            .collect();
        Fixture {
            log,
            signer,
            checkpoints,
        }
    }

    fn keys(&self) -> Vec<Sm2VerifyingKey> {
        vec![self.signer.verifying_key().clone()]
    }

    fn verify(&self, log: &[AuditRecord]) -> VerifyReport {
        verify(log, &self.checkpoints, &self.keys())
    }

    fn verify_with_checkpoints(&self, log: &[AuditRecord], cps: &[Checkpoint]) -> VerifyReport {
        verify(log, cps, &self.keys())
    }

    /// Index in the log of the record with `seq`.
    fn at(seq: u64) -> usize {
        seq as usize - 1
    }
}

#[test]
fn untouched_log_verifies_clean() {
    let f = Fixture::new();
    let rep = f.verify(&f.log);
    assert!(rep.is_ok(), "{rep:#?}");
    assert_eq!(rep.records, N);
    assert_eq!(rep.first_seq, Some(1));
    assert_eq!(rep.last_seq, Some(N));
    assert_eq!(rep.checkpoints, 4);
    assert_eq!(rep.checkpoints_verified, 4);
    assert_eq!(rep.last_anchored_seq, Some(20));
    assert_eq!(rep.unanchored_records, 3);
}

#[test]
fn edited_field_of_a_middle_record() {
    let f = Fixture::new();
    for edit in [
        (|r: &mut AuditRecord| r.event.actor = "mallory".into()) as fn(&mut AuditRecord),
        |r| r.event.outcome = Outcome::Denied,
        |r| r.event.time += 1,
        |r| r.event.tenant = Some("acme".into()),
        |r| r.event.target.clear(),
        |r| r.event.source = Some("203.0.113.9".into()),
        |r| r.event.action = AuditAction::Logout,
        |r| r.event.details["why"] = json!("nothing to see"),
        |r| r.event.details = serde_json::Value::Null,
    ] {
        let mut log = f.log.clone();
        edit(&mut log[Fixture::at(9)]);
        let rep = f.verify(&log);
        assert_eq!(rep.findings, vec![Finding::Edited { seq: 9 }]);
    }
}

#[test]
fn details_key_order_and_number_spelling_are_not_edits() {
    let f = Fixture::new();
    let mut log = f.log.clone();
    let r = &mut log[Fixture::at(9)];
    let reparsed: serde_json::Value =
        serde_json::from_str(r#"{"list":[1.0,2e0,3],"why":"test","i":9}"#).unwrap();
    r.event.details = reparsed;
    assert!(f.verify(&log).is_ok());
}

#[test]
fn edited_record_with_recomputed_hash_breaks_the_next_link() {
    let f = Fixture::new();
    let mut log = f.log.clone();
    let r = &mut log[Fixture::at(12)];
    r.event.actor = "mallory".into();
    r.hash = r.recompute_hash();
    let rep = f.verify(&log);
    assert_eq!(rep.findings, vec![Finding::BrokenLink { seq: 13 }]);

    // At an anchored seq the checkpoint names it too.
    let mut log = f.log.clone();
    let r = &mut log[Fixture::at(10)];
    r.event.actor = "mallory".into();
    r.hash = r.recompute_hash();
    let rep = f.verify(&log);
    assert!(
        matches!(
            &rep.findings[..],
            [
                Finding::BrokenLink { seq: 11 },
                Finding::ChainRewritten {
                    checkpoint_seq: 10,
                    after_seq: 5,
                    ..
                }
            ]
        ),
        "{rep:#?}"
    );
}

#[test]
fn removed_record() {
    let f = Fixture::new();
    for seq in [1, 9, 10, N] {
        let mut log = f.log.clone();
        log.remove(Fixture::at(seq));
        let rep = f.verify(&log);
        let want = if seq == N {
            // The last record lies beyond the newest checkpoint: see `truncated_tail`.
            vec![]
        } else {
            vec![Finding::Removed {
                first: seq,
                last: seq,
            }]
        };
        assert_eq!(rep.findings, want, "removing {seq}");
    }
    let mut log = f.log.clone();
    log.drain(Fixture::at(6)..Fixture::at(9));
    assert_eq!(
        f.verify(&log).findings,
        vec![Finding::Removed { first: 6, last: 8 }]
    );
}

#[test]
fn inserted_forged_record_naive() {
    let f = Fixture::new();
    // A copy of record 9 with a changed actor, slipped in after it, hash left as it was.
    let mut log = f.log.clone();
    let mut forged = log[Fixture::at(9)].clone();
    forged.event.actor = "mallory".into();
    log.insert(Fixture::at(10), forged);
    let rep = f.verify(&log);
    assert_eq!(
        rep.findings,
        vec![Finding::Edited { seq: 9 }, Finding::Inserted { seq: 9 }]
    );

    // A new record with a made-up hash, numbered as the next one.
    let mut log = f.log.clone();
    let mut forged = AuditRecord::at(9, log[Fixture::at(8)].hash, event(99));
    forged.hash = Hash([0x42; 32]);
    log.insert(Fixture::at(9), forged);
    let rep = f.verify(&log);
    assert_eq!(
        rep.findings,
        vec![Finding::Edited { seq: 9 }, Finding::Inserted { seq: 9 }]
    );
}

#[test]
fn inserted_forged_record_with_recomputed_hash() {
    let f = Fixture::new();
    // A record hashed correctly onto record 8, stored before the genuine record 9.
    let mut log = f.log.clone();
    let forged = AuditRecord::next(Some(&log[Fixture::at(8)]), event(99));
    assert_eq!(forged.seq, 9);
    log.insert(Fixture::at(9), forged.clone());
    assert_eq!(f.verify(&log).findings, vec![Finding::Inserted { seq: 9 }]);

    // Stored after it instead.
    let mut log = f.log.clone();
    log.insert(Fixture::at(10), forged);
    assert_eq!(f.verify(&log).findings, vec![Finding::Inserted { seq: 9 }]);

    // At an anchored seq the checkpoint shows which copy is genuine: none of the chain
    // findings but the duplicate, and the checkpoint still verifies.
    let mut log = f.log.clone();
    let forged = AuditRecord::next(Some(&log[Fixture::at(9)]), event(99));
    log.insert(Fixture::at(10), forged);
    let rep = f.verify(&log);
    assert_eq!(rep.findings, vec![Finding::Inserted { seq: 10 }]);
    assert_eq!(rep.checkpoints_verified, 4);

    // A forged record with a fresh seq and a wrong link.
    let mut log = f.log.clone();
    let forged = AuditRecord::at(9, Hash([7; 32]), event(99));
    log.insert(Fixture::at(9), forged);
    assert_eq!(
        f.verify(&log).findings,
        vec![Finding::BrokenLink { seq: 9 }, Finding::Inserted { seq: 9 }]
    );
}

#[test]
fn swapped_records() {
    let f = Fixture::new();
    let mut log = f.log.clone();
    log.swap(Fixture::at(8), Fixture::at(9));
    assert_eq!(
        f.verify(&log).findings,
        vec![Finding::Reordered { seq: 8, after: 9 }]
    );

    // Two records far apart.
    let mut log = f.log.clone();
    log.swap(Fixture::at(3), Fixture::at(7));
    assert_eq!(
        f.verify(&log).findings,
        vec![
            Finding::Reordered { seq: 4, after: 7 },
            Finding::Reordered { seq: 3, after: 6 }
        ]
    );

    // The first record moved to the end.
    let mut log = f.log.clone();
    let first = log.remove(0);
    log.push(first);
    assert_eq!(
        f.verify(&log).findings,
        vec![Finding::Reordered { seq: 1, after: N }]
    );
}

#[test]
fn truncated_tail() {
    let f = Fixture::new();
    // Cut back to record 12: checkpoints 15 and 20 lie beyond the end.
    let log = &f.log[..12];
    let rep = f.verify(log);
    assert_eq!(
        rep.findings,
        vec![Finding::TruncatedTail {
            last_seq: 12,
            anchored_seq: 20
        }]
    );
    assert_eq!(rep.last_anchored_seq, Some(10));

    // Everything removed.
    let rep = f.verify(&[]);
    assert_eq!(
        rep.findings,
        vec![Finding::TruncatedTail {
            last_seq: 0,
            anchored_seq: 20
        }]
    );

    // Cut back to 12 and grown again with new records, hashed consistently: the checkpoints'
    // heads no longer match.
    let mut log = f.log[..12].to_vec();
    extend(&mut log, (100..111).map(event));
    let rep = f.verify(&log);
    assert!(
        matches!(
            &rep.findings[..],
            [
                Finding::ChainRewritten {
                    checkpoint_seq: 15,
                    after_seq: 10,
                    ..
                },
                Finding::ChainRewritten {
                    checkpoint_seq: 20,
                    after_seq: 10,
                    ..
                },
            ]
        ),
        "{rep:#?}"
    );

    // Records after the newest checkpoint are protected by the chain alone: the report says
    // how many there are, so that the administrator knows what a checkpoint does not cover.
    let rep = f.verify(&f.log[..21]);
    assert!(rep.is_ok());
    assert_eq!(rep.last_anchored_seq, Some(20));
    assert_eq!(rep.unanchored_records, 1);
}

#[test]
fn chain_rewritten_consistently_is_caught_by_the_anchor() {
    let f = Fixture::new();
    // From record 8 on, every record replaced (one edited, the rest copied) and every hash
    // recomputed: the chain itself is flawless.
    let mut log = f.log[..7].to_vec();
    let mut events: Vec<AuditEvent> = f.log[7..].iter().map(|r| r.event.clone()).collect();
    events[0].actor = "nobody".into();
    extend(&mut log, events);
    let rep = f.verify(&log);
    let rewritten: Vec<(u64, u64)> = rep
        .findings
        .iter()
        .map(|x| match x {
            Finding::ChainRewritten {
                checkpoint_seq,
                after_seq,
                anchored_head,
                found,
            } => {
                assert_ne!(anchored_head, found);
                (*checkpoint_seq, *after_seq)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(rewritten, vec![(10, 5), (15, 5), (20, 5)]);
    assert_eq!(rep.last_anchored_seq, Some(5));

    // Without the anchors, the rewrite is invisible: that is what they are for.
    assert!(f.verify_with_checkpoints(&log, &[]).is_ok());

    // A record removed and the rest renumbered with recomputed hashes.
    let mut log = f.log[..7].to_vec();
    extend(&mut log, f.log[8..].iter().map(|r| r.event.clone()));
    let rep = f.verify(&log);
    assert!(
        matches!(
            &rep.findings[..],
            [
                Finding::ChainRewritten {
                    checkpoint_seq: 10,
                    after_seq: 5,
                    ..
                },
                Finding::ChainRewritten {
                    checkpoint_seq: 15,
                    ..
                },
                Finding::ChainRewritten {
                    checkpoint_seq: 20,
                    ..
                },
            ]
        ),
        "{rep:#?}"
    );
}

#[test]
fn forged_checkpoint_signature() {
    let f = Fixture::new();
    // The forger rewrites the chain from 8 and alters the genuine checkpoints to match it.
    let mut log = f.log[..7].to_vec();
    let mut events: Vec<AuditEvent> = f.log[7..].iter().map(|r| r.event.clone()).collect();
    events[0].actor = "nobody".into();
    extend(&mut log, events);
    let cps: Vec<Checkpoint> = f
        .checkpoints
        .iter()
        .map(|cp| {
            let mut cp = cp.clone();
            cp.head = log[Fixture::at(cp.seq)].hash;
            cp
        })
        .collect();
    let rep = f.verify_with_checkpoints(&log, &cps);
    let bad: Vec<u64> = rep
        .findings
        .iter()
        .map(|x| match x {
            Finding::BadCheckpointSignature { seq, signer } => {
                assert_eq!(signer, f.signer.key_id());
                *seq
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // Checkpoint 5 was left as it was (same head) and still verifies.
    assert_eq!(bad, vec![10, 15, 20]);
    assert_eq!(rep.checkpoints_verified, 1);

    // A signature that is not even well-formed.
    let mut cps = f.checkpoints.clone();
    cps[1].signature = "zz".into();
    assert_eq!(
        f.verify_with_checkpoints(&f.log, &cps).findings,
        vec![Finding::BadCheckpointSignature {
            seq: 10,
            signer: f.signer.key_id().to_owned()
        }]
    );
}

#[test]
fn checkpoint_from_an_untrusted_key() {
    let f = Fixture::new();
    let mallory = CheckpointSigner::generate().unwrap();
    // The forger truncates the log and signs a checkpoint of the new tail with a key of its own,
    // hoping to cover the truncation.
    let log = &f.log[..12];
    let mut cps = f.checkpoints.clone();
    cps.push(mallory.checkpoint(&log[11], 0).unwrap());
    let rep = f.verify_with_checkpoints(log, &cps);
    assert_eq!(
        rep.findings,
        vec![
            Finding::UnknownCheckpointSigner {
                seq: 12,
                signer: mallory.key_id().to_owned()
            },
            Finding::TruncatedTail {
                last_seq: 12,
                anchored_seq: 20
            }
        ]
    );
    // A valid signature by an untrusted key, even naming the trusted key's id, is refused.
    let mut cp = mallory.checkpoint(&log[11], 0).unwrap();
    cp.signer = f.signer.key_id().to_owned();
    let rep = f.verify_with_checkpoints(&f.log, &[cp]);
    assert_eq!(
        rep.findings,
        vec![Finding::BadCheckpointSignature {
            seq: 12,
            signer: f.signer.key_id().to_owned()
        }]
    );
    // Trusting both keys: each checkpoint is checked with its own signer's key.
    let rep = verify(
        &f.log,
        &[
            f.checkpoints[0].clone(),
            mallory.checkpoint(&f.log[11], 0).unwrap(),
        ],
        &[
            mallory.verifying_key().clone(),
            f.signer.verifying_key().clone(),
        ],
    );
    assert!(rep.is_ok(), "{rep:#?}");
    assert_eq!(rep.checkpoints_verified, 2);
}

#[test]
fn conflicting_checkpoints_reveal_a_fork() {
    let f = Fixture::new();
    let mut fork = f.log[..9].to_vec();
    extend(&mut fork, [event(77)]);
    let mut cps = f.checkpoints.clone();
    cps.push(f.signer.checkpoint(&fork[9], 0).unwrap());
    let rep = f.verify_with_checkpoints(&f.log, &cps);
    assert_eq!(
        rep.findings,
        vec![Finding::ConflictingCheckpoints { seq: 10 }]
    );
    // The fork's own log is caught too.
    let rep = f.verify_with_checkpoints(&fork, &cps);
    assert_eq!(rep.findings[0], Finding::ConflictingCheckpoints { seq: 10 });
    assert!(matches!(
        rep.findings[1],
        Finding::TruncatedTail {
            last_seq: 10,
            anchored_seq: 20
        }
    ));
}

#[test]
fn many_findings_are_capped_with_a_count() {
    let f = Fixture::new();
    let mut log = f.log.clone();
    for r in &mut log {
        r.event.target.push('!');
    }
    let opts = VerifyOptions {
        max_findings: 5,
        ..VerifyOptions::default()
    };
    let rep = zaibei_audit::verify_with(&log, &f.checkpoints, &f.keys(), opts);
    assert_eq!(rep.findings.len(), 5);
    assert_eq!(rep.findings_omitted, N - 5);
}

/// The whole path of `zaibei audit verify`: export to JSON Lines, anchors in a separate
/// directory, the public key from PEM; tampering with the exported text is found.
#[tokio::test]
async fn exported_files_and_directory_anchors() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path().join("anchors")));
    let anchors = AnchorStore::new(store);
    for cp in &f.checkpoints {
        anchors.put(cp).await.unwrap();
    }
    let pem = f.signer.public_key_pem().unwrap();
    let key = Sm2VerifyingKey::from_public_key_pem(&pem).unwrap();

    let mut export = Vec::new();
    write_jsonl(&mut export, &f.log).unwrap();
    let loaded = anchors.load_all().await.unwrap();
    assert!(loaded.corrupt.is_empty());
    assert_eq!(loaded.checkpoints, f.checkpoints);
    let rep = verify_jsonl(
        BufReader::new(&export[..]),
        &loaded.checkpoints,
        std::slice::from_ref(&key),
        VerifyOptions::default(),
    )
    .unwrap();
    assert!(rep.is_ok(), "{rep:#?}");
    assert_eq!(rep.checkpoints_verified, 4);

    // Edit the text of line 9 (record 9): the actor is changed.
    let text = String::from_utf8(export).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[8] = lines[8].replace("\"actor\":\"user0\"", "\"actor\":\"root\"");
    // Break line 14 so it no longer parses.
    lines[13].truncate(20);
    let tampered = lines.join("\n") + "\n";
    let rep = verify_jsonl(
        tampered.as_bytes(),
        &loaded.checkpoints,
        std::slice::from_ref(&key),
        VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(rep.findings.len(), 3, "{rep:#?}");
    assert_eq!(rep.findings[0], Finding::Edited { seq: 9 });
    assert!(matches!(
        rep.findings[1],
        Finding::Unreadable { line: 14, .. }
    ));
    assert_eq!(
        rep.findings[2],
        Finding::Removed {
            first: 14,
            last: 14
        }
    );

    // The records read back from the export are the same.
    let back: Vec<AuditRecord> = read_jsonl(text.as_bytes()).map(Result::unwrap).collect();
    assert_eq!(back, f.log);
}
