//! SM4 with AES-NI, or GFNI, on x86-64.
//!
//! # The S-box
//!
//! SM4's S-box is `S(x) = A·inv(A·x ⊕ c) ⊕ c` with inversion in GF(2^8) modulo
//! `x^8+x^7+x^6+x^5+x^4+x^2+1`; AES's is `M·inv'(x) ⊕ 0x63` with inversion modulo
//! `x^8+x^4+x^3+x+1`. A field isomorphism `T` (sending the SM4 field's generator to
//! the root `0x23` of SM4's polynomial in the AES field) gives `inv = T⁻¹·inv'·T`, so
//!
//! ```text
//! S(x) = Q(AesSubBytes(P(x)))   with   P(x) = T·(A·x ⊕ c)
//!                                      Q(u) = A·T⁻¹·M⁻¹·(u ⊕ 0x63) ⊕ c
//! ```
//!
//! `P` and `Q` are affine over GF(2), so each splits into two 16-entry tables indexed by
//! the low and high nibble of a byte; `pshufb` looks them up 16 bytes at a time in
//! registers. `aesenclast` with a zero round key computes `ShiftRows(SubBytes(·))`; in the
//! rounds, the `InvShiftRows` that puts the bytes back is merged into the byte shuffles of
//! the linear transform `L` that follows.
//! The tables were derived offline (GF(2^8) arithmetic, exhaustive search for the
//! isomorphism); `tests::simd_sbox_matches_standard` checks all 256 inputs, and
//! `tests::nibble_tables_derivation` re-derives them.
//!
//! # With GFNI
//!
//! `gf2p8affineqb` applies an affine map to every byte, and `gf2p8affineinvqb` inverts each
//! byte in the AES field and then applies one. So `P` is one instruction, and AES's own
//! affine map and `Q` fold into the second: `S(x) = R(inv'(P(x)))` with
//! `R = Q ∘ (v ↦ M·v ⊕ 0x63)`. The two 8×8 matrices and constants are computed at compile time
//! from the nibble tables (`GFNI_PRE`, `GFNI_POST`). No `aesenclast` means no `ShiftRows`, so
//! `L` works on the bytes where they are, with AVX-512VL's one-instruction rotations. On the
//! benchmark machine's Intel Xeon this made SM4-GCM about 1.5× as fast as the VAES path
//! (1.18 against 0.78 GiB/s on 64 KiB; `docs/BENCHMARKS.md`). The tests compare every implementation the CPU has with the
//! portable cipher and the standard's vectors.
//!
//! # Layout
//!
//! Blocks are word-sliced: after a byte swap and a 4×4 transpose, vector `x[i]` holds word
//! `i` of 4 blocks (per 128-bit lane), so a round is the same few vector operations for
//! all of them. Several independent groups run interleaved to hide `aesenclast` latency.

use core::arch::x86_64::*;

use sm4::cipher::consts::U16;
use sm4::cipher::{
    Block, BlockCipherEncBackend, BlockCipherEncClosure, BlockSizeUser, InOut, InOutBuf, ParBlocks,
    ParBlocksSizeUser,
};
use zeroize::Zeroize;

use super::Sm4Impl;

type B16 = [u8; 16];
type Blk = Block<SseBackend<'static>>;

/// `P` on the low / high nibble (`P(x) = PRE_LO[x & 15] ^ PRE_HI[x >> 4]`).
pub(super) const PRE_LO: B16 = [
    0x3e, 0xb2, 0x0e, 0x82, 0xbb, 0x37, 0x8b, 0x07, 0xa1, 0x2d, 0x91, 0x1d, 0x24, 0xa8, 0x14, 0x98,
];
pub(super) const PRE_HI: B16 = [
    0x00, 0xdc, 0x2e, 0xf2, 0xc5, 0x19, 0xeb, 0x37, 0x08, 0xd4, 0x26, 0xfa, 0xcd, 0x11, 0xe3, 0x3f,
];
/// `Q` on the low / high nibble.
pub(super) const POST_LO: B16 = [
    0x6c, 0xd4, 0xa6, 0x1e, 0x52, 0xea, 0x98, 0x20, 0x0b, 0xb3, 0xc1, 0x79, 0x35, 0x8d, 0xff, 0x47,
];
pub(super) const POST_HI: B16 = [
    0x00, 0xe0, 0x50, 0xb0, 0x9d, 0x7d, 0xcd, 0x2d, 0xc0, 0x20, 0x90, 0x70, 0x5d, 0xbd, 0x0d, 0xed,
];
/// AES `InvShiftRows` as a `pshufb` index (AES state bytes are column-major).
const INV_SHIFT_ROWS: B16 = [0, 13, 10, 7, 4, 1, 14, 11, 8, 5, 2, 15, 12, 9, 6, 3];
/// Byte-swap each 32-bit word (SM4 words are big-endian).
const BSWAP32: B16 = [3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12];
/// `InvShiftRows` followed by a rotation of each 32-bit lane left by 8, 16, 24 bits: `L`
/// reads the `aesenclast` output (still in `ShiftRows` order) through these.
const ISR_ROL8: B16 = [7, 0, 13, 10, 11, 4, 1, 14, 15, 8, 5, 2, 3, 12, 9, 6];
const ISR_ROL16: B16 = [10, 7, 0, 13, 14, 11, 4, 1, 2, 15, 8, 5, 6, 3, 12, 9];
const ISR_ROL24: B16 = [13, 10, 7, 0, 1, 14, 11, 4, 5, 2, 15, 8, 9, 6, 3, 12];

const FK: [u32; 4] = [0xa3b1_bac6, 0x56aa_3350, 0x677d_9197, 0xb270_22dc];

/// `CK[i]` has bytes `(4i + j) · 7 mod 256`, `j = 0..4`, most significant first.
const CK: [u32; 32] = {
    let mut ck = [0u32; 32];
    let mut i = 0;
    while i < 32 {
        let mut j = 0;
        while j < 4 {
            ck[i] = (ck[i] << 8) | (((4 * i + j) * 7) % 256) as u32;
            j += 1;
        }
        i += 1;
    }
    ck
};

/// A 16-byte constant as a vector.
#[target_feature(enable = "sse2")]
#[inline]
fn v128(t: B16) -> __m128i {
    let lo = u64::from_le_bytes([t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]]);
    let hi = u64::from_le_bytes([t[8], t[9], t[10], t[11], t[12], t[13], t[14], t[15]]);
    _mm_set_epi64x(hi as i64, lo as i64)
}

// ---------------------------------------------------------------- 128-bit lanes

/// The affine map with nibble tables `lo`, `hi` on each byte.
#[target_feature(enable = "ssse3")]
#[inline]
fn affine128(x: __m128i, lo: B16, hi: B16) -> __m128i {
    let m = _mm_set1_epi8(0x0f);
    let l = _mm_shuffle_epi8(v128(lo), _mm_and_si128(x, m));
    let h = _mm_shuffle_epi8(v128(hi), _mm_and_si128(_mm_srli_epi16::<4>(x), m));
    _mm_xor_si128(l, h)
}

/// The SM4 S-box on each of 16 bytes, the result permuted by AES `ShiftRows`.
#[target_feature(enable = "ssse3,aes")]
#[inline]
fn sbox128_sr(x: __m128i) -> __m128i {
    let u = _mm_aesenclast_si128(affine128(x, PRE_LO, PRE_HI), _mm_setzero_si128());
    affine128(u, POST_LO, POST_HI)
}

/// The SM4 S-box on each of 16 bytes.
#[target_feature(enable = "ssse3,aes")]
#[inline]
pub(super) fn sbox128(x: __m128i) -> __m128i {
    _mm_shuffle_epi8(sbox128_sr(x), v128(INV_SHIFT_ROWS))
}

/// SM4's linear transform `L` on each 32-bit lane of `InvShiftRows(v)`, using
/// `B ^ rol(B,2) ^ rol(B,10) ^ rol(B,18) ^ rol(B,24) = B ^ rol(B,24) ^ rol(B ^ rol(B,8) ^ rol(B,16), 2)`;
/// the byte permutations are merged into one `pshufb` each.
#[target_feature(enable = "ssse3")]
#[inline]
fn l128_sr(v: __m128i) -> __m128i {
    let b = _mm_shuffle_epi8(v, v128(INV_SHIFT_ROWS));
    let t = _mm_xor_si128(
        b,
        _mm_xor_si128(
            _mm_shuffle_epi8(v, v128(ISR_ROL8)),
            _mm_shuffle_epi8(v, v128(ISR_ROL16)),
        ),
    );
    let t = _mm_or_si128(_mm_slli_epi32::<2>(t), _mm_srli_epi32::<30>(t));
    _mm_xor_si128(_mm_xor_si128(b, _mm_shuffle_epi8(v, v128(ISR_ROL24))), t)
}

/// Transposes a 4×4 matrix of 32-bit words (rows → columns, per 128-bit lane).
macro_rules! transpose4 {
    ($unlo32:ident, $unhi32:ident, $unlo64:ident, $unhi64:ident, $a:expr, $b:expr, $c:expr, $d:expr) => {{
        let (a, b, c, d) = ($a, $b, $c, $d);
        let t0 = $unlo32(a, b);
        let t1 = $unlo32(c, d);
        let t2 = $unhi32(a, b);
        let t3 = $unhi32(c, d);
        (
            $unlo64(t0, t1),
            $unhi64(t0, t1),
            $unlo64(t2, t3),
            $unhi64(t2, t3),
        )
    }};
}

/// The 32 rounds on word-sliced state `x[word][group]`; `$t` is `L ∘ S-box` on a vector.
macro_rules! rounds {
    ($x:ident, $rk:ident, $splat:ident, $xor:ident, $t:expr) => {
        for r in 0..8 {
            rounds!(@one $x, $splat($rk[4 * r] as i32), $xor, $t, 0, 1, 2, 3);
            rounds!(@one $x, $splat($rk[4 * r + 1] as i32), $xor, $t, 1, 2, 3, 0);
            rounds!(@one $x, $splat($rk[4 * r + 2] as i32), $xor, $t, 2, 3, 0, 1);
            rounds!(@one $x, $splat($rk[4 * r + 3] as i32), $xor, $t, 3, 0, 1, 2);
        }
    };
    (@one $x:ident, $k:expr, $xor:ident, $t:expr, $a:literal, $b:literal, $c:literal, $d:literal) => {
        let k = $k;
        for g in 0..G {
            let s = $xor($xor($x[$b][g], $x[$c][g]), $xor($x[$d][g], k));
            $x[$a][g] = $xor($x[$a][g], $t(s));
        }
    };
}

/// Encrypts `G` groups of 4 blocks in place with 128-bit vectors (`blocks.len() == 4 * G`).
#[target_feature(enable = "ssse3,aes")]
fn encrypt_sse<const G: usize>(rk: &[u32; 32], blocks: &mut [Blk]) {
    let bswap = v128(BSWAP32);
    let mut x = [[_mm_setzero_si128(); G]; 4];
    for g in 0..G {
        let ld = |b: &Blk| {
            // SAFETY: `b` is 16 readable bytes and `loadu` has no alignment requirement.
            _mm_shuffle_epi8(unsafe { _mm_loadu_si128(b.as_ptr().cast()) }, bswap)
        };
        let bl = &blocks[4 * g..4 * g + 4];
        let (a, b, c, d) = (ld(&bl[0]), ld(&bl[1]), ld(&bl[2]), ld(&bl[3]));
        let (x0, x1, x2, x3) = transpose4!(
            _mm_unpacklo_epi32,
            _mm_unpackhi_epi32,
            _mm_unpacklo_epi64,
            _mm_unpackhi_epi64,
            a,
            b,
            c,
            d
        );
        (x[0][g], x[1][g], x[2][g], x[3][g]) = (x0, x1, x2, x3);
    }
    rounds!(x, rk, _mm_set1_epi32, _mm_xor_si128, |s| l128_sr(
        sbox128_sr(s)
    ));
    for g in 0..G {
        let (o0, o1, o2, o3) = transpose4!(
            _mm_unpacklo_epi32,
            _mm_unpackhi_epi32,
            _mm_unpacklo_epi64,
            _mm_unpackhi_epi64,
            x[3][g],
            x[2][g],
            x[1][g],
            x[0][g]
        );
        for (out, v) in blocks[4 * g..4 * g + 4].iter_mut().zip([o0, o1, o2, o3]) {
            // SAFETY: `out` is 16 writable bytes and `storeu` has no alignment requirement.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), _mm_shuffle_epi8(v, bswap)) };
        }
    }
}

// ---------------------------------------------------------------- 256-bit lanes

#[target_feature(enable = "avx2")]
#[inline]
fn v256(t: B16) -> __m256i {
    _mm256_broadcastsi128_si256(v128(t))
}

#[target_feature(enable = "avx2")]
#[inline]
fn affine256(x: __m256i, lo: B16, hi: B16) -> __m256i {
    let m = _mm256_set1_epi8(0x0f);
    let l = _mm256_shuffle_epi8(v256(lo), _mm256_and_si256(x, m));
    let h = _mm256_shuffle_epi8(v256(hi), _mm256_and_si256(_mm256_srli_epi16::<4>(x), m));
    _mm256_xor_si256(l, h)
}

/// The SM4 S-box on 32 bytes in `ShiftRows` order, `aesenclast` on each 128-bit half.
#[target_feature(enable = "avx2,aes")]
#[inline]
fn sbox256_aesni(x: __m256i) -> __m256i {
    let y = affine256(x, PRE_LO, PRE_HI);
    let z = _mm_setzero_si128();
    let lo = _mm_aesenclast_si128(_mm256_castsi256_si128(y), z);
    let hi = _mm_aesenclast_si128(_mm256_extracti128_si256::<1>(y), z);
    affine256(_mm256_set_m128i(hi, lo), POST_LO, POST_HI)
}

/// The SM4 S-box on 32 bytes in `ShiftRows` order, with one VAES `aesenclast`.
#[target_feature(enable = "avx2,aes,vaes")]
#[inline]
fn sbox256_vaes(x: __m256i) -> __m256i {
    let y = affine256(x, PRE_LO, PRE_HI);
    let u = _mm256_aesenclast_epi128(y, _mm256_setzero_si256());
    affine256(u, POST_LO, POST_HI)
}

/// `L` on each 32-bit lane of `InvShiftRows(v)` (see [`l128_sr`]).
#[target_feature(enable = "avx2")]
#[inline]
fn l256_sr(v: __m256i) -> __m256i {
    let b = _mm256_shuffle_epi8(v, v256(INV_SHIFT_ROWS));
    let t = _mm256_xor_si256(
        b,
        _mm256_xor_si256(
            _mm256_shuffle_epi8(v, v256(ISR_ROL8)),
            _mm256_shuffle_epi8(v, v256(ISR_ROL16)),
        ),
    );
    let t = _mm256_or_si256(_mm256_slli_epi32::<2>(t), _mm256_srli_epi32::<30>(t));
    _mm256_xor_si256(
        _mm256_xor_si256(b, _mm256_shuffle_epi8(v, v256(ISR_ROL24))),
        t,
    )
}

// ---------------------------------------------------------------- GFNI

/// `P` (see the module documentation) on one byte, from its nibble tables.
const fn pre(x: u8) -> u8 {
    PRE_LO[(x & 15) as usize] ^ PRE_HI[(x >> 4) as usize]
}

/// AES's affine map after inversion: `M·v ⊕ 0x63` (FIPS 197 §5.1.1).
const fn aes_affine(v: u8) -> u8 {
    v ^ v.rotate_left(1) ^ v.rotate_left(2) ^ v.rotate_left(3) ^ v.rotate_left(4) ^ 0x63
}

/// `R = Q ∘ aes_affine`, so that `S(x) = R(inv'(P(x)))`: AES's `SubBytes` is
/// `aes_affine ∘ inv'`, and `Q(SubBytes(P(x)))` is the SM4 S-box.
const fn post_inv(v: u8) -> u8 {
    let u = aes_affine(v);
    POST_LO[(u & 15) as usize] ^ POST_HI[(u >> 4) as usize]
}

/// The operand of `gf2p8affineqb` for the linear part of the affine map whose images of
/// `0` and of the eight unit bytes are `zero` and `unit[k]`. Bit `i` of the instruction's
/// result is the parity of `x` masked by byte `7 - i` of the operand, so that byte holds
/// row `i` of the matrix: bit `k` set when the image of bit `k` has bit `i`.
const fn gfni_matrix(zero: u8, unit: [u8; 8]) -> i64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < 8 {
        let mut row = 0u8;
        let mut k = 0;
        while k < 8 {
            row |= (((unit[k] ^ zero) >> i) & 1) << k;
            k += 1;
        }
        m |= (row as u64) << (8 * (7 - i));
        i += 1;
    }
    m as i64
}

/// The images of the eight unit bytes under `f`.
macro_rules! units {
    ($f:ident) => {
        [$f(1), $f(2), $f(4), $f(8), $f(16), $f(32), $f(64), $f(128)]
    };
}

/// `P`'s linear part as a `gf2p8affineqb` matrix.
pub(super) const GFNI_PRE: i64 = gfni_matrix(pre(0), units!(pre));
/// `P`'s constant, the instruction's immediate.
pub(super) const GFNI_PRE_C: i32 = pre(0) as i32;
/// `R`'s linear part as a `gf2p8affineinvqb` matrix (applied after the AES-field inversion).
pub(super) const GFNI_POST: i64 = gfni_matrix(post_inv(0), units!(post_inv));
/// `R`'s constant, the instruction's immediate.
pub(super) const GFNI_POST_C: i32 = post_inv(0) as i32;

/// The SM4 S-box on each of 32 bytes, in place: `gf2p8affineqb` applies `P`, and
/// `gf2p8affineinvqb` inverts in the AES field and applies `R`.
#[target_feature(enable = "avx2,gfni")]
#[inline]
fn sbox256_gfni(x: __m256i) -> __m256i {
    let y = _mm256_gf2p8affine_epi64_epi8::<GFNI_PRE_C>(x, _mm256_set1_epi64x(GFNI_PRE));
    _mm256_gf2p8affineinv_epi64_epi8::<GFNI_POST_C>(y, _mm256_set1_epi64x(GFNI_POST))
}

/// `L` on each 32-bit lane, with AVX-512VL rotations (the XORs become `vpternlogd`).
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[inline]
fn l256_rol(b: __m256i) -> __m256i {
    let x = _mm256_xor_si256(
        _mm256_xor_si256(b, _mm256_rol_epi32::<2>(b)),
        _mm256_rol_epi32::<10>(b),
    );
    _mm256_xor_si256(
        x,
        _mm256_xor_si256(_mm256_rol_epi32::<18>(b), _mm256_rol_epi32::<24>(b)),
    )
}

/// Defines an encryption of `G` groups of 8 blocks in place (`blocks.len() == 8 * G`) with
/// 256-bit vectors (blocks
/// `j` and `j + 4` of a group share a register, in the low and high 128-bit lane).
macro_rules! encrypt_avx2 {
    ($(#[$m:meta])* $name:ident, $t:expr, $features:literal) => {
        $(#[$m])*
        #[target_feature(enable = $features)]
        fn $name<const G: usize>(rk: &[u32; 32], blocks: &mut [Blk]) {
            let bswap = v256(BSWAP32);
            let mut x = [[_mm256_setzero_si256(); G]; 4];
            for g in 0..G {
                let ld = |b: &Blk| {
                    // SAFETY: `b` is 16 readable bytes; `loadu` has no alignment requirement.
                    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
                };
                let bl = &blocks[8 * g..8 * g + 8];
                let ld2 =
                    |j: usize| _mm256_shuffle_epi8(_mm256_set_m128i(ld(&bl[j + 4]), ld(&bl[j])), bswap);
                let (x0, x1, x2, x3) = transpose4!(
                    _mm256_unpacklo_epi32,
                    _mm256_unpackhi_epi32,
                    _mm256_unpacklo_epi64,
                    _mm256_unpackhi_epi64,
                    ld2(0),
                    ld2(1),
                    ld2(2),
                    ld2(3)
                );
                (x[0][g], x[1][g], x[2][g], x[3][g]) = (x0, x1, x2, x3);
            }
            rounds!(x, rk, _mm256_set1_epi32, _mm256_xor_si256, $t);
            for g in 0..G {
                let (o0, o1, o2, o3) = transpose4!(
                    _mm256_unpacklo_epi32,
                    _mm256_unpackhi_epi32,
                    _mm256_unpacklo_epi64,
                    _mm256_unpackhi_epi64,
                    x[3][g],
                    x[2][g],
                    x[1][g],
                    x[0][g]
                );
                for (j, v) in [o0, o1, o2, o3].into_iter().enumerate() {
                    let v = _mm256_shuffle_epi8(v, bswap);
                    let (lo, hi) = (_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
                    // SAFETY: each target is 16 writable bytes; `storeu` needs no alignment.
                    unsafe {
                        _mm_storeu_si128(blocks[8 * g + j].as_mut_ptr().cast(), lo);
                        _mm_storeu_si128(blocks[8 * g + j + 4].as_mut_ptr().cast(), hi);
                    }
                }
            }
        }
    };
}

encrypt_avx2!(
    encrypt_avx2_aesni,
    |s| l256_sr(sbox256_aesni(s)),
    "avx2,aes"
);
encrypt_avx2!(
    encrypt_avx2_vaes,
    |s| l256_sr(sbox256_vaes(s)),
    "avx2,aes,vaes"
);
encrypt_avx2!(
    /// With GFNI and AVX-512VL: the S-box in two instructions (see [`sbox256_gfni`]) and
    /// `L` with one-instruction rotations, in the bytes' own order.
    encrypt_avx512_gfni,
    |s| l256_rol(sbox256_gfni(s)),
    "avx2,gfni,avx512f,avx512vl"
);

// ---------------------------------------------------------------- key schedule

/// `τ` (the S-box on each byte of a word) via [`sbox128`].
#[target_feature(enable = "ssse3,aes")]
#[inline]
fn tau(a: u32) -> u32 {
    _mm_cvtsi128_si32(sbox128(_mm_cvtsi32_si128(a as i32))) as u32
}

/// The SM4 key schedule, with the vectorised (constant-time) S-box.
#[target_feature(enable = "ssse3,aes")]
fn expand_key(key: &[u8; 16]) -> [u32; 32] {
    let mut k = [0u32; 4];
    for (i, w) in k.iter_mut().enumerate() {
        let b = [key[4 * i], key[4 * i + 1], key[4 * i + 2], key[4 * i + 3]];
        *w = u32::from_be_bytes(b) ^ FK[i];
    }
    let mut rk = [0u32; 32];
    for (i, out) in rk.iter_mut().enumerate() {
        let b = tau(k[(i + 1) % 4] ^ k[(i + 2) % 4] ^ k[(i + 3) % 4] ^ CK[i]);
        k[i % 4] ^= b ^ b.rotate_left(13) ^ b.rotate_left(23);
        *out = k[i % 4];
    }
    k.zeroize();
    rk
}

// ---------------------------------------------------------------- cipher backends

/// Round keys plus the implementation chosen for them (never `Portable`).
#[derive(Clone)]
pub(super) struct Sm4Simd {
    rk: [u32; 32],
    imp: Sm4Impl,
}

impl Sm4Simd {
    /// `None` unless `imp` is a SIMD implementation this CPU supports.
    pub(super) fn new(key: &[u8; 16], imp: Sm4Impl) -> Option<Self> {
        if imp == Sm4Impl::Portable || !imp.is_supported() {
            return None;
        }
        // SAFETY: every SIMD implementation requires AES-NI and SSSE3, checked at runtime
        // by `is_supported` just above.
        let rk = unsafe { expand_key(key) };
        Some(Sm4Simd { rk, imp })
    }

    pub(super) fn implementation(&self) -> Sm4Impl {
        self.imp
    }

    pub(super) fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = U16>) {
        // Each backend may only be built for an `imp` that `new` verified this CPU supports.
        match self.imp {
            Sm4Impl::Avx512Gfni => f.call(&GfniBackend(&self.rk)),
            Sm4Impl::Avx2Vaes => f.call(&VaesBackend(&self.rk)),
            Sm4Impl::Avx2 => f.call(&Avx2Backend(&self.rk)),
            Sm4Impl::Ssse3 | Sm4Impl::Portable => f.call(&SseBackend(&self.rk)),
        }
    }
}

impl Zeroize for Sm4Simd {
    fn zeroize(&mut self) {
        self.rk.zeroize();
    }
}

/// Defines a backend encrypting 16 blocks per batch with `$par` (one call) and shorter
/// runs in zero-padded chunks of `$n` blocks with `$small`.
///
/// Soundness: `$par` and `$small` need the CPU features of the implementation the backend
/// stands for; `Sm4Simd::encrypt_with_backend` constructs a backend only for `self.imp`,
/// which `Sm4Simd::new` accepted only after detecting those features at runtime.
macro_rules! backend {
    ($name:ident, $n:literal, $par:expr, $small:expr) => {
        /// Encryption backend; only constructed after its CPU features were detected.
        struct $name<'a>(&'a [u32; 32]);

        impl BlockSizeUser for $name<'_> {
            type BlockSize = U16;
        }

        impl ParBlocksSizeUser for $name<'_> {
            type ParBlocksSize = U16;
        }

        impl BlockCipherEncBackend for $name<'_> {
            fn encrypt_block(&self, mut block: InOut<'_, '_, Block<Self>>) {
                let mut buf = [Blk::default(); $n];
                buf[0] = block.clone_in();
                // SAFETY: this backend exists only when the CPU has the features `$small`
                // needs (see the soundness note on `backend!`).
                unsafe { $small(self.0, &mut buf) };
                *block.get_out() = buf[0];
                buf.zeroize();
            }

            fn encrypt_par_blocks(&self, blocks: InOut<'_, '_, ParBlocks<Self>>) {
                let out = blocks.into_out_with_copied_in();
                // SAFETY: this backend exists only when the CPU has the features `$par`
                // needs (see the soundness note on `backend!`).
                unsafe { $par(self.0, out.as_mut_slice()) };
            }

            /// Fewer than 16 blocks (any number works).
            fn encrypt_tail_blocks(&self, blocks: InOutBuf<'_, '_, Block<Self>>) {
                let out = blocks.into_out_with_copied_in();
                let mut chunks = out.chunks_exact_mut($n);
                for chunk in &mut chunks {
                    // SAFETY: as above, for `$small`.
                    unsafe { $small(self.0, chunk) };
                }
                let rest = chunks.into_remainder();
                if !rest.is_empty() {
                    let mut buf = [Blk::default(); $n];
                    buf[..rest.len()].copy_from_slice(rest);
                    // SAFETY: as above, for `$small`.
                    unsafe { $small(self.0, &mut buf) };
                    rest.copy_from_slice(&buf[..rest.len()]);
                    buf.zeroize();
                }
            }
        }
    };
}

// AES-NI + SSSE3: four interleaved groups of 4 blocks.
backend!(SseBackend, 4, encrypt_sse::<4>, encrypt_sse::<1>);
// AES-NI + AVX2: two interleaved groups of 8 blocks.
backend!(
    Avx2Backend,
    8,
    encrypt_avx2_aesni::<2>,
    encrypt_avx2_aesni::<1>
);
// AES-NI + AVX2 + VAES: two interleaved groups of 8 blocks.
backend!(
    VaesBackend,
    8,
    encrypt_avx2_vaes::<2>,
    encrypt_avx2_vaes::<1>
);

// GFNI + AVX-512VL: two interleaved groups of 8 blocks.
backend!(
    GfniBackend,
    8,
    encrypt_avx512_gfni::<2>,
    encrypt_avx512_gfni::<1>
);

/// Test hook: the vectorised S-box on 16 bytes (`None` without AES-NI and SSSE3).
#[cfg(test)]
pub(super) fn sbox16(x: B16) -> Option<B16> {
    if !Sm4Impl::Ssse3.is_supported() {
        return None;
    }
    let mut out = [0u8; 16];
    // SAFETY: AES-NI and SSSE3 were detected just above; `out`/`x` are 16 bytes each and
    // `loadu`/`storeu` have no alignment requirement.
    unsafe { sbox16_inner(&x, &mut out) };
    Some(out)
}

#[cfg(test)]
#[target_feature(enable = "ssse3,aes")]
fn sbox16_inner(x: &B16, out: &mut B16) {
    // SAFETY: 16 readable / writable bytes, unaligned access allowed.
    unsafe {
        _mm_storeu_si128(
            out.as_mut_ptr().cast(),
            sbox128(_mm_loadu_si128(x.as_ptr().cast())),
        )
    };
}
