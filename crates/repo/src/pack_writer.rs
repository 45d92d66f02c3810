//! Assembling one pack in memory.

use bytes::Bytes;
use zaibei_crypto::{Aead, Suite};
use zaibei_format::pack::{
    PACK_PREFIX_LEN, PackBlob, encode_pack_footer, encode_pack_prefix, new_pack_salt,
    pack_footer_len_bound,
};
use zaibei_format::{FormatError, Id, IndexPack, MaintenanceKeys, PackKind, RepoKeys, blob};

/// A pack being filled with blobs of one kind.
pub struct PackWriter {
    kind: PackKind,
    salt: [u8; 32],
    aead: Aead,
    prefix: [u8; PACK_PREFIX_LEN],
    buf: Vec<u8>,
    blobs: Vec<PackBlob>,
    raw_bytes: u64,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    /// The pack's id (hash of `bytes`).
    pub id: Id,
    /// Its bytes.
    pub bytes: Bytes,
    /// Its index entry.
    pub index: IndexPack,
    /// Sum of the payload lengths of its blobs.
    pub raw_bytes: u64,
}

impl PackWriter {
    /// A new, empty pack with a fresh salt.
    pub fn new(keys: &RepoKeys, kind: PackKind, capacity: usize) -> Result<Self, FormatError> {
        Self::new_in(keys, kind, capacity, Vec::new())
    }

    /// [`PackWriter::new`], assembling the pack in `buf` (emptied first): the buffer of a pack
    /// already stored, so that a backup reuses a few buffers instead of allocating (and
    /// faulting in) 16 MiB for every pack.
    pub fn new_in(
        keys: &RepoKeys,
        kind: PackKind,
        capacity: usize,
        mut buf: Vec<u8>,
    ) -> Result<Self, FormatError> {
        let salt = new_pack_salt()?;
        let aead = keys.pack_aead(kind, &salt)?;
        let prefix = encode_pack_prefix(kind, &salt);
        buf.clear();
        // Data packs fill fast: room for all of it at once saves copies while growing. Tree
        // and reference packs fill slowly and mostly close small: they grow as needed.
        if kind == PackKind::Data {
            buf.reserve(capacity + capacity / 8);
        }
        buf.extend_from_slice(&prefix);
        Ok(PackWriter {
            kind,
            salt,
            aead,
            prefix,
            buf,
            blobs: Vec::new(),
            raw_bytes: 0,
        })
    }

    /// Kind of blobs.
    pub fn kind(&self) -> PackKind {
        self.kind
    }

    /// Compresses, encrypts and appends a blob; returns its stored length.
    pub fn add(&mut self, id: Id, payload: &[u8], zstd_level: i32) -> Result<u64, FormatError> {
        let offset = self.buf.len() as u64;
        let stored = blob::seal_blob_into(
            &self.aead,
            self.kind,
            &id,
            payload,
            zstd_level,
            &mut self.buf,
        )? as u64;
        self.blobs.push(PackBlob {
            id,
            offset,
            length: stored,
            raw_length: payload.len() as u64,
        });
        self.raw_bytes += payload.len() as u64;
        Ok(stored)
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether a blob of `payload_len` bytes, and then the pack's footer, fit in the room a data
    /// pack reserves at once (its capacity and an eighth), so that neither adding the blob nor
    /// finishing the pack moves its bytes. An empty pack, and a tree or reference pack (which
    /// grows as it fills), take any blob.
    pub fn has_room_for(&self, payload_len: usize) -> bool {
        self.kind != PackKind::Data
            || self.blobs.is_empty()
            || self.buf.len()
                + blob::sealed_len_bound(payload_len)
                + pack_footer_len_bound(self.blobs.len() + 1)
                <= self.buf.capacity()
    }

    /// True when no blob was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Closes the pack with its sealed header and trailer.
    pub fn finish(
        mut self,
        keys: &MaintenanceKeys,
        suite: Suite,
    ) -> Result<FinishedPack, FormatError> {
        let footer = encode_pack_footer(keys, &self.prefix, &self.blobs)?;
        self.buf.extend_from_slice(&footer);
        let id = Id(suite.hash(&self.buf));
        let size = self.buf.len() as u64;
        Ok(FinishedPack {
            id,
            bytes: Bytes::from(self.buf),
            index: IndexPack {
                id,
                kind: self.kind,
                salt: self.salt,
                size,
                blobs: self.blobs,
            },
            raw_bytes: self.raw_bytes,
        })
    }
}
