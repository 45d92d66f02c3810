//! Pack files: many encrypted blobs of one kind in one object.
//!
//! ```text
//! 0      magic "ZAIBEIP\x01" (8)
//! 8      kind (1): 1 data, 2 tree, 3 refs
//! 9      reserved (7), zero
//! 16     salt (32)                     -> pack key and header key
//! 48     blob records, back to back    (see blob.rs)
//! H      sealed header: nonce (12) || ciphertext || tag (16)
//! end-12 header length, u32 little-endian (length of the sealed header)
//! end-8  trailer magic "ZAIBEIE\x01" (8)
//! ```
//!
//! The header is sealed with `derive(MK, "zaibei v1 pack header", salt)` and the first 48 bytes
//! as AAD; its plaintext is `codec || CBOR {"v": 1, "blobs": [[id, offset, length, raw_length], ...]}`
//! listing every blob in offset order. The pack's id is the suite's hash of all its bytes.

use zaibei_crypto::{NONCE_LEN, TAG_LEN, random_array};

use crate::blob::{BLOB_OVERHEAD, decode_payload_bounded, encode_payload};
use crate::cbor::{self, Head, Value};
use crate::fields::MapBuilder;
use crate::magic::{MAGIC_LEN, PACK_HEADER_VERSION, PACK_MAGIC, PACK_TRAILER_MAGIC, check_magic};
use crate::reader::FieldReader;
use crate::{FormatError, Id, MaintenanceKeys};

/// Length of the fixed prefix of a pack (magic, kind, reserved, salt).
pub const PACK_PREFIX_LEN: usize = 48;
/// Length of the fixed trailer (header length and trailer magic).
pub const PACK_TRAILER_LEN: usize = 4 + MAGIC_LEN;
/// Largest sealed header accepted (64 MiB).
pub const MAX_PACK_HEADER_LEN: usize = 64 << 20;

/// The kind of blobs a pack holds. Data and tree blobs never share a pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum PackKind {
    /// Chunks of file contents (content key).
    Data = 1,
    /// Directory trees (content key).
    Tree = 2,
    /// Reference blobs: which blobs a tree references (maintenance key).
    Refs = 3,
}

impl PackKind {
    /// Parses the kind byte.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(PackKind::Data),
            2 => Some(PackKind::Tree),
            3 => Some(PackKind::Refs),
            _ => None,
        }
    }

    /// Stable lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            PackKind::Data => "data",
            PackKind::Tree => "tree",
            PackKind::Refs => "refs",
        }
    }

    /// Position of the kind in [`PackKind::ALL`] (0, 1 or 2), for per-kind arrays.
    pub fn slot(self) -> usize {
        self as usize - 1
    }

    /// All kinds.
    pub const ALL: [PackKind; 3] = [PackKind::Data, PackKind::Tree, PackKind::Refs];
}

/// Where one blob lies in its pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackBlob {
    /// Blob id.
    pub id: Id,
    /// Offset of the stored blob from the start of the pack.
    pub offset: u64,
    /// Length of the stored blob (nonce, codec, ciphertext and tag).
    pub length: u64,
    /// Length of the payload once decrypted and decompressed.
    pub raw_length: u64,
}

/// A fresh random pack salt.
pub fn new_pack_salt() -> Result<[u8; 32], FormatError> {
    random_array().map_err(|source| FormatError::Crypto {
        what: "pack",
        source,
    })
}

/// The 48-byte prefix of a pack.
pub fn encode_pack_prefix(kind: PackKind, salt: &[u8; 32]) -> [u8; PACK_PREFIX_LEN] {
    let mut p = [0u8; PACK_PREFIX_LEN];
    p[..MAGIC_LEN].copy_from_slice(&PACK_MAGIC);
    p[MAGIC_LEN] = kind as u8;
    p[16..].copy_from_slice(salt);
    p
}

/// Parses the prefix of a pack: its kind and salt.
pub fn decode_pack_prefix(bytes: &[u8]) -> Result<(PackKind, [u8; 32]), FormatError> {
    let what = "pack";
    check_magic(what, bytes, &PACK_MAGIC)?;
    if bytes.len() < PACK_PREFIX_LEN {
        return Err(FormatError::Truncated {
            what,
            need: PACK_PREFIX_LEN,
            have: bytes.len(),
        });
    }
    let kind = PackKind::from_byte(bytes[MAGIC_LEN]).ok_or_else(|| {
        FormatError::invalid(what, format!("unknown pack kind {}", bytes[MAGIC_LEN]))
    })?;
    if bytes[MAGIC_LEN + 1..16].iter().any(|&b| b != 0) {
        return Err(FormatError::invalid(
            what,
            "reserved prefix bytes are not zero",
        ));
    }
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&bytes[16..PACK_PREFIX_LEN]);
    Ok((kind, salt))
}

/// The most bytes [`encode_pack_footer`] returns for a pack of `blobs` blobs: an entry is an
/// id and three integers (at most 62 bytes of CBOR), and the rest (version, nonce, codec,
/// tag, trailer) fits in 128 bytes.
pub fn pack_footer_len_bound(blobs: usize) -> usize {
    128 + 64 * blobs
}

/// Encodes the sealed header and trailer that close a pack whose first 48 bytes are `prefix`.
pub fn encode_pack_footer(
    keys: &MaintenanceKeys,
    prefix: &[u8; PACK_PREFIX_LEN],
    blobs: &[PackBlob],
) -> Result<Vec<u8>, FormatError> {
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&prefix[16..]);
    let entries = blobs
        .iter()
        .map(|b| {
            Value::Array(vec![
                Value::Bytes(b.id.as_bytes().to_vec()),
                Value::Uint(b.offset),
                Value::Uint(b.length),
                Value::Uint(b.raw_length),
            ])
        })
        .collect();
    let body = cbor::encode(
        &MapBuilder::new()
            .uint("v", PACK_HEADER_VERSION)
            .value("blobs", Value::Array(entries))
            .build(),
    );
    let nonce: [u8; NONCE_LEN] = random_array().map_err(|source| FormatError::Crypto {
        what: "pack header",
        source,
    })?;
    let mut ct = encode_payload(&body, 3);
    keys.pack_header_aead(&salt)
        .seal_in_place(&nonce, prefix, &mut ct);
    let header_len = NONCE_LEN + ct.len();
    let header_len32 = u32::try_from(header_len)
        .map_err(|_| FormatError::invalid("pack header", "header larger than 4 GiB"))?;
    let mut out = Vec::with_capacity(header_len + PACK_TRAILER_LEN);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out.extend_from_slice(&header_len32.to_le_bytes());
    out.extend_from_slice(&PACK_TRAILER_MAGIC);
    Ok(out)
}

/// Reads the trailer (the last [`PACK_TRAILER_LEN`] bytes) of a pack of `pack_len` bytes and
/// returns the byte range of the sealed header.
pub fn decode_pack_trailer(
    trailer: &[u8],
    pack_len: u64,
) -> Result<std::ops::Range<u64>, FormatError> {
    let what = "pack trailer";
    if trailer.len() != PACK_TRAILER_LEN {
        return Err(FormatError::Truncated {
            what,
            need: PACK_TRAILER_LEN,
            have: trailer.len(),
        });
    }
    check_magic(what, &trailer[4..], &PACK_TRAILER_MAGIC)?;
    let header_len = u64::from(u32::from_le_bytes([
        trailer[0], trailer[1], trailer[2], trailer[3],
    ]));
    let min_pack = (PACK_PREFIX_LEN + PACK_TRAILER_LEN) as u64 + header_len;
    if header_len < (NONCE_LEN + TAG_LEN + 1) as u64
        || header_len > MAX_PACK_HEADER_LEN as u64
        || pack_len < min_pack
    {
        return Err(FormatError::invalid(
            what,
            format!("header length {header_len} impossible in a pack of {pack_len} bytes"),
        ));
    }
    let end = pack_len - PACK_TRAILER_LEN as u64;
    Ok(end - header_len..end)
}

/// Authenticates and decodes the sealed header of a pack of `pack_len` bytes whose prefix is
/// `prefix`, and checks that the blobs it lists tile the space between prefix and header without
/// overlapping.
pub fn decode_pack_header(
    keys: &MaintenanceKeys,
    prefix: &[u8],
    sealed_header: &[u8],
    pack_len: u64,
) -> Result<Vec<PackBlob>, FormatError> {
    let what = "pack header";
    let (_kind, salt) = decode_pack_prefix(prefix)?;
    if sealed_header.len() < NONCE_LEN + TAG_LEN + 1 {
        return Err(FormatError::Truncated {
            what,
            need: NONCE_LEN + TAG_LEN + 1,
            have: sealed_header.len(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed_header[..NONCE_LEN]);
    let mut buf = sealed_header[NONCE_LEN..].to_vec();
    keys.pack_header_aead(&salt)
        .open_in_place(&nonce, &prefix[..PACK_PREFIX_LEN], &mut buf)
        .map_err(|source| FormatError::Crypto { what, source })?;
    let body = decode_payload_bounded(what, buf, MAX_PACK_HEADER_LEN * 4)?;
    let header_start = pack_len.saturating_sub((PACK_TRAILER_LEN + sealed_header.len()) as u64);
    let mut r = FieldReader::new(what, &body);
    let entries = r.map()?;
    let mut version = None;
    let mut blobs = None;
    let mut prev_key = None;
    // Keys sort "v", then "blobs".
    for _ in 0..entries {
        match r.key(1, &mut prev_key)? {
            Some("v") => version = Some(r.uint("v")?),
            Some("blobs") => {
                r.version(version, PACK_HEADER_VERSION)?;
                blobs = Some(read_tiled_blobs(&mut r, header_start)?);
            }
            _ => r.skip(1)?,
        }
    }
    r.finish()?;
    r.version(version, PACK_HEADER_VERSION)?;
    blobs.ok_or_else(|| r.missing("blobs"))
}

/// The blob records of a pack header, which must tile the space between the prefix and the
/// header (at `header_start`) without gaps or overlaps.
fn read_tiled_blobs(
    r: &mut FieldReader<'_>,
    header_start: u64,
) -> Result<Vec<PackBlob>, FormatError> {
    let what = r.what();
    let count = r.array("blobs")?;
    // A blob record: an array head, a 32-byte id and three integers.
    let mut blobs = r.vec_for(count, 38);
    let mut next_free = PACK_PREFIX_LEN as u64;
    for _ in 0..count {
        let b = read_pack_blob(r)?;
        if b.offset != next_free {
            return Err(FormatError::invalid(
                what,
                format!(
                    "blob {} at offset {} leaves a gap or overlaps (expected {next_free})",
                    b.id, b.offset
                ),
            ));
        }
        let end = b
            .offset
            .checked_add(b.length)
            .filter(|&e| e <= header_start)
            .ok_or_else(|| {
                FormatError::invalid(what, format!("blob {} extends past the blob area", b.id))
            })?;
        next_free = end;
        blobs.push(b);
    }
    if next_free != header_start {
        return Err(FormatError::invalid(
            what,
            format!("blobs end at {next_free} but the header starts at {header_start}"),
        ));
    }
    Ok(blobs)
}

/// Reads one `[id, offset, length, raw_length]` entry in place (pack headers, index objects).
pub(crate) fn read_pack_blob(r: &mut FieldReader<'_>) -> Result<PackBlob, FormatError> {
    let what = r.what();
    match r.head()? {
        Head::Array(4) => {}
        Head::Array(n) => {
            return Err(FormatError::field(
                what,
                "blobs",
                format!("entry has {n} elements, expected 4"),
            ));
        }
        other => {
            return Err(FormatError::field(
                what,
                "blobs",
                format!("entry is a {}, expected array", other.kind()),
            ));
        }
    }
    let id = r.id_element("blobs")?;
    let offset = r.uint("blobs")?;
    let length = r.uint("blobs")?;
    let raw_length = r.uint("blobs")?;
    let b = PackBlob {
        id,
        offset,
        length,
        raw_length,
    };
    if b.length < BLOB_OVERHEAD as u64 {
        return Err(FormatError::field(
            what,
            "blobs",
            format!(
                "blob {} is {} bytes, shorter than its envelope",
                b.id, b.length
            ),
        ));
    }
    Ok(b)
}
