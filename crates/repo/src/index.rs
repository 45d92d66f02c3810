//! The in-memory index: where every blob of the repository lies.
//!
//! Built from all index objects when a repository is indexed. Per blob it keeps 48 bytes (the
//! 32-byte id, a pack number and three 32-bit integers) plus the hash table's overhead; pack
//! details (id, kind, salt, size) are kept once per pack.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use futures::StreamExt;
use zaibei_format::{Id, IndexFile, IndexPack, PackKind};

use crate::{RepoError, Repository, Result, names};

/// Hasher for ids, which are already uniformly random: the first 8 bytes are the hash.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut b = [0u8; 8];
        let n = bytes.len().min(8);
        b[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(b);
    }
}

/// A `HashMap` keyed by ids.
pub type IdMap<V> = HashMap<Id, V, BuildHasherDefault<IdHasher>>;
/// A `HashSet` of ids.
pub type IdSet = std::collections::HashSet<Id, BuildHasherDefault<IdHasher>>;

/// A pack as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackMeta {
    /// Pack id.
    pub id: Id,
    /// Kind of its blobs.
    pub kind: PackKind,
    /// Its salt.
    pub salt: [u8; 32],
    /// Its size in bytes.
    pub size: u64,
}

#[derive(Debug, Clone, Copy)]
struct Location {
    pack: u32,
    offset: u32,
    length: u32,
    raw_length: u32,
}

/// Where one blob lies.
#[derive(Debug, Clone, Copy)]
pub struct BlobRef<'a> {
    /// The pack holding it.
    pub pack: &'a PackMeta,
    /// Offset in the pack.
    pub offset: u64,
    /// Stored length.
    pub length: u64,
    /// Payload length.
    pub raw_length: u64,
}

/// Every blob location of the repository.
#[derive(Debug, Default)]
pub struct MasterIndex {
    packs: Vec<PackMeta>,
    pack_numbers: IdMap<u32>,
    blobs: [IdMap<Location>; 3],
    index_ids: Vec<Id>,
    duplicates: u64,
    /// Further locations of blobs stored more than once (normally few): prune needs them all.
    extra: Vec<(PackKind, Id, Location)>,
}

/// One location of a blob, for whole-index passes (prune).
#[derive(Debug, Clone, Copy)]
pub struct BlobLocation<'a> {
    /// The blob's id.
    pub id: &'a Id,
    /// Position of its pack in [`MasterIndex::packs`].
    pub pack: usize,
    /// Offset of its record in the pack.
    pub offset: u64,
    /// Stored length of its record.
    pub length: u64,
    /// Payload length.
    pub raw_length: u64,
    /// True when the blob has other locations too.
    pub duplicated: bool,
}

impl MasterIndex {
    /// Adds the packs of one index object.
    pub fn add_file(&mut self, index_id: Id, file: &IndexFile) -> Result<()> {
        for p in &file.packs {
            self.add_pack(p)
                .map_err(|e| RepoError::format(names::index(&index_id), e))?;
        }
        self.index_ids.push(index_id);
        Ok(())
    }

    /// Adds one pack (ignored if the pack is already known).
    pub fn add_pack(&mut self, p: &IndexPack) -> Result<(), zaibei_format::FormatError> {
        if self.pack_numbers.contains_key(&p.id) {
            return Ok(());
        }
        let too_big = |what: &str| {
            zaibei_format::FormatError::invalid(
                "index",
                format!("pack {}: {what} exceeds 4 GiB", p.id),
            )
        };
        let number = u32::try_from(self.packs.len()).map_err(|_| too_big("pack count"))?;
        let mut locations = Vec::with_capacity(p.blobs.len());
        for b in &p.blobs {
            locations.push((
                b.id,
                Location {
                    pack: number,
                    offset: u32::try_from(b.offset).map_err(|_| too_big("offset"))?,
                    length: u32::try_from(b.length).map_err(|_| too_big("blob length"))?,
                    raw_length: u32::try_from(b.raw_length).map_err(|_| too_big("blob payload"))?,
                },
            ));
        }
        self.packs.push(PackMeta {
            id: p.id,
            kind: p.kind,
            salt: p.salt,
            size: p.size,
        });
        self.pack_numbers.insert(p.id, number);
        let map = &mut self.blobs[p.kind.slot()];
        for (id, loc) in locations {
            match map.entry(id) {
                std::collections::hash_map::Entry::Occupied(_) => {
                    self.duplicates += 1;
                    self.extra.push((p.kind, id, loc));
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(loc);
                }
            }
        }
        Ok(())
    }

    /// Where a blob lies.
    pub fn lookup(&self, kind: PackKind, id: &Id) -> Option<BlobRef<'_>> {
        let loc = self.blobs[kind.slot()].get(id)?;
        Some(BlobRef {
            pack: &self.packs[loc.pack as usize],
            offset: u64::from(loc.offset),
            length: u64::from(loc.length),
            raw_length: u64::from(loc.raw_length),
        })
    }

    /// Every location of a blob: the one [`MasterIndex::lookup`] gives first, then the
    /// copies stored elsewhere (normally none).
    pub fn locations(&self, kind: PackKind, id: &Id) -> Vec<BlobRef<'_>> {
        let Some(first) = self.lookup(kind, id) else {
            return Vec::new();
        };
        let mut all = vec![first];
        all.extend(
            self.extra
                .iter()
                .filter(|(k, i, _)| *k == kind && i == id)
                .map(|(_, _, loc)| self.blob_ref(loc)),
        );
        all
    }

    fn blob_ref(&self, loc: &Location) -> BlobRef<'_> {
        BlobRef {
            pack: &self.packs[loc.pack as usize],
            offset: u64::from(loc.offset),
            length: u64::from(loc.length),
            raw_length: u64::from(loc.raw_length),
        }
    }

    /// Position in [`MasterIndex::packs`] of the pack holding a blob.
    pub fn pack_number(&self, kind: PackKind, id: &Id) -> Option<usize> {
        self.blobs[kind.slot()].get(id).map(|loc| loc.pack as usize)
    }

    /// True when the blob is indexed.
    pub fn contains(&self, kind: PackKind, id: &Id) -> bool {
        self.blobs[kind.slot()].contains_key(id)
    }

    /// All packs.
    pub fn packs(&self) -> &[PackMeta] {
        &self.packs
    }

    /// A pack by id.
    pub fn pack(&self, id: &Id) -> Option<&PackMeta> {
        self.pack_numbers.get(id).map(|&n| &self.packs[n as usize])
    }

    /// Number of distinct blobs of a kind.
    pub fn blob_count(&self, kind: PackKind) -> usize {
        self.blobs[kind.slot()].len()
    }

    /// Ids of all blobs of a kind with their locations.
    pub fn blobs(&self, kind: PackKind) -> impl Iterator<Item = (&Id, BlobRef<'_>)> {
        self.blobs[kind.slot()].iter().map(|(id, loc)| {
            (
                id,
                BlobRef {
                    pack: &self.packs[loc.pack as usize],
                    offset: u64::from(loc.offset),
                    length: u64::from(loc.length),
                    raw_length: u64::from(loc.raw_length),
                },
            )
        })
    }

    /// Every location of every blob of a kind, duplicates included.
    pub fn all_locations(&self, kind: PackKind) -> impl Iterator<Item = BlobLocation<'_>> {
        let dup: IdSet = self
            .extra
            .iter()
            .filter(|(k, _, _)| *k == kind)
            .map(|(_, id, _)| *id)
            .collect();
        let first = self.blobs[kind.slot()]
            .iter()
            .map(move |(id, loc)| BlobLocation {
                id,
                pack: loc.pack as usize,
                offset: u64::from(loc.offset),
                length: u64::from(loc.length),
                raw_length: u64::from(loc.raw_length),
                duplicated: dup.contains(id),
            });
        let extra = self
            .extra
            .iter()
            .filter(move |(k, _, _)| *k == kind)
            .map(|(_, id, loc)| BlobLocation {
                id,
                pack: loc.pack as usize,
                offset: u64::from(loc.offset),
                length: u64::from(loc.length),
                raw_length: u64::from(loc.raw_length),
                duplicated: true,
            });
        first.chain(extra)
    }

    /// Position of a pack in [`MasterIndex::packs`].
    pub fn pack_position(&self, id: &Id) -> Option<usize> {
        self.pack_numbers.get(id).map(|&n| n as usize)
    }

    /// Index objects loaded.
    pub fn index_ids(&self) -> &[Id] {
        &self.index_ids
    }

    /// Number of blob entries that repeat a blob already indexed in another pack.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// An index object that could not be loaded.
#[derive(Debug)]
pub struct IndexProblem {
    /// Object name.
    pub name: String,
    /// Why.
    pub error: RepoError,
}

impl Repository {
    /// Loads every index object. Objects that cannot be read or decoded are reported, not fatal:
    /// the blobs they describe are then unknown (a backup stores them again; a restore that
    /// needs them says which).
    pub async fn read_index(&self) -> Result<(MasterIndex, Vec<IndexProblem>)> {
        let listed = self.store.list(names::INDEX).await?;
        if let Some(cache) = &self.cache {
            cache.retain(
                names::INDEX,
                &listed.iter().map(|o| o.name.clone()).collect(),
            );
        }
        let mut index = MasterIndex::default();
        let mut problems = Vec::new();
        let mut results = futures::stream::iter(listed.into_iter().map(|info| async move {
            let Some(id) = names::id_of(&info.name) else {
                return (
                    info.name,
                    None,
                    Err(RepoError::Refused("not an index object name".into())),
                );
            };
            let res = async {
                let bytes = self.get_verified(&info.name).await?;
                let maint = self.keys.maintenance().clone();
                tokio::task::spawn_blocking(move || IndexFile::open(&maint, &bytes))
                    .await
                    .map_err(|e| RepoError::Internal(e.to_string()))?
                    .map_err(|e| RepoError::format(names::index(&id), e))
            }
            .await;
            (info.name, Some(id), res)
        }))
        .buffer_unordered(8);
        while let Some((name, id, res)) = results.next().await {
            match (id, res) {
                (Some(id), Ok(file)) => {
                    if let Err(error) = index.add_file(id, &file) {
                        problems.push(IndexProblem { name, error });
                    }
                }
                // A store that cannot be reached says nothing about the object: going on
                // with part of the index would store known data again and, worse, let a
                // later prune think used packs unused.
                (_, Err(error)) if error.is_store_unreachable() => return Err(error),
                (_, Err(error)) => problems.push(IndexProblem { name, error }),
                (None, Ok(_)) => {}
            }
        }
        Ok((index, problems))
    }
}
