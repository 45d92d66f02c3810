//! The envelope of encrypted metadata objects (index, snapshot, state):
//!
//! ```text
//! magic (8) | salt (32) | nonce (12) | ciphertext || tag (16)
//! ```
//!
//! The key is `derive(MK, "zaibei v1 object <type>", salt)`, the AAD is the first 40 bytes
//! (magic and salt), and the plaintext is `codec (1) || payload` where the payload is the CBOR
//! body of the object, zstd-compressed when that pays.

use zaibei_crypto::{NONCE_LEN, TAG_LEN, random_array};

use crate::blob::{decode_payload_bounded, encode_payload};
use crate::magic::{INDEX_MAGIC, MAGIC_LEN, SNAPSHOT_MAGIC, STATE_MAGIC, check_magic};
use crate::{FormatError, MaintenanceKeys};

/// Length of the sealed-object header: magic, salt and nonce.
pub const SEALED_HEADER_LEN: usize = MAGIC_LEN + 32 + NONCE_LEN;

/// Largest decompressed body accepted from a sealed object (1 GiB).
pub const MAX_SEALED_BODY: usize = 1 << 30;

/// The kinds of sealed objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealedType {
    /// `index/<id>`.
    Index,
    /// `snapshots/<id>`.
    Snapshot,
    /// `state/<kind>/<generation>-<id>`.
    State,
}

impl SealedType {
    /// The type name used in the key-derivation label.
    pub fn name(self) -> &'static str {
        match self {
            SealedType::Index => "index",
            SealedType::Snapshot => "snapshot",
            SealedType::State => "state",
        }
    }

    fn magic(self) -> &'static [u8; 8] {
        match self {
            SealedType::Index => &INDEX_MAGIC,
            SealedType::Snapshot => &SNAPSHOT_MAGIC,
            SealedType::State => &STATE_MAGIC,
        }
    }
}

/// Seals a CBOR body into an object of type `ty`.
pub fn seal_object(
    keys: &MaintenanceKeys,
    ty: SealedType,
    body: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>, FormatError> {
    let what = ty.name();
    let salt: [u8; 32] = random_array().map_err(|source| FormatError::Crypto { what, source })?;
    let nonce: [u8; NONCE_LEN] =
        random_array().map_err(|source| FormatError::Crypto { what, source })?;
    let mut out = Vec::with_capacity(SEALED_HEADER_LEN + body.len() + TAG_LEN + 1);
    out.extend_from_slice(ty.magic());
    out.extend_from_slice(&salt);
    out.extend_from_slice(&nonce);
    let mut ct = encode_payload(body, zstd_level);
    keys.object_aead(what, &salt)
        .seal_in_place(&nonce, &out[..MAGIC_LEN + 32], &mut ct);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a sealed object of type `ty`, returning its CBOR body.
pub fn open_object(
    keys: &MaintenanceKeys,
    ty: SealedType,
    stored: &[u8],
) -> Result<Vec<u8>, FormatError> {
    let what = ty.name();
    check_magic(what, stored, ty.magic())?;
    let min = SEALED_HEADER_LEN + TAG_LEN + 1;
    if stored.len() < min {
        return Err(FormatError::Truncated {
            what,
            need: min,
            have: stored.len(),
        });
    }
    let mut salt = [0u8; 32];
    salt.copy_from_slice(&stored[MAGIC_LEN..MAGIC_LEN + 32]);
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&stored[MAGIC_LEN + 32..SEALED_HEADER_LEN]);
    let mut buf = stored[SEALED_HEADER_LEN..].to_vec();
    keys.object_aead(what, &salt)
        .open_in_place(&nonce, &stored[..MAGIC_LEN + 32], &mut buf)
        .map_err(|source| FormatError::Crypto { what, source })?;
    decode_payload_bounded(what, buf, MAX_SEALED_BODY)
}
