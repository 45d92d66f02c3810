//! Property tests: the canonical encoding is deterministic and injective, exports round-trip,
//! and verification never panics whatever the input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::prelude::*;
use serde_json::{Map, Value};
use zaibei_audit::{
    AuditAction, AuditEvent, AuditRecord, Checkpoint, CheckpointSigner, Finding, Hash, Outcome,
    VerifyOptions, canonical_bytes, canonical_json, read_jsonl, verify, verify_jsonl, verify_with,
    write_jsonl,
};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z0-9:._-]{0,12}",
        any::<String>(),
        Just("\"\\\n\u{0}\u{1f}é中".to_owned()),
    ]
}

/// JSON values without floats (a float and an integer of the same value are, by design, one
/// canonical number).
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn details() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        prop::collection::vec((text(), json_value()), 0..4)
            .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
    ]
}

fn action() -> impl Strategy<Value = AuditAction> {
    prop::sample::select(AuditAction::ALL)
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop::sample::select(vec![Outcome::Success, Outcome::Failure, Outcome::Denied])
}

fn event() -> impl Strategy<Value = AuditEvent> {
    (
        any::<i64>(),
        prop::option::of(text()),
        text(),
        action(),
        text(),
        outcome(),
        prop::option::of(text()),
        details(),
    )
        .prop_map(
            |(time, tenant, actor, action, target, outcome, source, details)| AuditEvent {
                time,
                tenant,
                actor,
                action,
                target,
                outcome,
                source,
                details,
            },
        )
}

/// Rebuilds every object of `v` with its members inserted in reverse order.
fn reversed_objects(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(reversed_objects).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter().rev() {
                out.insert(k.clone(), reversed_objects(v));
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn chain(events: Vec<AuditEvent>) -> Vec<AuditRecord> {
    let mut out: Vec<AuditRecord> = Vec::new();
    for e in events {
        let r = AuditRecord::next(out.last(), e);
        out.push(r);
    }
    out
}

/// A way to damage a log.
#[derive(Debug, Clone)]
enum Mutation {
    Remove(usize),
    Swap(usize, usize),
    Duplicate(usize, usize),
    SetSeq(usize, u64),
    SetPrev(usize, [u8; 32]),
    SetHash(usize, [u8; 32]),
    SetActor(usize, String),
    Truncate(usize),
    Rehash(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let i = any::<prop::sample::Index>().prop_map(|x| x.index(1 << 16));
    let seq = prop_oneof![Just(0u64), Just(u64::MAX), Just(u64::MAX - 1), 0u64..40];
    prop_oneof![
        i.clone().prop_map(Mutation::Remove),
        (i.clone(), i.clone()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (i.clone(), i.clone()).prop_map(|(a, b)| Mutation::Duplicate(a, b)),
        (i.clone(), seq).prop_map(|(a, s)| Mutation::SetSeq(a, s)),
        (i.clone(), any::<[u8; 32]>()).prop_map(|(a, h)| Mutation::SetPrev(a, h)),
        (i.clone(), any::<[u8; 32]>()).prop_map(|(a, h)| Mutation::SetHash(a, h)),
        (i.clone(), "[a-z]{0,4}").prop_map(|(a, s)| Mutation::SetActor(a, s)),
        i.clone().prop_map(Mutation::Truncate),
        i.prop_map(Mutation::Rehash),
    ]
}

fn apply(log: &mut Vec<AuditRecord>, m: &Mutation) {
    if log.is_empty() {
        return;
    }
    let n = log.len();
    match m {
        Mutation::Remove(i) => {
            log.remove(i % n);
        }
        Mutation::Swap(a, b) => log.swap(a % n, b % n),
        Mutation::Duplicate(a, b) => {
            let r = log[a % n].clone();
            log.insert(b % (n + 1), r);
        }
        Mutation::SetSeq(i, s) => log[i % n].seq = *s,
        Mutation::SetPrev(i, h) => log[i % n].prev = Hash(*h),
        Mutation::SetHash(i, h) => log[i % n].hash = Hash(*h),
        Mutation::SetActor(i, s) => log[i % n].event.actor = s.clone(),
        Mutation::Truncate(i) => log.truncate(i % n),
        Mutation::Rehash(i) => {
            let r = &mut log[i % n];
            r.hash = r.recompute_hash();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canonical_encoding_is_deterministic(e in event()) {
        let a = canonical_bytes(&e);
        prop_assert_eq!(&a, &canonical_bytes(&e.clone()));
        // Through JSON text and back, and with object members in another order.
        let back: AuditEvent = serde_json::from_str(&serde_json::to_string(&e).unwrap()).unwrap();
        prop_assert_eq!(&a, &canonical_bytes(&back));
        let mut shuffled = e.clone();
        shuffled.details = reversed_objects(&e.details);
        prop_assert_eq!(&a, &canonical_bytes(&shuffled));
        // Canonical JSON is JSON and a fixed point.
        let reparsed: Value = serde_json::from_str(&canonical_json(&e.details)).unwrap();
        prop_assert_eq!(&reparsed, &e.details);
        prop_assert_eq!(canonical_json(&reparsed), canonical_json(&e.details));
    }

    #[test]
    fn canonical_encoding_is_injective(a in event(), b in event()) {
        prop_assert_eq!(a == b, canonical_bytes(&a) == canonical_bytes(&b));
    }

    #[test]
    fn one_field_changed_changes_the_encoding(e in event(), which in 0usize..8, s in text()) {
        let mut f = e.clone();
        match which {
            0 => f.time = f.time.wrapping_add(1),
            1 => f.tenant = if f.tenant.is_some() { None } else { Some(s) },
            2 => f.actor.push('x'),
            3 => f.action = if f.action == AuditAction::Login { AuditAction::Logout } else { AuditAction::Login },
            4 => f.target = format!("{}{s}x", f.target),
            5 => f.outcome = if f.outcome == Outcome::Denied { Outcome::Success } else { Outcome::Denied },
            6 => f.source = if f.source.is_some() { None } else { Some(s) },
            _ => f.details = if f.details.is_null() { Value::Object(Map::new()) } else { Value::Null },
        }
        prop_assert_ne!(canonical_bytes(&e), canonical_bytes(&f));
    }

    #[test]
    fn jsonl_round_trip(events in prop::collection::vec(event(), 0..8)) {
        let log = chain(events);
        let mut out = Vec::new();
        write_jsonl(&mut out, &log).unwrap();
        let back: Vec<AuditRecord> = read_jsonl(&out[..]).map(Result::unwrap).collect();
        prop_assert_eq!(&back, &log);
        let empty: [Checkpoint; 0] = [];
        prop_assert!(verify(&back, &empty, &[]).is_ok());
    }

    #[test]
    fn verify_never_panics_on_mutated_logs(
        n in 0usize..30,
        muts in prop::collection::vec(mutation(), 0..6),
        cp_at in prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        max_findings in 0usize..8,
        later in any::<bool>(),
    ) {
        let events = (0..n)
            .map(|i| AuditEvent::new(i as i64, "u", AuditAction::JobRun, "j", Outcome::Success))
            .collect();
        let mut log = chain(events);
        let signer = CheckpointSigner::generate().unwrap();
        let cps: Vec<Checkpoint> = if log.is_empty() {
            Vec::new()
        } else {
            cp_at.iter().map(|i| signer.checkpoint(&log[i.index(log.len())], 0).unwrap()).collect()
        };
        for m in &muts {
            apply(&mut log, m);
        }
        let keys = [signer.verifying_key().clone()];
        let opts = VerifyOptions { max_findings, allow_later_start: later };
        let rep = verify_with(&log, &cps, &keys, opts);
        prop_assert!(rep.findings.len() <= max_findings);
        prop_assert_eq!(rep.records, log.iter().filter(|r| r.seq != 0).count() as u64);
        // Through the export too.
        let mut out = Vec::new();
        write_jsonl(&mut out, &log).unwrap();
        let rep2 = verify_jsonl(&out[..], &cps, &keys, opts).unwrap();
        prop_assert_eq!(rep, rep2);
    }

    #[test]
    fn verify_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let empty: [Checkpoint; 0] = [];
        let rep = verify_jsonl(&bytes[..], &empty, &[], VerifyOptions::default()).unwrap();
        prop_assert!(rep.findings.len() <= VerifyOptions::default().max_findings);
    }

    #[test]
    fn any_naive_edit_or_inner_removal_is_found(n in 2usize..25, i in any::<prop::sample::Index>(), s in "[a-z]{1,4}") {
        let events = (0..n)
            .map(|k| AuditEvent::new(k as i64, "u", AuditAction::Login, "t", Outcome::Success))
            .collect();
        let log = chain(events);
        let signer = CheckpointSigner::generate().unwrap();
        let cps = [signer.checkpoint(&log[n - 1], 0).unwrap()];
        let keys = [signer.verifying_key().clone()];
        let k = i.index(n);

        let mut edited = log.clone();
        edited[k].event.actor.push_str(&s);
        let seq = edited[k].seq;
        prop_assert_eq!(verify(&edited, &cps, &keys).findings, vec![Finding::Edited { seq }]);

        let mut removed = log.clone();
        removed.remove(k);
        let rep = verify(&removed, &cps, &keys);
        prop_assert!(!rep.is_ok());
        if k + 1 < n {
            prop_assert_eq!(rep.findings, vec![Finding::Removed { first: seq, last: seq }]);
        } else {
            prop_assert_eq!(rep.findings, vec![Finding::TruncatedTail { last_seq: seq - 1, anchored_seq: seq }]);
        }
    }
}
