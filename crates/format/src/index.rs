//! Index objects: which blobs each pack holds, so that nobody needs to read pack headers.
//!
//! Sealed object of type `index` (see sealed.rs) with the CBOR body
//! `{"v": 1, "packs": [{"id", "kind", "salt", "size", "blobs": [[id, offset, length, raw_length]...]}],
//! "supersedes": [index ids]}`. An index that supersedes others makes them redundant: whoever
//! wrote it deletes them afterwards, and a reader that sees both uses the union (identical data).

use crate::cbor::{self, Value};
use crate::fields::{Fields, MapBuilder, id_value, value_to_id};
use crate::magic::INDEX_VERSION;
use crate::pack::{PACK_PREFIX_LEN, PackBlob, decode_pack_blob};
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

    /// Decodes and validates a CBOR body.
    pub fn decode_body(body: &[u8]) -> Result<Self, FormatError> {
        let value =
            cbor::decode(body).map_err(|source| FormatError::Cbor { what: WHAT, source })?;
        let mut f = Fields::new(WHAT, value)?;
        f.version(INDEX_VERSION)?;
        let mut packs = Vec::new();
        for pv in f.array("packs")? {
            let mut p = Fields::new(WHAT, pv)?;
            let id = p.id("id")?;
            let kind_n = p.uint("kind")?;
            let kind = u8::try_from(kind_n)
                .ok()
                .and_then(PackKind::from_byte)
                .ok_or_else(|| {
                    FormatError::field(
                        WHAT,
                        "kind",
                        format!("unknown pack kind {kind_n} for pack {id}"),
                    )
                })?;
            let salt_v = p.bytes("salt")?;
            let salt: [u8; 32] = salt_v.as_slice().try_into().map_err(|_| {
                FormatError::field(WHAT, "salt", format!("pack {id}: salt must be 32 bytes"))
            })?;
            let size = p.uint("size")?;
            let mut blobs = Vec::new();
            for bv in p.array("blobs")? {
                let b = decode_pack_blob(WHAT, &bv)?;
                let in_pack = b.offset >= PACK_PREFIX_LEN as u64
                    && b.offset
                        .checked_add(b.length)
                        .is_some_and(|end| end <= size);
                if !in_pack {
                    return Err(FormatError::invalid(
                        WHAT,
                        format!("blob {} lies outside pack {id} of {size} bytes", b.id),
                    ));
                }
                blobs.push(b);
            }
            packs.push(IndexPack {
                id,
                kind,
                salt,
                size,
                blobs,
            });
        }
        let supersedes = f
            .opt_array("supersedes")?
            .iter()
            .map(|v| value_to_id(WHAT, "supersedes", v))
            .collect::<Result<_, _>>()?;
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
