//! A blob as stored inside a pack: `nonce (12) || ciphertext || tag (16)`.
//!
//! The plaintext is `codec (1 byte) || payload`; codec 0 stores the payload as is, codec 1
//! holds one zstd frame of it. The AAD is `"zaibei v1 blob" || kind (1 byte) || blob id (32)`,
//! so storage cannot swap two validly encrypted blobs.

use std::cell::RefCell;

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

thread_local! {
    /// This thread's zstd compression context and its level: a context costs hundreds of
    /// kilobytes of tables to set up, too much to pay again for every small blob.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { RefCell::new(None) };
    /// This thread's zstd decompression context.
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Compresses `payload` with zstd at `level` if that saves at least 1/32 of it; returns the
/// codec byte and the bytes to store. A `level` of 0 disables compression.
pub fn compress(payload: &[u8], level: i32) -> (u8, Option<Vec<u8>>) {
    let mut out = Vec::new();
    match compress_into(payload, level, &mut out) {
        CODEC_ZSTD => (CODEC_ZSTD, Some(out)),
        codec => (codec, None),
    }
}

/// Like [`compress`], but the compressed bytes replace the contents of `out` (whose capacity is
/// kept for the next call); returns the codec. With [`CODEC_NONE`], `out` means nothing.
fn compress_into(payload: &[u8], level: i32, out: &mut Vec<u8>) -> u8 {
    out.clear();
    compress_onto(payload, level, out)
}

/// Appends `payload` compressed with zstd at `level` to `out` if that saves at least 1/32 of
/// it, and returns [`CODEC_ZSTD`]; otherwise leaves `out` as it was and returns
/// [`CODEC_NONE`]. zstd writes straight into `out`'s spare capacity: a pack being filled
/// receives its blobs without a second buffer or a copy.
fn compress_onto(payload: &[u8], level: i32, out: &mut Vec<u8>) -> u8 {
    if level == 0 || payload.len() < 64 {
        return CODEC_NONE;
    }
    let start = out.len();
    out.reserve(zstd::zstd_safe::compress_bound(payload.len()));
    let compressed = COMPRESSOR.with_borrow_mut(|slot| {
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level)?));
        }
        match slot {
            Some((_, c)) => {
                if !samples_compress(c, payload)? {
                    return Err(std::io::Error::other("the samples do not compress"));
                }
                // Written after what `out` holds, which stays as it is.
                let mut tail = std::io::Cursor::new(&mut *out);
                tail.set_position(start as u64);
                c.compress_to_buffer(payload, &mut tail)
            }
            None => Err(std::io::Error::other("no zstd context")),
        }
    });
    match compressed {
        Ok(len) if out.len() == start + len && len + payload.len() / 32 < payload.len() => {
            CODEC_ZSTD
        }
        _ => {
            out.truncate(start);
            CODEC_NONE
        }
    }
}

/// Payloads at least this large, and smaller than [`SAMPLED_MAX`], are compressed only if one
/// of [`SAMPLES`] samples of them compresses.
const SAMPLED_MIN: usize = 256 << 10;
/// Payloads this large are always tried whole: content-defined chunks this long are cut where
/// the chunker found no boundary, in long runs of repeated data, which zstd's window may
/// compress although every sample alone does not (copies of one small image, say).
const SAMPLED_MAX: usize = 4 << 20;
/// Samples taken of a large payload: at its start, middle and end.
const SAMPLES: usize = 3;
/// Bytes in each sample.
const SAMPLE_LEN: usize = 16 << 10;

/// Whether `payload` is worth compressing: always for one shorter than [`SAMPLED_MIN`] or at
/// least [`SAMPLED_MAX`]; for the others, when one of their samples (tried in turn: text stops
/// at the first) saves 1/32.
/// Random or already compressed data, whose compression zstd would try and give up over the
/// whole payload, costs three small samples instead. A payload whose samples all fall on
/// incompressible stretches is stored uncompressed even if it compresses elsewhere.
fn samples_compress(c: &mut zstd::bulk::Compressor<'_>, payload: &[u8]) -> std::io::Result<bool> {
    if !(SAMPLED_MIN..SAMPLED_MAX).contains(&payload.len()) {
        return Ok(true);
    }
    let mut scratch = Vec::with_capacity(zstd::zstd_safe::compress_bound(SAMPLE_LEN));
    let last = payload.len() - SAMPLE_LEN;
    for k in 0..SAMPLES {
        let at = last / (SAMPLES - 1) * k;
        scratch.clear();
        let len = c.compress_to_buffer(&payload[at..at + SAMPLE_LEN], &mut scratch)?;
        if len + SAMPLE_LEN / 32 < SAMPLE_LEN {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Decompresses one zstd frame of at most `capacity` bytes with this thread's context.
fn decompress(frame: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with_borrow_mut(|slot| {
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new()?);
        }
        match slot {
            Some(d) => d.decompress(frame, capacity),
            None => Err(std::io::Error::other("no zstd context")),
        }
    })
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
    let mut out = Vec::new();
    seal_blob_into(aead, kind, id, payload, zstd_level, &mut out)?;
    Ok(out)
}

/// Like [`seal_blob`], but appends the stored bytes to `out` (a pack being filled), compressed
/// straight into `out`'s spare capacity (room for [`sealed_len_bound`] is reserved first): no
/// second buffer and no copy of compressed bytes. Returns the stored length.
pub fn seal_blob_into(
    aead: &Aead,
    kind: PackKind,
    id: &Id,
    payload: &[u8],
    zstd_level: i32,
    out: &mut Vec<u8>,
) -> Result<usize, FormatError> {
    let nonce: [u8; NONCE_LEN] = random_array().map_err(|source| FormatError::Crypto {
        what: "blob",
        source,
    })?;
    let start = out.len();
    out.reserve(sealed_len_bound(payload.len()));
    out.extend_from_slice(&nonce);
    out.push(CODEC_NONE);
    let codec = compress_onto(payload, zstd_level, out);
    if codec == CODEC_NONE {
        out.extend_from_slice(payload);
    }
    out[start + NONCE_LEN] = codec;
    let tag = aead.seal_detached(&nonce, &aad(kind, id), &mut out[start + NONCE_LEN..]);
    out.extend_from_slice(&tag);
    Ok(out.len() - start)
}

/// The most bytes [`seal_blob_into`] appends for a payload of `payload_len` bytes, counting
/// room for zstd's worst case, which it reserves before compressing.
pub fn sealed_len_bound(payload_len: usize) -> usize {
    BLOB_OVERHEAD + zstd::zstd_safe::compress_bound(payload_len).max(payload_len)
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
            decompress(&buf[1..], len).map_err(|e| {
                FormatError::invalid(what, format!("zstd payload does not decompress: {e}"))
            })
        }
        other => Err(FormatError::invalid(
            what,
            format!("unknown compression codec {other}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_thread_context_follows_the_level_and_round_trips() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("line {} of {}\n", i % 977, i % 13).into_bytes())
            .collect();
        let mut sizes = Vec::new();
        for level in [1, 19, 1, 3] {
            let (codec, body) = compress(&text, level);
            assert_eq!(codec, CODEC_ZSTD);
            let Some(body) = body else {
                panic!("level {level}: not compressed");
            };
            let mut wrapped = vec![CODEC_ZSTD];
            wrapped.extend_from_slice(&body);
            let back = decode_payload("test", wrapped, text.len() as u64);
            assert_eq!(back.ok().as_deref(), Some(&text[..]), "level {level}");
            sizes.push(body.len());
        }
        // The context is rebuilt when the level changes: level 19 compresses better than 1,
        // and going back to 1 gives exactly the first result again.
        assert!(sizes[1] < sizes[0], "{sizes:?}");
        assert_eq!(sizes[2], sizes[0]);
        assert!(compress(&[7; 63], 3).1.is_none());
        assert!(compress(&text, 0).1.is_none());
    }

    #[test]
    fn large_payloads_are_compressed_only_when_a_sample_compresses() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut noise = |len: usize| -> Vec<u8> {
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 40) as u8
                })
                .collect()
        };
        let text = |len: usize| -> Vec<u8> {
            (0..len as u32)
                .flat_map(|i| format!("line {} of the text\n", i % 991).into_bytes())
                .take(len)
                .collect()
        };
        let mb = 1 << 20;
        // Random bytes: not compressed, and the samples alone decided it.
        let random = noise(mb);
        assert_eq!(compress(&random, 3).0, CODEC_NONE);
        let mut c = zstd::bulk::Compressor::new(3).unwrap();
        assert!(!samples_compress(&mut c, &random).unwrap());
        // Text anywhere a sample falls: compressed, whichever sample finds it.
        assert_eq!(compress(&text(mb), 3).0, CODEC_ZSTD);
        let mut tail_text = noise(mb / 2);
        tail_text.extend(text(mb / 2));
        assert_eq!(compress(&tail_text, 3).0, CODEC_ZSTD);
        let mut head_text = text(mb / 2);
        head_text.extend(noise(mb / 2));
        assert_eq!(compress(&head_text, 3).0, CODEC_ZSTD);
        // Below the sampled size every payload is tried whole.
        let mut small = noise(SAMPLED_MIN / 2 - 1000);
        small.extend(text(SAMPLED_MIN / 2));
        assert!(samples_compress(&mut c, &small).unwrap());
        assert_eq!(compress(&small, 3).0, CODEC_ZSTD);
        // Long chunks are tried whole: 8 MiB of one 64 KiB random block repeated compresses in
        // zstd's window, though no 16 KiB sample of it does.
        let block = noise(64 << 10);
        let repeated: Vec<u8> = block.iter().copied().cycle().take(8 * mb).collect();
        assert!(samples_compress(&mut c, &repeated).unwrap());
        assert_eq!(compress(&repeated, 3).0, CODEC_ZSTD);
        // The price: text only between the samples is stored as it is.
        let mut between = noise(mb);
        between[100 << 10..400 << 10].copy_from_slice(&text(300 << 10));
        assert_eq!(compress(&between, 3).0, CODEC_NONE);
    }

    #[test]
    fn blobs_sealed_one_after_the_other_into_a_buffer_open_from_their_slices() {
        let aead = Aead::new(
            zaibei_crypto::Suite::Gm,
            &zaibei_crypto::SecretKey::from_bytes([9; 32]),
        );
        let text: Vec<u8> = b"compressible ".repeat(500);
        let mut x = 0x9e37_79b9u32;
        let noise: Vec<u8> = (0..5000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 24) as u8
            })
            .collect();
        let blobs = [
            (Id([1; 32]), &text[..]),
            (Id([2; 32]), &noise[..]),
            (Id([3; 32]), &b""[..]),
        ];
        let mut pack = b"prefix".to_vec();
        let mut spans = Vec::new();
        for (id, payload) in &blobs {
            let start = pack.len();
            let n = seal_blob_into(&aead, PackKind::Data, id, payload, 3, &mut pack);
            assert_eq!(n.ok(), Some(pack.len() - start));
            spans.push(start..pack.len());
        }
        assert!(pack.starts_with(b"prefix"), "what the buffer held stays");
        assert!(spans[0].len() < text.len(), "the text was not compressed");
        assert_eq!(
            spans[1].len(),
            noise.len() + BLOB_OVERHEAD,
            "noise is stored as it is"
        );
        for ((_, payload), span) in blobs.iter().zip(&spans) {
            assert!(span.len() <= sealed_len_bound(payload.len()));
        }
        for ((id, payload), span) in blobs.iter().zip(spans) {
            let opened = open_blob(
                &aead,
                PackKind::Data,
                id,
                &pack[span.clone()],
                payload.len() as u64,
            );
            assert_eq!(opened.ok().as_deref(), Some(*payload));
            // Bound to its id: the same bytes under another id do not open.
            assert!(
                open_blob(
                    &aead,
                    PackKind::Data,
                    &Id([7; 32]),
                    &pack[span],
                    payload.len() as u64
                )
                .is_err()
            );
        }
    }
}
