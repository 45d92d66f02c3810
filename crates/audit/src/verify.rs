//! Verification of a log against its anchored checkpoints, in one pass over the records.
//!
//! The records are read once, in stored order, and only a fixed amount of state is kept
//! besides the findings (capped) and one entry per checkpoint: the highest `seq` so far, the
//! ranges of `seq` still missing (capped), and a window of the last [`WINDOW`] records' links.
//!
//! | tampering | finding |
//! | --- | --- |
//! | a field of a record changed, hash left alone | [`Finding::Edited`] |
//! | a record changed and its hash recomputed | [`Finding::BrokenLink`] on the next record (and [`Finding::ChainRewritten`] if anchored) |
//! | a record removed | [`Finding::Removed`] |
//! | a record inserted with a `seq` already used | [`Finding::Inserted`] (plus [`Finding::Edited`] if its hash is not recomputed) |
//! | records swapped or moved | [`Finding::Reordered`] |
//! | the newest records cut off | [`Finding::TruncatedTail`] when a checkpoint lies beyond the new end |
//! | the chain rewritten consistently (hashes recomputed), or truncated and grown again | [`Finding::ChainRewritten`] at the first checkpoint it covers |
//! | a forged or altered checkpoint | [`Finding::BadCheckpointSignature`] |
//! | a checkpoint signed by a key not trusted | [`Finding::UnknownCheckpointSigner`] |
//!
//! Records after the newest checkpoint are protected only by the chain: a forger who removes or
//! rewrites them with recomputed hashes is caught only by the next checkpoint.
//! [`VerifyReport::unanchored_records`] says how many there are.

use std::borrow::Borrow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::io::BufRead;

use serde::Serialize;
use zaibei_crypto::Sm2VerifyingKey;

use crate::jsonl::JsonlReader;
use crate::{AuditError, AuditRecord, Checkpoint, Hash, key_id};

/// Number of recent records whose links are kept to check records that arrive out of order.
pub const WINDOW: usize = 64;

/// Findings kept by default; later ones are only counted.
pub const DEFAULT_MAX_FINDINGS: usize = 1000;

/// How to verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Findings kept in the report; later ones are counted in
    /// [`VerifyReport::findings_omitted`].
    pub max_findings: usize,
    /// Accept a log that starts after seq 1 (an export of a range): the first record's `prev`
    /// is then checked only against a checkpoint at the seq before it, if any. Without it,
    /// missing leading records are [`Finding::Removed`].
    pub allow_later_start: bool,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            max_findings: DEFAULT_MAX_FINDINGS,
            allow_later_start: false,
        }
    }
}

/// One problem found in the log or its checkpoints. Every variant names the `seq` (or line, or
/// anchor object) involved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// The record's stored hash does not match its contents: it was edited.
    Edited {
        /// The record.
        seq: u64,
    },
    /// Records `first..=last` are missing: removed (or never exported).
    Removed {
        /// First missing seq.
        first: u64,
        /// Last missing seq.
        last: u64,
    },
    /// A record with this `seq` occurs again: a record was inserted (the hashes, links and
    /// checkpoints tell which copy is genuine). `seq` 0, never valid, is reported here too.
    Inserted {
        /// The repeated seq.
        seq: u64,
    },
    /// The record's `prev` is not the hash of the record before it (or not zeros for seq 1):
    /// something was inserted before it, or the record before it was replaced with a
    /// recomputed hash.
    BrokenLink {
        /// The record whose link is broken.
        seq: u64,
    },
    /// The record is stored out of order: it comes after a record with a higher `seq`.
    Reordered {
        /// The record out of place.
        seq: u64,
        /// The seq of the record stored just before it.
        after: u64,
    },
    /// The log ends before the newest anchored checkpoint: its tail was cut off.
    TruncatedTail {
        /// Highest seq in the log (0 when it is empty).
        last_seq: u64,
        /// The checkpoint's seq: records up to it existed when it was signed.
        anchored_seq: u64,
    },
    /// The record at a checkpoint's seq has a different hash than the signed head: the chain
    /// was rewritten (hashes recomputed) somewhere in `after_seq + 1 ..= checkpoint_seq`, or
    /// truncated and grown again.
    ChainRewritten {
        /// The checkpoint's seq.
        checkpoint_seq: u64,
        /// The highest seq below it whose checkpoint still matches (0 when none).
        after_seq: u64,
        /// The head the checkpoint signed.
        anchored_head: Hash,
        /// The hash the log has there.
        found: Hash,
    },
    /// A checkpoint's signature does not verify with the trusted key its signer names: it was
    /// forged or altered. It is not used to check the log.
    BadCheckpointSignature {
        /// The seq the checkpoint claims.
        seq: u64,
        /// Its signer key id.
        signer: String,
    },
    /// A checkpoint is signed by a key that is not trusted. It is not used to check the log.
    UnknownCheckpointSigner {
        /// The seq the checkpoint claims.
        seq: u64,
        /// Its signer key id.
        signer: String,
    },
    /// Validly signed checkpoints disagree on the head at one seq: the chain was forked or
    /// rewritten while it was being checkpointed.
    ConflictingCheckpoints {
        /// The seq.
        seq: u64,
    },
    /// A validly signed checkpoint is inconsistent (`records` is not `seq`, or `seq` is 0).
    MalformedCheckpoint {
        /// The seq it claims.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// An anchor object could not be read as a checkpoint.
    CorruptAnchor {
        /// The object name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A line of the export is not a valid record (its seq is unknown; the record is missing
    /// from the chain).
    Unreadable {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::Edited { seq } => {
                write!(
                    f,
                    "record {seq} was edited: its hash does not match its contents"
                )
            }
            Finding::Removed { first, last } if first == last => {
                write!(f, "record {first} was removed")
            }
            Finding::Removed { first, last } => {
                write!(f, "records {first} to {last} were removed")
            }
            Finding::Inserted { seq } => {
                write!(f, "record {seq} occurs again: a record was inserted")
            }
            Finding::BrokenLink { seq } => write!(
                f,
                "record {seq} does not link to the record before it: a record was inserted or replaced before it"
            ),
            Finding::Reordered { seq, after } => {
                write!(
                    f,
                    "record {seq} is out of order: stored after record {after}"
                )
            }
            Finding::TruncatedTail {
                last_seq,
                anchored_seq,
            } => write!(
                f,
                "the log was truncated: it ends at record {last_seq}, but a signed checkpoint covers records up to {anchored_seq}"
            ),
            Finding::ChainRewritten {
                checkpoint_seq,
                after_seq,
                anchored_head,
                found,
            } => write!(
                f,
                "the chain was rewritten after record {after_seq}: record {checkpoint_seq} hashes to {found}, its signed checkpoint says {anchored_head}"
            ),
            Finding::BadCheckpointSignature { seq, signer } => write!(
                f,
                "the checkpoint of record {seq} has a bad signature (signer {signer}): forged or altered"
            ),
            Finding::UnknownCheckpointSigner { seq, signer } => write!(
                f,
                "the checkpoint of record {seq} is signed by key {signer}, which is not trusted"
            ),
            Finding::ConflictingCheckpoints { seq } => write!(
                f,
                "validly signed checkpoints disagree on the hash of record {seq}: the chain was forked"
            ),
            Finding::MalformedCheckpoint { seq, reason } => {
                write!(f, "the checkpoint of record {seq} is malformed: {reason}")
            }
            Finding::CorruptAnchor { name, reason } => {
                write!(f, "anchor object {name} is corrupt: {reason}")
            }
            Finding::Unreadable { line, reason } => {
                write!(f, "line {line} is not a valid audit record: {reason}")
            }
        }
    }
}

/// The result of a verification: a summary and every finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records read (unreadable lines not counted).
    pub records: u64,
    /// Lowest seq read.
    pub first_seq: Option<u64>,
    /// Highest seq read.
    pub last_seq: Option<u64>,
    /// Checkpoints given.
    pub checkpoints: u64,
    /// Checkpoints with a trusted, valid signature whose head matches the log.
    pub checkpoints_verified: u64,
    /// Highest seq covered by a verified checkpoint.
    pub last_anchored_seq: Option<u64>,
    /// Records after `last_anchored_seq`: protected by the chain alone until the next
    /// checkpoint.
    pub unanchored_records: u64,
    /// What is wrong, in the order found (at most [`VerifyOptions::max_findings`]).
    pub findings: Vec<Finding>,
    /// Findings beyond the cap, counted only.
    pub findings_omitted: u64,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty() && self.findings_omitted == 0
    }
}

/// The trusted checkpoints of one seq.
#[derive(Debug, Default)]
struct Anchor {
    /// Each distinct signed head, and whether a record matched it.
    heads: Vec<(Hash, u64, bool)>,
    /// A hash the log has at this seq that matches no head.
    mismatch: Option<Hash>,
}

/// A streaming verifier: [`Verifier::push`] each record in stored order, then
/// [`Verifier::finish`].
#[derive(Debug)]
pub struct Verifier {
    opts: VerifyOptions,
    findings: Vec<Finding>,
    omitted: u64,
    checkpoints: u64,
    anchors: BTreeMap<u64, Anchor>,
    records: u64,
    min_seq: Option<u64>,
    max_seq: u64,
    /// The seq of the previous record in stored order.
    last_pushed: Option<u64>,
    /// Missing ranges below `max_seq`, ascending and disjoint.
    gaps: VecDeque<(u64, u64)>,
    /// `(seq, prev, hash)` of the last records.
    window: VecDeque<(u64, Hash, Hash)>,
}

impl Verifier {
    /// A verifier that checks the log against `checkpoints`, trusting those signed by one of
    /// `trusted`. Checkpoint signatures are checked here.
    pub fn new<C>(
        checkpoints: impl IntoIterator<Item = C>,
        trusted: &[Sm2VerifyingKey],
        opts: VerifyOptions,
    ) -> Self
    where
        C: Borrow<Checkpoint>,
    {
        let keys: Vec<(String, &Sm2VerifyingKey)> =
            trusted.iter().map(|k| (key_id(k), k)).collect();
        let mut v = Verifier {
            opts,
            findings: Vec::new(),
            omitted: 0,
            checkpoints: 0,
            anchors: BTreeMap::new(),
            records: 0,
            min_seq: None,
            max_seq: 0,
            last_pushed: None,
            gaps: VecDeque::new(),
            window: VecDeque::with_capacity(WINDOW + 1),
        };
        for cp in checkpoints {
            v.add_checkpoint(cp.borrow(), &keys);
        }
        v
    }

    fn add_checkpoint(&mut self, cp: &Checkpoint, keys: &[(String, &Sm2VerifyingKey)]) {
        self.checkpoints += 1;
        let Some((_, key)) = keys.iter().find(|(id, _)| *id == cp.signer) else {
            self.add(Finding::UnknownCheckpointSigner {
                seq: cp.seq,
                signer: cp.signer.clone(),
            });
            return;
        };
        if cp.verify_signature(key).is_err() {
            self.add(Finding::BadCheckpointSignature {
                seq: cp.seq,
                signer: cp.signer.clone(),
            });
            return;
        }
        if cp.seq == 0 || cp.records != cp.seq {
            self.add(Finding::MalformedCheckpoint {
                seq: cp.seq,
                reason: format!("seq {} with records {}", cp.seq, cp.records),
            });
            return;
        }
        let anchor = self.anchors.entry(cp.seq).or_default();
        if let Some(h) = anchor.heads.iter_mut().find(|h| h.0 == cp.head) {
            h.1 += 1;
            return;
        }
        anchor.heads.push((cp.head, 1, false));
        if anchor.heads.len() == 2 {
            self.add(Finding::ConflictingCheckpoints { seq: cp.seq });
        }
    }

    /// Reports an anchor object that could not be read.
    pub fn corrupt_anchor(&mut self, name: impl Into<String>, reason: impl Into<String>) {
        self.add(Finding::CorruptAnchor {
            name: name.into(),
            reason: reason.into(),
        });
    }

    /// Reports a line of the export that is not a valid record.
    pub fn unreadable(&mut self, line: u64, reason: impl Into<String>) {
        self.add(Finding::Unreadable {
            line,
            reason: reason.into(),
        });
    }

    fn add(&mut self, f: Finding) {
        if self.findings.len() < self.opts.max_findings {
            self.findings.push(f);
        } else {
            self.omitted += 1;
        }
    }

    /// Checks the next record in stored order.
    pub fn push(&mut self, r: &AuditRecord) {
        let seq = r.seq;
        if seq == 0 {
            self.add(Finding::Inserted { seq });
            return;
        }
        self.records += 1;
        self.min_seq = Some(self.min_seq.map_or(seq, |m| m.min(seq)));
        if r.recompute_hash() != r.hash {
            self.add(Finding::Edited { seq });
        }
        let first = self.last_pushed.is_none();
        let after = self.last_pushed.unwrap_or(0);
        let mut filled_gap = false;

        if first && seq > 1 && self.opts.allow_later_start {
            // A range export: nothing before it is expected.
            self.check_start_anchor(r);
            self.max_seq = seq;
        } else if seq > self.max_seq {
            if seq > self.max_seq + 1 {
                self.gaps.push_back((self.max_seq + 1, seq - 1));
                self.cap_gaps();
            }
            self.max_seq = seq;
        } else if self.fill_gap(seq) {
            filled_gap = true;
            if after != seq - 1 {
                self.add(Finding::Reordered { seq, after });
            }
        } else {
            self.add(Finding::Inserted { seq });
        }

        // The link back to seq - 1, when that record is at hand.
        if seq == 1 {
            if r.prev != Hash::ZERO {
                self.add(Finding::BrokenLink { seq });
            }
        } else {
            let mut candidates = self.window.iter().filter(|w| w.0 == seq - 1).peekable();
            if candidates.peek().is_some() && !candidates.any(|w| w.2 == r.prev) {
                self.add(Finding::BrokenLink { seq });
            }
        }
        // The link forward from a record that arrives after its successor.
        if filled_gap {
            let broken: Vec<u64> = self
                .window
                .iter()
                .filter(|w| Some(w.0) == seq.checked_add(1) && w.1 != r.hash)
                .map(|w| w.0)
                .collect();
            for s in broken {
                self.add(Finding::BrokenLink { seq: s });
            }
        }

        if let Some(anchor) = self.anchors.get_mut(&seq) {
            match anchor.heads.iter_mut().find(|h| h.0 == r.hash) {
                Some(h) => h.2 = true,
                None => anchor.mismatch = Some(r.hash),
            }
        }

        self.window.push_back((seq, r.prev, r.hash));
        if self.window.len() > WINDOW {
            self.window.pop_front();
        }
        self.last_pushed = Some(seq);
    }

    /// For a log starting after seq 1: its first `prev` against a checkpoint of the seq before.
    fn check_start_anchor(&mut self, r: &AuditRecord) {
        if let Some(anchor) = self.anchors.get_mut(&(r.seq - 1)) {
            match anchor.heads.iter_mut().find(|h| h.0 == r.prev) {
                Some(h) => h.2 = true,
                None => anchor.mismatch = Some(r.prev),
            }
        }
    }

    /// Removes `seq` from the missing ranges; false if it was not missing.
    fn fill_gap(&mut self, seq: u64) -> bool {
        let Some(i) = self.gaps.iter().position(|&(a, b)| a <= seq && seq <= b) else {
            return false;
        };
        let (a, b) = self.gaps[i];
        match (a == seq, b == seq) {
            (true, true) => {
                self.gaps.remove(i);
            }
            (true, false) => self.gaps[i].0 = seq + 1,
            (false, true) => self.gaps[i].1 = seq - 1,
            (false, false) => {
                self.gaps[i].1 = seq - 1;
                self.gaps.insert(i + 1, (seq + 1, b));
                self.cap_gaps();
            }
        }
        true
    }

    /// Keeps the missing ranges bounded: the oldest is given up as removed.
    fn cap_gaps(&mut self) {
        while self.gaps.len() > self.opts.max_findings.max(1) {
            if let Some((first, last)) = self.gaps.pop_front() {
                self.add(Finding::Removed { first, last });
            }
        }
    }

    /// The report.
    pub fn finish(mut self) -> VerifyReport {
        while let Some((first, last)) = self.gaps.pop_front() {
            self.add(Finding::Removed { first, last });
        }
        let mut verified = 0u64;
        let mut last_good: Option<u64> = None;
        let mut truncated_at: Option<u64> = None;
        let mut rewritten = Vec::new();
        for (&seq, anchor) in &self.anchors {
            let matched: u64 = anchor.heads.iter().filter(|h| h.2).map(|h| h.1).sum();
            verified += matched;
            if matched > 0 {
                last_good = Some(seq);
            } else if let Some(found) = anchor.mismatch {
                rewritten.push(Finding::ChainRewritten {
                    checkpoint_seq: seq,
                    after_seq: last_good.unwrap_or(0),
                    anchored_head: anchor.heads.first().map_or(Hash::ZERO, |h| h.0),
                    found,
                });
            } else if seq > self.max_seq {
                truncated_at = Some(seq);
            }
        }
        for f in rewritten {
            self.add(f);
        }
        if let Some(anchored_seq) = truncated_at {
            self.add(Finding::TruncatedTail {
                last_seq: self.max_seq,
                anchored_seq,
            });
        }
        let last_seq = (self.records > 0).then_some(self.max_seq);
        VerifyReport {
            records: self.records,
            first_seq: self.min_seq,
            last_seq,
            checkpoints: self.checkpoints,
            checkpoints_verified: verified,
            last_anchored_seq: last_good,
            unanchored_records: self.max_seq.saturating_sub(last_good.unwrap_or(0)),
            findings: self.findings,
            findings_omitted: self.omitted,
        }
    }
}

/// Verifies `records` (in stored order, streamed) against `checkpoints` signed by one of
/// `trusted`, with the default options.
pub fn verify<I, C>(records: I, checkpoints: &[C], trusted: &[Sm2VerifyingKey]) -> VerifyReport
where
    I: IntoIterator,
    I::Item: Borrow<AuditRecord>,
    C: Borrow<Checkpoint>,
{
    verify_with(records, checkpoints, trusted, VerifyOptions::default())
}

/// [`verify`] with options.
pub fn verify_with<I, C>(
    records: I,
    checkpoints: &[C],
    trusted: &[Sm2VerifyingKey],
    opts: VerifyOptions,
) -> VerifyReport
where
    I: IntoIterator,
    I::Item: Borrow<AuditRecord>,
    C: Borrow<Checkpoint>,
{
    let mut v = Verifier::new(checkpoints.iter().map(Borrow::borrow), trusted, opts);
    for r in records {
        v.push(r.borrow());
    }
    v.finish()
}

/// Verifies a JSON Lines export read from `reader`, streaming. Lines that are not valid
/// records become [`Finding::Unreadable`]; only reading failures are errors.
pub fn verify_jsonl<R: BufRead, C: Borrow<Checkpoint>>(
    reader: R,
    checkpoints: &[C],
    trusted: &[Sm2VerifyingKey],
    opts: VerifyOptions,
) -> Result<VerifyReport, AuditError> {
    let mut v = Verifier::new(checkpoints.iter().map(Borrow::borrow), trusted, opts);
    for item in JsonlReader::new(reader) {
        match item {
            Ok(r) => v.push(&r),
            Err(AuditError::BadLine { line, reason }) => v.unreadable(line, reason),
            Err(e) => return Err(e),
        }
    }
    Ok(v.finish())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::{AuditAction, AuditEvent, CheckpointSigner, Outcome};

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let e = AuditEvent::new(i as i64, "u", AuditAction::JobRun, "j", Outcome::Success);
            let r = AuditRecord::next(out.last(), e);
            out.push(r);
        }
        out
    }

    #[test]
    fn clean_and_empty() {
        let log = chain(10);
        let s = CheckpointSigner::generate().unwrap();
        let cps = [
            s.checkpoint(&log[4], 1).unwrap(),
            s.checkpoint(&log[9], 2).unwrap(),
        ];
        let rep = verify(&log, &cps, &[s.verifying_key().clone()]);
        assert!(rep.is_ok(), "{rep:?}");
        assert_eq!(rep.records, 10);
        assert_eq!((rep.first_seq, rep.last_seq), (Some(1), Some(10)));
        assert_eq!(rep.checkpoints_verified, 2);
        assert_eq!(rep.last_anchored_seq, Some(10));
        assert_eq!(rep.unanchored_records, 0);

        let empty: [Checkpoint; 0] = [];
        let rep = verify(Vec::<AuditRecord>::new(), &empty, &[]);
        assert!(rep.is_ok());
        assert_eq!(rep.last_seq, None);
        let rep = verify(
            Vec::<AuditRecord>::new(),
            &cps,
            &[s.verifying_key().clone()],
        );
        assert_eq!(
            rep.findings,
            vec![Finding::TruncatedTail {
                last_seq: 0,
                anchored_seq: 10
            }]
        );
    }

    #[test]
    fn range_export_may_start_later() {
        let log = chain(10);
        let s = CheckpointSigner::generate().unwrap();
        let cps = [s.checkpoint(&log[4], 1).unwrap()];
        let keys = [s.verifying_key().clone()];
        let rep = verify(&log[5..], &cps, &keys);
        assert_eq!(rep.findings, vec![Finding::Removed { first: 1, last: 5 }]);
        let opts = VerifyOptions {
            allow_later_start: true,
            ..VerifyOptions::default()
        };
        let rep = verify_with(&log[5..], &cps, &keys, opts);
        assert!(rep.is_ok(), "{rep:?}");
        assert_eq!(rep.checkpoints_verified, 1);
        assert_eq!(rep.last_anchored_seq, Some(5));
        let mut forged = log[5..].to_vec();
        forged[0] = AuditRecord::at(6, Hash([9; 32]), forged[0].event.clone());
        let rep = verify_with(&forged, &cps, &keys, opts);
        assert!(
            matches!(
                rep.findings[..],
                [
                    Finding::BrokenLink { seq: 7 },
                    Finding::ChainRewritten {
                        checkpoint_seq: 5,
                        ..
                    }
                ]
            ),
            "{rep:?}"
        );
    }

    #[test]
    fn findings_are_capped() {
        let mut log = chain(50);
        for r in &mut log {
            r.event.actor = "x".into();
        }
        let empty: [Checkpoint; 0] = [];
        let opts = VerifyOptions {
            max_findings: 10,
            ..VerifyOptions::default()
        };
        let rep = verify_with(&log, &empty, &[], opts);
        assert_eq!(rep.findings.len(), 10);
        assert_eq!(rep.findings_omitted, 40);
        assert!(!rep.is_ok());
    }

    #[test]
    fn many_gaps_stay_bounded() {
        let log = chain(200);
        let kept: Vec<&AuditRecord> = log.iter().step_by(2).collect();
        let empty: [Checkpoint; 0] = [];
        let opts = VerifyOptions {
            max_findings: 5,
            ..VerifyOptions::default()
        };
        let rep = verify_with(kept, &empty, &[], opts);
        assert_eq!(rep.findings.len(), 5);
        assert_eq!(rep.findings_omitted, 94);
        assert_eq!(rep.findings[0], Finding::Removed { first: 2, last: 2 });
    }

    #[test]
    fn seq_zero_and_bad_genesis() {
        let mut log = chain(3);
        log[0].prev = Hash([1; 32]);
        log[0].hash = log[0].recompute_hash();
        let mut zero = log[1].clone();
        zero.seq = 0;
        log.push(zero);
        let empty: [Checkpoint; 0] = [];
        let rep = verify(&log, &empty, &[]);
        assert_eq!(
            rep.findings,
            vec![
                Finding::BrokenLink { seq: 1 },
                Finding::BrokenLink { seq: 2 },
                Finding::Inserted { seq: 0 }
            ]
        );
    }

    #[test]
    fn display_names_the_seq() {
        let f = Finding::Removed { first: 3, last: 3 };
        assert_eq!(f.to_string(), "record 3 was removed");
        let json = serde_json::to_value(&f).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "removed", "first": 3, "last": 3})
        );
    }
}
