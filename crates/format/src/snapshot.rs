//! Snapshots: one completed backup.
//!
//! Sealed object of type `snapshot` (maintenance key), so that retention policies can be applied
//! without the content key. The CBOR body:
//!
//! ```text
//! {"v": 1, "time": [s, ns], "tree": id, "paths": [bytes], "hostname": text, "username": text,
//!  "uid": uint, "gid": uint, "tags": [text], "parent": id | null, "program": text,
//!  "excludes": [text], "summary": {...}, "signature": null, "original": id}
//! ```
//!
//! `original` is present only in a snapshot written by `repair snapshots`: the id of the
//! snapshot it repairs. `signature` is reserved for SM2 signatures of the snapshot (format v1 writers store `null`;
//! v1 readers ignore it).

use crate::cbor::{self, Value};
use crate::fields::{Fields, MapBuilder, id_value};
use crate::magic::SNAPSHOT_VERSION;
use crate::sealed::{SealedType, open_object, seal_object};
use crate::{FormatError, Id, MaintenanceKeys, Timestamp};

const WHAT: &str = "snapshot";

/// Figures about the backup that made a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotSummary {
    /// When the backup started.
    pub start: Timestamp,
    /// When it finished.
    pub end: Timestamp,
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files whose contents were read again because they changed.
    pub files_changed: u64,
    /// Files taken from the parent without reading.
    pub files_unmodified: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Other entries (symlinks, devices, FIFOs, sockets).
    pub others: u64,
    /// Data blobs added to the repository.
    pub data_blobs_added: u64,
    /// Tree blobs added to the repository.
    pub tree_blobs_added: u64,
    /// Bytes of new blobs before compression.
    pub bytes_added_raw: u64,
    /// Bytes of new blobs as stored (compressed and encrypted).
    pub bytes_added_stored: u64,
    /// Bytes of file contents read from the source.
    pub bytes_read: u64,
    /// Files in the snapshot.
    pub total_files: u64,
    /// Total logical size of the files in the snapshot.
    pub total_bytes: u64,
    /// Entries that could not be read and were left out, with the reason (at most 1,000 kept).
    pub skipped: Vec<(Vec<u8>, String)>,
    /// Number of entries left out (may exceed the length of `skipped`).
    pub skipped_count: u64,
}

/// A snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// When the backup started.
    pub time: Timestamp,
    /// The root tree.
    pub tree: Id,
    /// The paths given to the backup (absolute), as bytes.
    pub paths: Vec<Vec<u8>>,
    /// Host name.
    pub hostname: String,
    /// User who ran the backup.
    pub username: String,
    /// Their uid.
    pub uid: u32,
    /// Their gid.
    pub gid: u32,
    /// Tags.
    pub tags: Vec<String>,
    /// The snapshot used for change detection, if any.
    pub parent: Option<Id>,
    /// Program and version that wrote it.
    pub program: String,
    /// Exclude patterns in force.
    pub excludes: Vec<String>,
    /// Figures of the backup.
    pub summary: SnapshotSummary,
    /// For a snapshot written by `repair snapshots`: the id of the snapshot it repairs (which
    /// may since have been forgotten). Encoded only when present.
    pub original: Option<Id>,
}

impl Snapshot {
    /// The CBOR body.
    pub fn encode_body(&self) -> Vec<u8> {
        let s = &self.summary;
        let skipped = s
            .skipped
            .iter()
            .map(|(p, e)| Value::Array(vec![Value::Bytes(p.clone()), Value::text(e)]))
            .collect();
        let summary = MapBuilder::new()
            .time("start", s.start)
            .time("end", s.end)
            .uint("files_new", s.files_new)
            .uint("files_changed", s.files_changed)
            .uint("files_unmodified", s.files_unmodified)
            .uint("dirs", s.dirs)
            .uint("others", s.others)
            .uint("data_blobs_added", s.data_blobs_added)
            .uint("tree_blobs_added", s.tree_blobs_added)
            .uint("bytes_added_raw", s.bytes_added_raw)
            .uint("bytes_added_stored", s.bytes_added_stored)
            .uint("bytes_read", s.bytes_read)
            .uint("total_files", s.total_files)
            .uint("total_bytes", s.total_bytes)
            .uint("skipped_count", s.skipped_count)
            .value("skipped", Value::Array(skipped))
            .build();
        cbor::encode(
            &MapBuilder::new()
                .uint("v", SNAPSHOT_VERSION)
                .time("time", self.time)
                .id("tree", &self.tree)
                .value(
                    "paths",
                    Value::Array(self.paths.iter().map(|p| Value::Bytes(p.clone())).collect()),
                )
                .text("hostname", &self.hostname)
                .text("username", &self.username)
                .uint("uid", u64::from(self.uid))
                .uint("gid", u64::from(self.gid))
                .value(
                    "tags",
                    Value::Array(self.tags.iter().map(|t| Value::text(t)).collect()),
                )
                .value(
                    "parent",
                    self.parent.as_ref().map(id_value).unwrap_or(Value::Null),
                )
                .text("program", &self.program)
                .value(
                    "excludes",
                    Value::Array(self.excludes.iter().map(|t| Value::text(t)).collect()),
                )
                .value("summary", summary)
                .value("signature", Value::Null)
                .opt("original", self.original.as_ref().map(id_value))
                .build(),
        )
    }

    /// Decodes a CBOR body.
    pub fn decode_body(body: &[u8]) -> Result<Self, FormatError> {
        let value =
            cbor::decode(body).map_err(|source| FormatError::Cbor { what: WHAT, source })?;
        let mut f = Fields::new(WHAT, value)?;
        f.version(SNAPSHOT_VERSION)?;
        let paths = f
            .array("paths")?
            .into_iter()
            .map(|v| match v {
                Value::Bytes(b) => Ok(b),
                other => Err(FormatError::field(
                    WHAT,
                    "paths",
                    format!("expected byte string, found {other}"),
                )),
            })
            .collect::<Result<_, _>>()?;
        let texts = |f: &mut Fields, key: &'static str| -> Result<Vec<String>, FormatError> {
            f.opt_array(key)?
                .into_iter()
                .map(|v| match v {
                    Value::Text(t) => Ok(t),
                    other => Err(FormatError::field(
                        WHAT,
                        key,
                        format!("expected text, found {other}"),
                    )),
                })
                .collect()
        };
        let tags = texts(&mut f, "tags")?;
        let excludes = texts(&mut f, "excludes")?;
        let mut s = f.map("summary", "snapshot summary")?;
        let mut skipped = Vec::new();
        for v in s.opt_array("skipped")? {
            let Value::Array(pair) = v else {
                return Err(FormatError::field(WHAT, "skipped", "entry is not an array"));
            };
            match <[Value; 2]>::try_from(pair) {
                Ok([Value::Bytes(p), Value::Text(e)]) => skipped.push((p, e)),
                _ => {
                    return Err(FormatError::field(
                        WHAT,
                        "skipped",
                        "entry is not [path, reason]",
                    ));
                }
            }
        }
        let summary = SnapshotSummary {
            start: s.time("start")?,
            end: s.time("end")?,
            files_new: s.uint("files_new")?,
            files_changed: s.uint("files_changed")?,
            files_unmodified: s.uint("files_unmodified")?,
            dirs: s.uint("dirs")?,
            others: s.uint("others")?,
            data_blobs_added: s.uint("data_blobs_added")?,
            tree_blobs_added: s.uint("tree_blobs_added")?,
            bytes_added_raw: s.uint("bytes_added_raw")?,
            bytes_added_stored: s.uint("bytes_added_stored")?,
            bytes_read: s.uint("bytes_read")?,
            total_files: s.uint("total_files")?,
            total_bytes: s.uint("total_bytes")?,
            skipped_count: s.uint("skipped_count")?,
            skipped,
        };
        Ok(Snapshot {
            time: f.time("time")?,
            tree: f.id("tree")?,
            paths,
            hostname: f.text("hostname")?,
            username: f.text("username")?,
            uid: f.u32("uid")?,
            gid: f.u32("gid")?,
            tags,
            parent: f.opt_id("parent")?,
            program: f.text("program")?,
            excludes,
            summary,
            original: f.opt_id("original")?,
        })
    }

    /// Encodes and seals the snapshot.
    pub fn seal(&self, keys: &MaintenanceKeys) -> Result<Vec<u8>, FormatError> {
        seal_object(keys, SealedType::Snapshot, &self.encode_body(), 3)
    }

    /// Opens and decodes a stored snapshot.
    pub fn open(keys: &MaintenanceKeys, stored: &[u8]) -> Result<Self, FormatError> {
        Self::decode_body(&open_object(keys, SealedType::Snapshot, stored)?)
    }
}
