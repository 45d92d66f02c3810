//! Assembling one pack: in memory, or (on a local disk) written to its file as it fills.

use bytes::Bytes;
use zaibei_crypto::{Aead, HashStreams, Suite};
use zaibei_format::pack::{
    PACK_PREFIX_LEN, PackBlob, encode_pack_footer, encode_pack_prefix, new_pack_salt,
    pack_footer_len_bound,
};
use zaibei_format::{Id, IndexPack, MaintenanceKeys, PackKind, RepoKeys, blob};
use zaibei_store::StagedObject;

use crate::{RepoError, Result};

/// A staged pack writes its bytes out once this many are waiting.
const STAGED_WRITE_BYTES: usize = 1 << 20;
/// A staged pack's buffer larger than this (grown for a large blob) is shrunk back to
/// [`STAGED_WRITE_BYTES`] once the blob is written out. Kept, such buffers grew to the largest
/// blob each open pack took (the default largest chunk is 8 MiB): heaptrack counted about
/// 25 MiB of them at the heap's peak in a first backup of the Linux tree, and shrinking them
/// lowered its peak RSS by 2–5 MiB (A/B, `docs/BENCHMARKS.md`).
const STAGED_KEPT_CAPACITY: usize = 2 * STAGED_WRITE_BYTES;
/// Bytes of each pack read back at a time while naming packs: eight packs named together
/// hold 2 MiB.
const NAMING_PIECE: usize = 256 << 10;

/// A pack being filled with blobs of one kind.
pub struct PackWriter {
    kind: PackKind,
    salt: [u8; 32],
    aead: Aead,
    prefix: [u8; PACK_PREFIX_LEN],
    /// The pack in memory, or, when staged, its bytes not yet written out.
    buf: Vec<u8>,
    /// The store's file of a pack written out as it fills, and the CRC-32 of what was written
    /// to it, to check what is read back to name it.
    staged: Option<(StagedObject, crc32fast::Hasher)>,
    blobs: Vec<PackBlob>,
    raw_bytes: u64,
}

/// A finished pack's bytes.
pub enum PackBody {
    /// In memory, to upload with `put`.
    Memory(Bytes),
    /// Already in the store's file, to publish.
    Staged(StagedObject),
}

/// A pack closed by [`PackWriter::finish`].
pub enum Finished {
    /// Assembled in memory and named: ready to upload.
    Named(FinishedPack),
    /// In the store's file, to be named by [`name_packs`].
    Unnamed(UnnamedPack),
}

/// A finished pack in the store's file whose name (the hash of its bytes) is not known yet:
/// the names of several such packs are hashed together, side by side, from their files
/// ([`name_packs`]), instead of one stream per pack as they are written.
pub struct UnnamedPack {
    object: StagedObject,
    /// Its index entry, without the id.
    index: IndexPack,
    raw_bytes: u64,
    /// CRC-32 of the bytes written to the file: what is read back must match.
    written_crc: u32,
}

/// A finished pack, ready to upload.
pub struct FinishedPack {
    /// The pack's id (hash of its bytes).
    pub id: Id,
    /// Its bytes.
    pub body: PackBody,
    /// Its index entry.
    pub index: IndexPack,
    /// Sum of the payload lengths of its blobs.
    pub raw_bytes: u64,
}

impl PackWriter {
    /// A new, empty pack with a fresh salt.
    pub fn new(keys: &RepoKeys, kind: PackKind, capacity: usize) -> Result<Self> {
        Self::new_in(keys, kind, capacity, Vec::new())
    }

    /// A new, empty pack written to `object` (a file of the store) as it fills, so that memory
    /// holds at most about a MiB of it and the blob being added. It finishes unnamed.
    pub fn new_staged(keys: &RepoKeys, kind: PackKind, object: StagedObject) -> Result<Self> {
        let mut writer = Self::new_in(keys, kind, 0, Vec::new())?;
        writer.buf.reserve(STAGED_WRITE_BYTES);
        writer.staged = Some((object, crc32fast::Hasher::new()));
        Ok(writer)
    }

    /// [`PackWriter::new`], assembling the pack in `buf` (emptied first): the buffer of a pack
    /// already stored, so that a backup reuses a few buffers instead of allocating (and
    /// faulting in) 16 MiB for every pack.
    pub fn new_in(
        keys: &RepoKeys,
        kind: PackKind,
        capacity: usize,
        mut buf: Vec<u8>,
    ) -> Result<Self> {
        let format = |e| RepoError::format("new pack", e);
        let salt = new_pack_salt().map_err(format)?;
        let aead = keys.pack_aead(kind, &salt).map_err(format)?;
        let prefix = encode_pack_prefix(kind, &salt);
        buf.clear();
        // Data packs fill fast: room for all of it at once saves copies while growing. Tree
        // and reference packs fill slowly and mostly close small: they grow as needed.
        if kind == PackKind::Data && capacity > 0 {
            buf.reserve(capacity + capacity / 8);
        }
        buf.extend_from_slice(&prefix);
        Ok(PackWriter {
            kind,
            salt,
            aead,
            prefix,
            buf,
            staged: None,
            blobs: Vec::new(),
            raw_bytes: 0,
        })
    }

    /// Kind of blobs.
    pub fn kind(&self) -> PackKind {
        self.kind
    }

    /// Compresses, encrypts and appends a blob; returns its stored length.
    pub fn add(&mut self, id: Id, payload: &[u8], zstd_level: i32) -> Result<u64> {
        // A staged pack writes out what waits before a blob that would not fit in its buffer:
        // the buffer then grows to what the largest blob needs, never doubling past it.
        if self.staged.is_some()
            && self.buf.len() + blob::sealed_len_bound(payload.len()) > self.buf.capacity()
        {
            self.write_out()?;
        }
        let offset = self.len() as u64;
        let stored = blob::seal_blob_into(
            &self.aead,
            self.kind,
            &id,
            payload,
            zstd_level,
            &mut self.buf,
        )
        .map_err(|e| RepoError::format(format!("blob {id}"), e))? as u64;
        self.blobs.push(PackBlob {
            id,
            offset,
            length: stored,
            raw_length: payload.len() as u64,
        });
        self.raw_bytes += payload.len() as u64;
        if self.buf.len() >= STAGED_WRITE_BYTES {
            self.write_out()?;
        }
        if self.staged.is_some() && self.buf.capacity() > STAGED_KEPT_CAPACITY {
            // A large blob grew the buffer: write it out and give the room back, so that each
            // open pack does not keep the size of the largest blob it ever took.
            self.write_out()?;
            self.buf.shrink_to(STAGED_WRITE_BYTES);
        }
        Ok(stored)
    }

    /// Writes out the bytes waiting in a staged pack (nothing for one in memory).
    fn write_out(&mut self) -> Result<()> {
        if let Some((object, crc)) = &mut self.staged {
            crc.update(&self.buf);
            object.append(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        let written = self.staged.as_ref().map_or(0, |(s, _)| s.len());
        usize::try_from(written).unwrap_or(usize::MAX) + self.buf.len()
    }

    /// Whether a blob of `payload_len` bytes, and then the pack's footer, fit in the room a data
    /// pack reserves at once (its capacity and an eighth), so that neither adding the blob nor
    /// finishing the pack moves its bytes. An empty pack, a staged pack (written out as it
    /// fills), and a tree or reference pack (which grows as it fills) take any blob.
    pub fn has_room_for(&self, payload_len: usize) -> bool {
        self.kind != PackKind::Data
            || self.staged.is_some()
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

    /// Closes the pack with its sealed header and trailer: named if it is in memory, unnamed
    /// if it is in the store's file.
    pub fn finish(mut self, keys: &MaintenanceKeys, suite: Suite) -> Result<Finished> {
        let footer = encode_pack_footer(keys, &self.prefix, &self.blobs)
            .map_err(|e| RepoError::format("pack footer", e))?;
        self.buf.extend_from_slice(&footer);
        let size = self.len() as u64;
        self.write_out()?;
        let mut index = IndexPack {
            id: Id::default(),
            kind: self.kind,
            salt: self.salt,
            size,
            blobs: self.blobs,
        };
        if let Some((object, crc)) = self.staged.take() {
            return Ok(Finished::Unnamed(UnnamedPack {
                object,
                index,
                raw_bytes: self.raw_bytes,
                written_crc: crc.finalize(),
            }));
        }
        let id = Id(suite.hash(&self.buf));
        index.id = id;
        Ok(Finished::Named(FinishedPack {
            id,
            body: PackBody::Memory(Bytes::from(std::mem::take(&mut self.buf))),
            index,
            raw_bytes: self.raw_bytes,
        }))
    }
}

/// Names unnamed packs: hashes their files side by side with `suite` (eight SM3 streams at
/// once on CPUs with AVX2), reading back 256 KiB of each at a time, most of it from the page
/// cache. A file that reads back other bytes than were written to it (its CRC-32 differs) is
/// an error: its name would vouch for corrupted bytes.
pub fn name_packs(packs: Vec<UnnamedPack>, suite: Suite) -> Result<Vec<FinishedPack>> {
    let mut streams = HashStreams::new(suite, packs.len());
    let mut crcs = vec![crc32fast::Hasher::new(); packs.len()];
    let mut bufs = vec![vec![0u8; NAMING_PIECE]; packs.len()];
    let longest = packs.iter().map(|p| p.object.len()).max().unwrap_or(0);
    let mut offset = 0u64;
    while offset < longest {
        let mut lens = Vec::with_capacity(packs.len());
        for ((pack, buf), crc) in packs.iter().zip(&mut bufs).zip(&mut crcs) {
            let n = pack.object.read_at(buf, offset)?;
            crc.update(&buf[..n]);
            lens.push(n);
        }
        let pieces: Vec<&[u8]> = bufs.iter().zip(&lens).map(|(b, &n)| &b[..n]).collect();
        streams.update(&pieces);
        offset += NAMING_PIECE as u64;
    }
    for (pack, crc) in packs.iter().zip(crcs) {
        if crc.finalize() != pack.written_crc {
            return Err(pack.object.read_back_mismatch().into());
        }
    }
    Ok(packs
        .into_iter()
        .zip(streams.finalize())
        .map(|(pack, digest)| {
            let id = Id(digest);
            let mut index = pack.index;
            index.id = id;
            FinishedPack {
                id,
                body: PackBody::Staged(pack.object),
                index,
                raw_bytes: pack.raw_bytes,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use zaibei_store::{FsStore, Store};

    /// An unnamed pack holding `bytes`, recorded as written with `written_crc`.
    fn unnamed(store: &FsStore, bytes: &[u8], written_crc: u32) -> UnnamedPack {
        let mut object = store.stage("data").unwrap().unwrap();
        object.append(bytes).unwrap();
        UnnamedPack {
            object,
            index: IndexPack {
                id: Id::default(),
                kind: PackKind::Data,
                salt: [0; 32],
                size: bytes.len() as u64,
                blobs: Vec::new(),
            },
            raw_bytes: 0,
            written_crc,
        }
    }

    #[test]
    fn packs_are_named_by_the_hash_of_their_files_unless_they_read_back_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let store = FsStore::new(dir.path());
        let contents: Vec<Vec<u8>> = (0..3u8)
            .map(|i| {
                (0..NAMING_PIECE * 2 + 77 * usize::from(i))
                    .map(|j| (j % 251) as u8 ^ i)
                    .collect()
            })
            .collect();
        for suite in [Suite::Gm, Suite::Intl] {
            let packs = contents
                .iter()
                .map(|c| unnamed(&store, c, crc32fast::hash(c)))
                .collect();
            let named = name_packs(packs, suite).unwrap();
            for (pack, bytes) in named.iter().zip(&contents) {
                assert_eq!(pack.id, Id(suite.hash(bytes)));
                assert_eq!(pack.index.id, pack.id);
            }

            // The second file does not hold what was written to it.
            let packs = contents
                .iter()
                .enumerate()
                .map(|(i, c)| unnamed(&store, c, crc32fast::hash(c) ^ u32::from(i == 1)))
                .collect();
            let Err(e) = name_packs(packs, suite) else {
                panic!("a pack that read back otherwise was named");
            };
            // The error names where: the store's prefix and location.
            let message = e.to_string();
            assert!(message.contains("read back other bytes"), "{message}");
            assert!(message.contains("\"data\""), "{message}");
        }
    }

    #[test]
    fn a_staged_pack_gives_back_the_room_a_large_blob_took_and_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("data")).unwrap();
        let store = FsStore::new(dir.path());
        let suite = Suite::Gm;
        let keys = RepoKeys::from_master(suite, &zaibei_crypto::SecretKey::from_bytes([7; 32]));
        let object = store.stage("data").unwrap().unwrap();
        let mut writer = PackWriter::new_staged(&keys, PackKind::Data, object).unwrap();
        // Small, large (incompressible: stored whole), small again.
        let mut noise = 0x2545_f491_4f6c_dd1du64;
        let large: Vec<u8> = (0..3 * STAGED_WRITE_BYTES)
            .map(|_| {
                noise ^= noise << 13;
                noise ^= noise >> 7;
                noise ^= noise << 17;
                noise as u8
            })
            .collect();
        let payloads = [vec![1u8; 5000], large, vec![2u8; 7000]];
        for (i, payload) in payloads.iter().enumerate() {
            writer.add(Id([i as u8; 32]), payload, 3).unwrap();
            assert!(
                writer.buf.capacity() <= STAGED_KEPT_CAPACITY,
                "blob {i} left {} bytes of buffer",
                writer.buf.capacity()
            );
        }
        let Finished::Unnamed(pack) = writer.finish(keys.maintenance(), suite).unwrap() else {
            panic!("a staged pack finished in memory");
        };
        let named = name_packs(vec![pack], suite).unwrap();
        let [pack] = &named[..] else {
            panic!("one pack was named as {}", named.len());
        };
        let PackBody::Staged(object) = &pack.body else {
            panic!("a staged pack's body is in memory");
        };
        let mut bytes = vec![0u8; object.len() as usize];
        assert_eq!(object.read_at(&mut bytes, 0).unwrap(), bytes.len());
        assert_eq!(pack.id, Id(suite.hash(&bytes)));
        let aead = keys.pack_aead(PackKind::Data, &pack.index.salt).unwrap();
        for (blob, payload) in pack.index.blobs.iter().zip(&payloads) {
            let stored = &bytes[blob.offset as usize..(blob.offset + blob.length) as usize];
            let opened =
                blob::open_blob(&aead, PackKind::Data, &blob.id, stored, blob.raw_length).unwrap();
            assert_eq!(&opened, payload);
        }
        assert_eq!(pack.index.blobs.len(), payloads.len());
    }
}
