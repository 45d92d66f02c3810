//! A blob as stored inside a pack: `nonce (12) || ciphertext || tag (16)`.
//!
//! The plaintext is `codec (1 byte) || payload`; codec 0 stores the payload as is, codec 1
//! holds one zstd frame of it. The AAD is `"zaibei v1 blob" || kind (1 byte) || blob id (32)`,
//! so storage cannot swap two validly encrypted blobs.

use zaibei_crypto::{Aead, NONCE_LEN, TAG_LEN, random_array};

use crate::magic::{CODEC_NONE, CODEC_ZSTD};
use crate::{FormatError, Id, PackKind};

/// Bytes a stored blob adds to its plaintext: nonce, codec byte and tag.
pub const BLOB_OVERHEAD: usize = NONCE_LEN + 1 + TAG_LEN;

const AAD_PREFIX: &[u8] = b"zaibei v1 blob";

fn aad(kind: PackKind, id: &Id) -> [u8; 14 + 1 + 32] {
    let mut a = [0u8; 47];
    a[..14].copy_from_slice(AAD_PREFIX);
    a[14] = kind as u8;
    a[15..].copy_from_slice(id.as_bytes());
    a
}

/// Compresses `payload` with zstd at `level` if that saves at least 1/32 of it; returns the
/// codec byte and the bytes to store. A `level` of 0 disables compression.
pub fn compress(payload: &[u8], level: i32) -> (u8, Option<Vec<u8>>) {
    if level == 0 || payload.len() < 64 {
        return (CODEC_NONE, None);
    }
    match zstd::bulk::compress(payload, level) {
        Ok(c) if c.len() + payload.len() / 32 < payload.len() => (CODEC_ZSTD, Some(c)),
        _ => (CODEC_NONE, None),
    }
}

/// Seals one blob: compresses (see [`compress`]) and encrypts `payload`, returning the bytes to
/// append to a pack.
pub fn seal_blob(
    aead: &Aead,
    kind: PackKind,
    id: &Id,
    payload: &[u8],
    zstd_level: i32,
) -> Result<Vec<u8>, FormatError> {
    let nonce: [u8; NONCE_LEN] = random_array().map_err(|source| FormatError::Crypto {
        what: "blob",
        source,
    })?;
    let (codec, compressed) = compress(payload, zstd_level);
    let body = compressed.as_deref().unwrap_or(payload);
    let mut buf = Vec::with_capacity(NONCE_LEN + 1 + body.len() + TAG_LEN);
    buf.extend_from_slice(&nonce);
    buf.push(codec);
    buf.extend_from_slice(body);
    let mut sealed = buf.split_off(NONCE_LEN);
    aead.seal_in_place(&nonce, &aad(kind, id), &mut sealed);
    buf.extend_from_slice(&sealed);
    Ok(buf)
}

/// Authenticates and decrypts a stored blob, and decompresses it. `raw_len` is the payload
/// length recorded in the index; a payload of any other length is an error (this also bounds
/// decompression).
pub fn open_blob(
    aead: &Aead,
    kind: PackKind,
    id: &Id,
    stored: &[u8],
    raw_len: u64,
) -> Result<Vec<u8>, FormatError> {
    if stored.len() < BLOB_OVERHEAD {
        return Err(FormatError::Truncated {
            what: "blob",
            need: BLOB_OVERHEAD,
            have: stored.len(),
        });
    }
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&stored[..NONCE_LEN]);
    let mut buf = stored[NONCE_LEN..].to_vec();
    aead.open_in_place(&nonce, &aad(kind, id), &mut buf)
        .map_err(|source| FormatError::Crypto {
            what: "blob",
            source,
        })?;
    decode_payload("blob", buf, raw_len)
}

/// Splits `codec || body` and returns the payload, checking its length against `raw_len`.
pub(crate) fn decode_payload(
    what: &'static str,
    buf: Vec<u8>,
    raw_len: u64,
) -> Result<Vec<u8>, FormatError> {
    let cap = usize::try_from(raw_len)
        .map_err(|_| FormatError::invalid(what, "recorded length does not fit in memory"))?;
    let payload = decode_payload_bounded(what, buf, cap)?;
    if payload.len() as u64 != raw_len {
        return Err(FormatError::invalid(
            what,
            format!(
                "payload is {} bytes, index records {raw_len}",
                payload.len()
            ),
        ));
    }
    Ok(payload)
}

/// Wraps a payload as `codec || body` with compression when it pays, for sealed objects.
pub(crate) fn encode_payload(payload: &[u8], zstd_level: i32) -> Vec<u8> {
    let (codec, compressed) = compress(payload, zstd_level);
    let body = compressed.as_deref().unwrap_or(payload);
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(codec);
    out.extend_from_slice(body);
    out
}

/// Decodes `codec || body` without a known length, bounded by `max_len` bytes of output.
pub(crate) fn decode_payload_bounded(
    what: &'static str,
    mut buf: Vec<u8>,
    max_len: usize,
) -> Result<Vec<u8>, FormatError> {
    let Some(&codec) = buf.first() else {
        return Err(FormatError::Truncated {
            what,
            need: 1,
            have: 0,
        });
    };
    match codec {
        CODEC_NONE => {
            buf.drain(..1);
            Ok(buf)
        }
        CODEC_ZSTD => {
            let len = zstd::bulk::Decompressor::upper_bound(&buf[1..])
                .unwrap_or(max_len)
                .min(max_len);
            zstd::bulk::decompress(&buf[1..], len).map_err(|e| {
                FormatError::invalid(what, format!("zstd payload does not decompress: {e}"))
            })
        }
        other => Err(FormatError::invalid(
            what,
            format!("unknown compression codec {other}"),
        )),
    }
}
