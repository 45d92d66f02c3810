//! The chained record.

use serde::{Deserialize, Serialize};

use crate::canonical::{canonical_bytes, put_u64};
use crate::hash::sm3;
use crate::{AuditEvent, Hash};

/// Domain-separation tag that starts the hashed bytes of every record.
pub const RECORD_TAG: &[u8] = b"zaibei audit record v1";

/// One entry of the audit log: an event chained to the entry before it.
///
/// `hash = SM3(RECORD_TAG ‖ u64le(seq) ‖ prev ‖ canonical_bytes(event))`, and `prev` is the
/// `hash` of the record with sequence number `seq - 1` ([`Hash::ZERO`] for `seq` 1). Changing,
/// removing, inserting or reordering a record therefore breaks either its own hash or the link
/// of the record after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// Position in the chain: 1 for the first record, then consecutive.
    pub seq: u64,
    /// Hash of the record before (all zeros for the first).
    pub prev: Hash,
    /// Hash of this record.
    pub hash: Hash,
    /// What happened.
    pub event: AuditEvent,
}

impl AuditRecord {
    /// The record that follows `prev_record` (or the first record of the chain when `None`),
    /// with its hash computed. Pure: appending it durably, and only after `prev_record`, is the
    /// caller's job (see the crate documentation on serialising appends).
    ///
    /// Saturates at `u64::MAX`, which no log reaches.
    pub fn next(prev_record: Option<&AuditRecord>, event: AuditEvent) -> AuditRecord {
        let (seq, prev) = match prev_record {
            Some(p) => (p.seq.saturating_add(1), p.hash),
            None => (1, Hash::ZERO),
        };
        Self::at(seq, prev, event)
    }

    /// The record at `seq` after a record whose hash is `prev`, with its hash computed: for a
    /// caller that keeps only the chain head (`seq`, `hash`) of the last record.
    pub fn at(seq: u64, prev: Hash, event: AuditEvent) -> AuditRecord {
        let hash = record_hash(seq, &prev, &event);
        AuditRecord {
            seq,
            prev,
            hash,
            event,
        }
    }

    /// The hash this record's contents (`seq`, `prev`, `event`) should have; it differs from
    /// `self.hash` if the record was edited.
    pub fn recompute_hash(&self) -> Hash {
        record_hash(self.seq, &self.prev, &self.event)
    }

    /// True when the stored hash matches the contents.
    pub fn hash_is_valid(&self) -> bool {
        self.recompute_hash() == self.hash
    }
}

/// `SM3(RECORD_TAG ‖ u64le(seq) ‖ prev ‖ canonical_bytes(event))`.
pub fn record_hash(seq: u64, prev: &Hash, event: &AuditEvent) -> Hash {
    let mut head = Vec::with_capacity(RECORD_TAG.len() + 8 + 32);
    head.extend_from_slice(RECORD_TAG);
    put_u64(&mut head, seq);
    head.extend_from_slice(prev.as_bytes());
    sm3(&[&head, &canonical_bytes(event)])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{AuditAction, Outcome};

    fn ev(i: i64) -> AuditEvent {
        AuditEvent::new(i, "alice", AuditAction::Login, "alice", Outcome::Success)
    }

    #[test]
    fn chain_links_and_hashes() {
        let r1 = AuditRecord::next(None, ev(1));
        assert_eq!(r1.seq, 1);
        assert_eq!(r1.prev, Hash::ZERO);
        assert!(r1.hash_is_valid());
        let r2 = AuditRecord::next(Some(&r1), ev(2));
        assert_eq!(r2.seq, 2);
        assert_eq!(r2.prev, r1.hash);
        assert_eq!(r2.recompute_hash(), r2.hash);
        assert_eq!(AuditRecord::at(2, r1.hash, ev(2)), r2);
        // Every input of the hash matters.
        assert_ne!(record_hash(3, &r1.hash, &ev(2)), r2.hash);
        assert_ne!(record_hash(2, &Hash::ZERO, &ev(2)), r2.hash);
        assert_ne!(record_hash(2, &r1.hash, &ev(3)), r2.hash);
        let mut edited = r2.clone();
        edited.event.actor = "mallory".into();
        assert!(!edited.hash_is_valid());
    }

    /// A fixed vector, so that the encoding cannot change unnoticed (docs/FORMAT.md §16).
    #[test]
    fn known_answer() {
        let e = AuditEvent::new(
            1_700_000_000_000,
            "alice",
            AuditAction::LoginFailed,
            "alice",
            Outcome::Failure,
        )
        .with_tenant("acme")
        .with_source("192.0.2.7")
        .with_details(serde_json::json!({"reason": "bad password", "attempt": 3}));
        let r = AuditRecord::next(None, e);
        let mut bytes = RECORD_TAG.to_vec();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        bytes.extend_from_slice(&[0; 32]);
        bytes.extend_from_slice(&canonical_bytes(&r.event));
        assert_eq!(r.hash, sm3(&[&bytes]));
        assert_eq!(
            r.hash.to_hex(),
            "e3699cd76bf1e996d209c38519ecd2e221e3d6ee9f47f393573c049b769963c7",
            "update docs/FORMAT.md §16 if this changes"
        );
    }
}
