//! The tamper-evident security audit log of the zaibei server.
//!
//! Every security-relevant event ([`AuditEvent`], with a closed set of [`AuditAction`]s) is
//! appended as an [`AuditRecord`] chained to the one before it by SM3. Periodically the server
//! signs a [`Checkpoint`] of the chain head with SM2 ([`CheckpointSigner`]) and anchors it in a
//! store outside its database ([`AnchorStore`]). [`verify`] then detects any edited, removed,
//! inserted, reordered or truncated record and any rewritten chain, naming each
//! ([`Finding`]). The byte layouts are specified in `docs/FORMAT.md` §16.
//!
//! This crate does no SQL and no HTTP: the server stores the records (in its catalogue) and
//! calls it.
//!
//! # Appending: one chain, never forked
//!
//! Records must be appended one at a time across all server replicas. The server does, in one
//! database transaction:
//!
//! 1. take the chain head exclusively — the row of the highest `seq`, read with
//!    `SELECT … ORDER BY seq DESC LIMIT 1 FOR UPDATE` on PostgreSQL (better: a one-row
//!    `audit_head` table locked `FOR UPDATE`, which also covers the empty log), or inside a
//!    `BEGIN IMMEDIATE` transaction on SQLite, which admits one writer;
//! 2. build the record with [`AuditRecord::next`] (or [`AuditRecord::at`] from the head's
//!    `seq` and `hash`);
//! 3. insert it, with `seq` the primary key, and commit.
//!
//! The primary key is the last line of defence: should two replicas ever build a record of the
//! same `seq`, the second insert fails and that replica retries from step 1, so the chain can
//! not fork. The `details` are stored as the text of [`canonical_json`] (not re-encoded by the
//! database), and every field is given back unchanged when the log is exported.
//!
//! # Checkpoints
//!
//! When [`CheckpointPolicy::is_due`], after a commit, the server signs the head with
//! [`CheckpointSigner::checkpoint`], anchors it with [`AnchorStore::put`] (never overwriting),
//! and records the checkpoint in its database for export to the audit administrator. A
//! checkpoint fixes every record up to its `seq`: a truncated tail or a rewritten chain before
//! it is caught even when the forger recomputed every hash. Records after the newest checkpoint
//! are protected by the chain alone, so checkpoints should be frequent.
//!
//! # Verifying
//!
//! `zaibei audit verify --log FILE --anchors DIR --key PUBKEY.pem` reads the export with
//! [`read_jsonl`] (or [`verify_jsonl`]), the checkpoints with [`AnchorStore::load_all`], and
//! runs the streaming [`Verifier`], which keeps constant state per record.

mod anchor;
mod canonical;
mod checkpoint;
mod error;
mod event;
mod hash;
mod jsonl;
mod record;
mod verify;

pub use anchor::{ANCHOR_PREFIX, AnchorEntry, AnchorSet, AnchorStore, anchor_name};
pub use canonical::{canonical_bytes, canonical_json};
pub use checkpoint::{CHECKPOINT_TAG, Checkpoint, CheckpointPolicy, CheckpointSigner, key_id};
pub use error::AuditError;
pub use event::{AuditAction, AuditEvent, Outcome, UnknownAction, now_ms};
pub use hash::{HASH_LEN, Hash};
pub use jsonl::{JsonlReader, JsonlWriter, MAX_LINE_LEN, read_jsonl, write_jsonl};
pub use record::{AuditRecord, RECORD_TAG, record_hash};
pub use verify::{
    DEFAULT_MAX_FINDINGS, Finding, Verifier, VerifyOptions, VerifyReport, WINDOW, verify,
    verify_jsonl, verify_with,
};
