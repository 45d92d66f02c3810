//! Index objects: which blobs each pack holds, so that nobody needs to read pack headers.
//!
//! Sealed object of type `index` (see sealed.rs) with the CBOR body
//! `{"v": 1, "packs": [{"id", "kind", "salt", "size", "blobs": [[id, offset, length, raw_length]...]}],
//! "supersedes": [index ids]}`. An index that supersedes others makes them redundant: whoever
//! wrote it deletes them afterwards, and a reader that sees both uses the union (identical data).

use crate::cbor::{self, Value};
use crate::fields::{MapBuilder, id_value};
use crate::magic::INDEX_VERSION;
use crate::pack::{PACK_PREFIX_LEN, PackBlob, read_pack_blob};
use crate::reader::FieldReader;
use crate::sealed::{SealedType, open_object, seal_object};
use crate::{FormatError, Id, MaintenanceKeys, PackKind};

/// One pack as listed in an index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPack {
    /// Pack id (hash of its bytes).
    pub id: Id,
    /// Kind of blobs it holds.
    pub kind: PackKind,
    /// The pack's salt (to derive its key without reading it).
    pub salt: [u8; 32],
    /// Total size of the pack in bytes.
    pub size: u64,
    /// Its blobs in offset order.
    pub blobs: Vec<PackBlob>,
}

/// The contents of one index object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexFile {
    /// Packs described.
    pub packs: Vec<IndexPack>,
    /// Index objects this one replaces.
    pub supersedes: Vec<Id>,
}

const WHAT: &str = "index";

impl IndexFile {
    /// The CBOR body.
    pub fn encode_body(&self) -> Vec<u8> {
        let packs = self
            .packs
            .iter()
            .map(|p| {
                let blobs = p
                    .blobs
                    .iter()
                    .map(|b| {
                        Value::Array(vec![
                            id_value(&b.id),
                            Value::Uint(b.offset),
                            Value::Uint(b.length),
                            Value::Uint(b.raw_length),
                        ])
                    })
                    .collect();
                MapBuilder::new()
                    .id("id", &p.id)
                    .uint("kind", p.kind as u64)
                    .bytes("salt", &p.salt)
                    .uint("size", p.size)
                    .value("blobs", Value::Array(blobs))
                    .build()
            })
            .collect();
        cbor::encode(
            &MapBuilder::new()
                .uint("v", INDEX_VERSION)
                .value("packs", Value::Array(packs))
                .value(
                    "supersedes",
                    Value::Array(self.supersedes.iter().map(id_value).collect()),
                )
                .build(),
        )
    }

    /// Decodes and validates a CBOR body, in one pass over its bytes (an index load decodes
    /// every blob record of the repository). Accepts exactly what the generic path
    /// (`cbor::decode`, then the fields) accepts; see [`crate::reader`].
    pub fn decode_body(body: &[u8]) -> Result<Self, FormatError> {
        let mut r = FieldReader::new(WHAT, body);
        let entries = r.map()?;
        let mut version = None;
        let mut packs = None;
        let mut supersedes = Vec::new();
        let mut prev_key = None;
        // Keys sort "v", "packs", "supersedes": the version is known before the packs.
        for _ in 0..entries {
            match r.key(1, &mut prev_key)? {
                Some("v") => version = Some(r.uint("v")?),
                Some("packs") => {
                    r.version(version, INDEX_VERSION)?;
                    packs = Some(read_packs(&mut r)?);
                }
                Some("supersedes") if packs.is_some() => supersedes = r.ids("supersedes")?,
                _ => r.skip(1)?,
            }
        }
        r.finish()?;
        r.version(version, INDEX_VERSION)?;
        let packs = packs.ok_or_else(|| r.missing("packs"))?;
        Ok(IndexFile { packs, supersedes })
    }

    /// Encodes and seals the object.
    pub fn seal(&self, keys: &MaintenanceKeys) -> Result<Vec<u8>, FormatError> {
        seal_object(keys, SealedType::Index, &self.encode_body(), 3)
    }

    /// Opens and decodes a stored index object.
    pub fn open(keys: &MaintenanceKeys, stored: &[u8]) -> Result<Self, FormatError> {
        Self::decode_body(&open_object(keys, SealedType::Index, stored)?)
    }
}

/// Nesting of a pack's map inside the body: body map, `packs` array, pack map.
const PACK_DEPTH: usize = 2;

fn read_packs(r: &mut FieldReader<'_>) -> Result<Vec<IndexPack>, FormatError> {
    let count = r.array("packs")?;
    // A pack's map holds an id, a salt and three more fields: more than 80 bytes.
    let mut packs = r.vec_for(count, 80);
    for _ in 0..count {
        packs.push(read_pack(r)?);
    }
    Ok(packs)
}

/// One pack's map. Its keys sort "id", "kind", "salt", "size", "blobs": each field that names
/// the pack or checks a blob against its size comes after what it needs.
fn read_pack(r: &mut FieldReader<'_>) -> Result<IndexPack, FormatError> {
    let entries = r.map()?;
    let depth = PACK_DEPTH + 1;
    let (mut id, mut kind, mut salt, mut size, mut blobs) = (None, None, None, None, None);
    let mut prev_key = None;
    for _ in 0..entries {
        match r.key(depth, &mut prev_key)? {
            Some("id") => id = Some(r.id("id")?),
            Some("kind") => {
                let pack = id.ok_or_else(|| r.missing("id"))?;
                let n = r.uint("kind")?;
                kind = Some(
                    u8::try_from(n)
                        .ok()
                        .and_then(PackKind::from_byte)
                        .ok_or_else(|| {
                            FormatError::field(
                                WHAT,
                                "kind",
                                format!("unknown pack kind {n} for pack {pack}"),
                            )
                        })?,
                );
            }
            Some("salt") => {
                let pack = id.ok_or_else(|| r.missing("id"))?;
                let bytes = r.bytes("salt")?;
                salt = Some(<[u8; 32]>::try_from(bytes).map_err(|_| {
                    FormatError::field(WHAT, "salt", format!("pack {pack}: salt must be 32 bytes"))
                })?);
            }
            Some("size") => size = Some(r.uint("size")?),
            Some("blobs") => {
                let pack = id.ok_or_else(|| r.missing("id"))?;
                let pack_size = size.ok_or_else(|| r.missing("size"))?;
                blobs = Some(read_blobs(r, pack, pack_size)?);
            }
            _ => r.skip(depth)?,
        }
    }
    Ok(IndexPack {
        id: id.ok_or_else(|| r.missing("id"))?,
        kind: kind.ok_or_else(|| r.missing("kind"))?,
        salt: salt.ok_or_else(|| r.missing("salt"))?,
        size: size.ok_or_else(|| r.missing("size"))?,
        blobs: blobs.ok_or_else(|| r.missing("blobs"))?,
    })
}

fn read_blobs(r: &mut FieldReader<'_>, pack: Id, size: u64) -> Result<Vec<PackBlob>, FormatError> {
    let count = r.array("blobs")?;
    // A blob record: an array head, a 32-byte id and three integers.
    let mut blobs = r.vec_for(count, 38);
    for _ in 0..count {
        let b = read_pack_blob(r)?;
        let in_pack = b.offset >= PACK_PREFIX_LEN as u64
            && b.offset
                .checked_add(b.length)
                .is_some_and(|end| end <= size);
        if !in_pack {
            return Err(FormatError::invalid(
                WHAT,
                format!("blob {} lies outside pack {pack} of {size} bytes", b.id),
            ));
        }
        blobs.push(b);
    }
    Ok(blobs)
}
