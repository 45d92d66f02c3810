//! The generic decoding path of an index object's body (`cbor::decode` into values, then the
//! fields one by one): the reference `IndexFile::decode_body` is compared against.

use zaibei_format::blob::BLOB_OVERHEAD;
use zaibei_format::cbor::{self, Value};
use zaibei_format::fields::{Fields, value_to_id, value_to_u64};
use zaibei_format::magic::INDEX_VERSION;
use zaibei_format::pack::{PACK_PREFIX_LEN, PackBlob};
use zaibei_format::{FormatError, IndexFile, IndexPack, PackKind};

const WHAT: &str = "index";

/// Decodes an index body through `cbor::Value`.
pub fn decode(body: &[u8]) -> Result<IndexFile, FormatError> {
    let value = cbor::decode(body).map_err(|source| FormatError::Cbor { what: WHAT, source })?;
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
            let b = pack_blob(&bv)?;
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

fn pack_blob(v: &Value) -> Result<PackBlob, FormatError> {
    let Value::Array(a) = v else {
        return Err(FormatError::field(
            WHAT,
            "blobs",
            format!("entry is a {v}, expected array"),
        ));
    };
    let [id, offset, length, raw] = a.as_slice() else {
        return Err(FormatError::field(
            WHAT,
            "blobs",
            format!("entry has {} elements, expected 4", a.len()),
        ));
    };
    let b = PackBlob {
        id: value_to_id(WHAT, "blobs", id)?,
        offset: value_to_u64(WHAT, "blobs", offset)?,
        length: value_to_u64(WHAT, "blobs", length)?,
        raw_length: value_to_u64(WHAT, "blobs", raw)?,
    };
    if b.length < BLOB_OVERHEAD as u64 {
        return Err(FormatError::field(
            WHAT,
            "blobs",
            format!(
                "blob {} is {} bytes, shorter than its envelope",
                b.id, b.length
            ),
        ));
    }
    Ok(b)
}
