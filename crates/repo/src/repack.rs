//! Reading whole packs and shrinking them: the pack-level work of prune and of writers that
//! rescue blobs from condemned packs.
//!
//! A shrunken pack keeps its source's kind and salt and copies the kept blob records byte for
//! byte (they stay encrypted under the key derived from that salt), then closes with a fresh
//! sealed header. No blob is decrypted, so the maintenance key alone suffices; the new pack
//! gets its own id, the hash of its bytes.

use bytes::Bytes;
use zaibei_crypto::Suite;
use zaibei_format::pack::{
    PACK_TRAILER_LEN, PackBlob, decode_pack_header, decode_pack_prefix, decode_pack_trailer,
    encode_pack_footer, encode_pack_prefix,
};
use zaibei_format::{Id, IndexPack, MaintenanceKeys, PackKind};

use crate::{RepoError, Result};

/// Decodes a whole pack's prefix and authenticated header: kind, salt and blob records.
pub fn parse_pack(
    keys: &MaintenanceKeys,
    name: &str,
    bytes: &[u8],
) -> Result<(PackKind, [u8; 32], Vec<PackBlob>)> {
    let fmt = |e| RepoError::format(name, e);
    let len = bytes.len() as u64;
    let (kind, salt) = decode_pack_prefix(bytes).map_err(fmt)?;
    let range = decode_pack_trailer(&bytes[bytes.len().saturating_sub(PACK_TRAILER_LEN)..], len)
        .map_err(fmt)?;
    let header = bytes
        .get(
            usize::try_from(range.start).unwrap_or(usize::MAX)
                ..usize::try_from(range.end).unwrap_or(usize::MAX),
        )
        .ok_or_else(|| RepoError::Refused(format!("{name}: header out of range")))?;
    let blobs = decode_pack_header(keys, bytes, header, len).map_err(fmt)?;
    Ok((kind, salt, blobs))
}

/// The stored record of blob `b` inside the whole pack `bytes` (named `name`).
pub fn blob_record<'a>(name: &str, bytes: &'a [u8], b: &PackBlob) -> Result<&'a [u8]> {
    usize::try_from(b.offset)
        .ok()
        .zip(
            b.offset
                .checked_add(b.length)
                .and_then(|e| usize::try_from(e).ok()),
        )
        .and_then(|(start, end)| bytes.get(start..end))
        .ok_or_else(|| RepoError::Refused(format!("{name}: blob {} lies outside the pack", b.id)))
}

/// A pack built by [`build_pack`] (and so by [`shrink_pack`]).
#[derive(Debug)]
pub struct ShrunkPack {
    /// Its id.
    pub id: Id,
    /// Its bytes.
    pub bytes: Bytes,
    /// Its index entry.
    pub index: IndexPack,
}

/// Builds a new pack of `kind` and `salt` from stored blob records, copied byte for byte in
/// the order given (they stay encrypted under the key derived from `salt`), closed with a
/// fresh sealed header. `what` names the source in errors.
pub fn build_pack<'a>(
    keys: &MaintenanceKeys,
    suite: Suite,
    kind: PackKind,
    salt: [u8; 32],
    what: &str,
    records: impl IntoIterator<Item = (PackBlob, &'a [u8])>,
) -> Result<ShrunkPack> {
    let prefix = encode_pack_prefix(kind, &salt);
    let mut out = Vec::new();
    out.extend_from_slice(&prefix);
    let mut kept = Vec::new();
    for (b, record) in records {
        kept.push(PackBlob {
            offset: out.len() as u64,
            length: record.len() as u64,
            ..b
        });
        out.extend_from_slice(record);
    }
    let footer = encode_pack_footer(keys, &prefix, &kept)
        .map_err(|e| RepoError::format(format!("pack built from {what}"), e))?;
    out.extend_from_slice(&footer);
    let id = Id(suite.hash(&out));
    let size = out.len() as u64;
    Ok(ShrunkPack {
        id,
        bytes: Bytes::from(out),
        index: IndexPack {
            id,
            kind,
            salt,
            size,
            blobs: kept,
        },
    })
}

/// Builds a new pack holding only the blobs of `source` (a whole pack named `name`) whose ids
/// `keep` accepts, in their original order.
pub fn shrink_pack(
    keys: &MaintenanceKeys,
    suite: Suite,
    name: &str,
    source: &[u8],
    mut keep: impl FnMut(&Id) -> bool,
) -> Result<ShrunkPack> {
    let (kind, salt, blobs) = parse_pack(keys, name, source)?;
    let records = blobs
        .into_iter()
        .filter(|b| keep(&b.id))
        .map(|b| blob_record(name, source, &b).map(|r| (b, r)))
        .collect::<Result<Vec<_>>>()?;
    build_pack(keys, suite, kind, salt, name, records)
}
