//! Every magic number and version of the repository format, in one place.
//!
//! Released values are never changed: a change of layout gets a new version number, and
//! readers refuse versions above the ones listed here with a clear error.

/// Version of the repository format as a whole (the `v` field of the config object).
pub const REPOSITORY_VERSION: u64 = 1;

/// Length of every envelope magic: six ASCII letters `ZAIBEI`, one letter naming the object
/// type, and one byte with the version of the envelope layout.
pub const MAGIC_LEN: usize = 8;

/// The common prefix of every magic.
pub const MAGIC_PREFIX: &[u8; 6] = b"ZAIBEI";

/// Version byte of every envelope defined by format v1.
pub const ENVELOPE_VERSION: u8 = 1;

/// Magic of the config object (`config`).
pub const CONFIG_MAGIC: [u8; 8] = *b"ZAIBEIC\x01";
/// Magic of a key object (`keys/<id>`).
pub const KEY_MAGIC: [u8; 8] = *b"ZAIBEIK\x01";
/// Magic at the start of a pack (`data/<xx>/<id>`).
pub const PACK_MAGIC: [u8; 8] = *b"ZAIBEIP\x01";
/// Magic at the very end of a pack, after the header length.
pub const PACK_TRAILER_MAGIC: [u8; 8] = *b"ZAIBEIE\x01";
/// Magic of an index object (`index/<id>`).
pub const INDEX_MAGIC: [u8; 8] = *b"ZAIBEII\x01";
/// Magic of a snapshot object (`snapshots/<id>`).
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"ZAIBEIS\x01";
/// Magic of a state object (`state/<kind>/<generation>-<id>`).
pub const STATE_MAGIC: [u8; 8] = *b"ZAIBEIT\x01";

/// Version of the CBOR body of the config object.
pub const CONFIG_VERSION: u64 = 1;
/// Version of the CBOR body of key objects.
pub const KEY_VERSION: u64 = 1;
/// Version of the CBOR body of pack headers.
pub const PACK_HEADER_VERSION: u64 = 1;
/// Version of the CBOR body of index objects.
pub const INDEX_VERSION: u64 = 1;
/// Version of the CBOR body of snapshots.
pub const SNAPSHOT_VERSION: u64 = 1;
/// Version of the CBOR body of trees.
pub const TREE_VERSION: u64 = 1;
/// Version of the CBOR body of reference blobs.
pub const REFS_VERSION: u64 = 1;
/// Version of the CBOR body of state objects.
pub const STATE_VERSION: u64 = 1;
/// Version of the body of the `condemned` state.
pub const CONDEMNED_VERSION: u64 = 1;
/// Version of the body of the `site` state (§13).
pub const SITE_VERSION: u64 = 1;
/// Version of the body of the `synced` state (§13).
pub const SYNCED_VERSION: u64 = 1;
/// Version of the body of the `forgotten` state (§13.1).
pub const FORGOTTEN_VERSION: u64 = 1;

/// Compression codec byte: payload stored as is.
pub const CODEC_NONE: u8 = 0;
/// Compression codec byte: payload is one zstd frame.
pub const CODEC_ZSTD: u8 = 1;

/// Checks an 8-byte magic: `Ok(())` when it matches `expected`, an error naming `what`
/// otherwise (an unknown envelope version gives [`crate::FormatError::UnsupportedVersion`]).
pub fn check_magic(
    what: &'static str,
    bytes: &[u8],
    expected: &[u8; 8],
) -> Result<(), crate::FormatError> {
    if bytes.len() < MAGIC_LEN {
        return Err(crate::FormatError::Truncated {
            what,
            need: MAGIC_LEN,
            have: bytes.len(),
        });
    }
    if bytes[..7] != expected[..7] {
        return Err(crate::FormatError::BadMagic { what });
    }
    if bytes[7] != expected[7] {
        return Err(crate::FormatError::UnsupportedVersion {
            what,
            found: u64::from(bytes[7]),
            supported: u64::from(expected[7]),
        });
    }
    Ok(())
}
