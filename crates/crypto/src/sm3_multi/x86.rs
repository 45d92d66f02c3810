//! The SM3 compression function on eight messages at once with AVX2 or AVX-512VL.
//!
//! Each 256-bit vector holds one 32-bit word of eight independent messages ("word-sliced"):
//! lane `l` of every vector belongs to message `l`. The eight 64-byte blocks are loaded as
//! rows (two 256-bit loads each), byte-swapped with `vpshufb` (SM3 words are big-endian)
//! and transposed with an 8×8 transpose of 32-bit words (`unpack{lo,hi}_epi32`,
//! `unpack{lo,hi}_epi64`, `permute2x128`), so that vector `w[i]` holds word `i` of all eight
//! blocks. The message expansion (`W[0..68]`, `W'[j] = W[j] ^ W[j+4]`) and the 64 rounds are
//! then the scalar algorithm with every operation on vectors; AVX2 has no rotate, so a rotation
//! is two shifts and an OR, or one byte shuffle where the amount is a multiple of eight.
//!
//! With AVX-512VL (still on 256-bit vectors) the same code gets two more instructions:
//! `vprold`, a rotation in one instruction, and `vpternlogd`, any boolean function of three
//! inputs in one (`FF`, `GG`, the three-way XORs of `P0`, `P1` and the message expansion).
//! Counted by hand, a round then takes about 20 vector operations instead of 37; measured on
//! Zen 4 it is 1.24× faster (1.71 against 1.37 GiB/s), since each lane's rounds are a chain of
//! dependent operations and the chain shortens less than the count. One macro,
//! [`compress8_body`], writes both versions; each names its rotation and boolean helpers.
//!
//! There is no branch and no memory access that depends on the data: the round constants
//! `T_j <<< j` are indexed by the round number only.

use core::arch::x86_64::*;

use super::LANES;

/// Word-sliced chaining values of eight messages: `state[i][l]` is word `i` of lane `l`.
pub(super) type State8 = [[u32; LANES]; 8];

/// The round constants `T_j <<< (j mod 32)` (GB/T 32905 §4.2 and §5.3.3).
const T_ROT: [u32; 64] = {
    let mut t = [0u32; 64];
    let mut j = 0;
    while j < 64 {
        let base: u32 = if j < 16 { 0x79cc_4519 } else { 0x7a87_9d8a };
        t[j] = base.rotate_left((j % 32) as u32);
        j += 1;
    }
    t
};

/// Proof that the CPU has AVX2: only [`Avx2::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx2(());

impl Avx2 {
    /// `Some` if this CPU supports AVX2 (detection is cached by `std`).
    pub(super) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    /// Compresses `blocks[l]` into lane `l` of `state`, for the eight lanes.
    #[inline]
    pub(super) fn compress8(self, state: &mut State8, blocks: &[&[u8; 64]; LANES]) {
        // SAFETY: an `Avx2` exists only after `is_x86_feature_detected!("avx2")` said yes.
        unsafe { compress8_avx2(state, blocks) }
    }
}

/// Proof that the CPU has AVX2, AVX-512F and AVX-512VL: only [`Avx512::detect`] makes one.
#[derive(Clone, Copy, Debug)]
pub(super) struct Avx512(());

impl Avx512 {
    /// `Some` if this CPU supports AVX2, AVX-512F and AVX-512VL (detection is cached by `std`).
    pub(super) fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl"))
        .then_some(Avx512(()))
    }

    /// Compresses `blocks[l]` into lane `l` of `state`, for the eight lanes.
    #[inline]
    pub(super) fn compress8(self, state: &mut State8, blocks: &[&[u8; 64]; LANES]) {
        // SAFETY: an `Avx512` exists only after `is_x86_feature_detected!` said yes to AVX2,
        // AVX-512F and AVX-512VL, every feature `compress8_avx512` is compiled for.
        unsafe { compress8_avx512(state, blocks) }
    }
}

/// `x <<< n` on each 32-bit lane.
macro_rules! rol {
    ($x:expr, $n:literal) => {{
        let x = $x;
        _mm256_or_si256(
            _mm256_slli_epi32::<$n>(x),
            _mm256_srli_epi32::<{ 32 - $n }>(x),
        )
    }};
}

#[target_feature(enable = "avx2")]
#[inline]
fn xor(a: __m256i, b: __m256i) -> __m256i {
    _mm256_xor_si256(a, b)
}

#[target_feature(enable = "avx2")]
#[inline]
fn add(a: __m256i, b: __m256i) -> __m256i {
    _mm256_add_epi32(a, b)
}

/// `x <<< 8` on each 32-bit lane: a byte shuffle, one instruction instead of three.
#[target_feature(enable = "avx2")]
#[inline]
fn rol8(x: __m256i) -> __m256i {
    _mm256_shuffle_epi8(
        x,
        _mm256_setr_epi8(
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14, //
            3, 0, 1, 2, 7, 4, 5, 6, 11, 8, 9, 10, 15, 12, 13, 14,
        ),
    )
}

/// `P0(x) = x ^ (x <<< 9) ^ (x <<< 17)`, with `x <<< 17 = (x <<< 9) <<< 8`.
#[target_feature(enable = "avx2")]
#[inline]
fn p0(x: __m256i) -> __m256i {
    let r9 = rol!(x, 9);
    xor(xor(x, r9), rol8(r9))
}

/// `P1(x) = x ^ (x <<< 15) ^ (x <<< 23)`, with `x <<< 23 = (x <<< 15) <<< 8`.
#[target_feature(enable = "avx2")]
#[inline]
fn p1(x: __m256i) -> __m256i {
    let r15 = rol!(x, 15);
    xor(xor(x, r15), rol8(r15))
}

/// `FF_j` and `GG_j` for `j < 16`: `x ^ y ^ z`.
#[target_feature(enable = "avx2")]
#[inline]
fn xor3(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    xor(xor(x, y), z)
}

/// `FF_j` for `j >= 16`: the majority function, `(x & y) | (z & (x | y))`.
#[target_feature(enable = "avx2")]
#[inline]
fn maj(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    _mm256_or_si256(
        _mm256_and_si256(x, y),
        _mm256_and_si256(z, _mm256_or_si256(x, y)),
    )
}

/// `GG_j` for `j >= 16`: the choice function, `(x & y) | (!x & z) = ((y ^ z) & x) ^ z`.
#[target_feature(enable = "avx2")]
#[inline]
fn ch(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    xor(_mm256_and_si256(xor(y, z), x), z)
}

/// `x <<< n` on each 32-bit lane with AVX-512VL: one `vprold`.
macro_rules! rol512 {
    ($x:expr, $n:literal) => {
        _mm256_rol_epi32::<$n>($x)
    };
}

/// `x ^ y ^ z` in one `vpternlogd` (truth table 0x96).
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[inline]
fn xor3_512(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    _mm256_ternarylogic_epi32::<0x96>(x, y, z)
}

/// The majority of `x`, `y`, `z` in one `vpternlogd` (truth table 0xe8).
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[inline]
fn maj512(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    _mm256_ternarylogic_epi32::<0xe8>(x, y, z)
}

/// `x ? y : z` bit by bit in one `vpternlogd` (truth table 0xca).
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[inline]
fn ch512(x: __m256i, y: __m256i, z: __m256i) -> __m256i {
    _mm256_ternarylogic_epi32::<0xca>(x, y, z)
}

/// `P0(x) = x ^ (x <<< 9) ^ (x <<< 17)`: two rotations and one three-way XOR.
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[inline]
fn p0_512(x: __m256i) -> __m256i {
    xor3_512(x, rol512!(x, 9), rol512!(x, 17))
}

/// `P1(x) = x ^ (x <<< 15) ^ (x <<< 23)`: two rotations and one three-way XOR.
#[target_feature(enable = "avx2,avx512f,avx512vl")]
#[inline]
fn p1_512(x: __m256i) -> __m256i {
    xor3_512(x, rol512!(x, 15), rol512!(x, 23))
}

/// Transposes an 8×8 matrix of 32-bit words: `out[i]` lane `l` = `r[l]` lane `i`.
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8(r: &[__m256i; 8], out: &mut [__m256i]) {
    // Per 128-bit half: pairs of rows interleaved by word, then by pairs of words.
    let t0 = _mm256_unpacklo_epi32(r[0], r[1]); // r0w0 r1w0 r0w1 r1w1 | r0w4 r1w4 r0w5 r1w5
    let t1 = _mm256_unpackhi_epi32(r[0], r[1]); // r0w2 r1w2 r0w3 r1w3 | r0w6 r1w6 r0w7 r1w7
    let t2 = _mm256_unpacklo_epi32(r[2], r[3]);
    let t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    let t4 = _mm256_unpacklo_epi32(r[4], r[5]);
    let t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    let t6 = _mm256_unpacklo_epi32(r[6], r[7]);
    let t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    let u0 = _mm256_unpacklo_epi64(t0, t2); // r0..3 w0 | r0..3 w4
    let u1 = _mm256_unpackhi_epi64(t0, t2); // r0..3 w1 | r0..3 w5
    let u2 = _mm256_unpacklo_epi64(t1, t3); // r0..3 w2 | r0..3 w6
    let u3 = _mm256_unpackhi_epi64(t1, t3); // r0..3 w3 | r0..3 w7
    let u4 = _mm256_unpacklo_epi64(t4, t6); // r4..7 w0 | r4..7 w4
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    // Low halves together give words 0..3, high halves words 4..7.
    out[0] = _mm256_permute2x128_si256::<0x20>(u0, u4);
    out[1] = _mm256_permute2x128_si256::<0x20>(u1, u5);
    out[2] = _mm256_permute2x128_si256::<0x20>(u2, u6);
    out[3] = _mm256_permute2x128_si256::<0x20>(u3, u7);
    out[4] = _mm256_permute2x128_si256::<0x31>(u0, u4);
    out[5] = _mm256_permute2x128_si256::<0x31>(u1, u5);
    out[6] = _mm256_permute2x128_si256::<0x31>(u2, u6);
    out[7] = _mm256_permute2x128_si256::<0x31>(u3, u7);
}

/// Loads bytes `OFF..OFF + 32` of `block` and byte-swaps each 32-bit word.
#[target_feature(enable = "avx2")]
#[inline]
fn load_be<const OFF: usize>(block: &[u8; 64], bswap: __m256i) -> __m256i {
    let bytes = &block[OFF..OFF + 32];
    // SAFETY: `bytes` is 32 readable bytes and `loadu` has no alignment requirement.
    _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }, bswap)
}

/// One round, `$ff`/`$gg` being the boolean functions of the round's half, `$j` its number.
///
/// Rather than shifting the eight words along, the round writes its results into the slots
/// whose old values are no longer needed: `TT1` (the new `A`) into `D`, `P0(TT2)` (the new
/// `E`) into `H`, `B <<< 9` (the new `C`) into `B`, `F <<< 19` (the new `G`) into `F`. The
/// next round therefore names the slots `(D, A, B, C, H, E, F, G)`, and after four rounds
/// the names are back where they started.
macro_rules! round {
    ($rol:ident, $p0:ident, $ff:ident, $gg:ident, $w:ident, $j:expr,
     $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {{
        let j = $j;
        let a12 = $rol!($a, 12);
        let ss1 = $rol!(add(add(a12, $e), _mm256_set1_epi32(T_ROT[j] as i32)), 7);
        let ss2 = xor(ss1, a12);
        let tt1 = add(add(add($ff($a, $b, $c), $d), xor($w[j], $w[j + 4])), ss2);
        let tt2 = add(add(add($gg($e, $f, $g), $h), $w[j]), ss1);
        $b = $rol!($b, 9);
        $d = tt1;
        $f = $rol!($f, 19);
        $h = $p0(tt2);
    }};
}

/// Four rounds from round `$j` on, ending with the slots named as at the start.
macro_rules! four_rounds {
    ($rol:ident, $p0:ident, $ff:ident, $gg:ident, $w:ident, $j:expr,
     $a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident) => {{
        let j = $j;
        round!($rol, $p0, $ff, $gg, $w, j, $a, $b, $c, $d, $e, $f, $g, $h);
        round!(
            $rol,
            $p0,
            $ff,
            $gg,
            $w,
            j + 1,
            $d,
            $a,
            $b,
            $c,
            $h,
            $e,
            $f,
            $g
        );
        round!(
            $rol,
            $p0,
            $ff,
            $gg,
            $w,
            j + 2,
            $c,
            $d,
            $a,
            $b,
            $g,
            $h,
            $e,
            $f
        );
        round!(
            $rol,
            $p0,
            $ff,
            $gg,
            $w,
            j + 3,
            $b,
            $c,
            $d,
            $a,
            $f,
            $g,
            $h,
            $e
        );
    }};
}

/// The body of the compression function `CF` (GB/T 32905 §5.3.3) on eight lanes, written
/// with the given rotation macro and helpers: `$xor3`, `$maj` and `$ch` the boolean
/// functions, `$p0` and `$p1` the permutations.
macro_rules! compress8_body {
    ($state:ident, $blocks:ident, $rol:ident, $xor3:ident, $maj:ident, $ch:ident,
     $p0:ident, $p1:ident) => {{
        let bswap = _mm256_setr_epi8(
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, //
            3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
        );
        let mut lo = [_mm256_setzero_si256(); LANES];
        let mut hi = [_mm256_setzero_si256(); LANES];
        for l in 0..LANES {
            lo[l] = load_be::<0>($blocks[l], bswap);
            hi[l] = load_be::<32>($blocks[l], bswap);
        }

        // Message expansion: W[0..68]; W'[j] = W[j] ^ W[j + 4] is formed in the rounds.
        let mut w = [_mm256_setzero_si256(); 68];
        transpose8(&lo, &mut w[..8]);
        transpose8(&hi, &mut w[8..16]);
        for j in 16..68 {
            let x = $xor3(w[j - 16], w[j - 9], $rol!(w[j - 3], 15));
            w[j] = $xor3($p1(x), $rol!(w[j - 13], 7), w[j - 6]);
        }

        let mut v = [_mm256_setzero_si256(); 8];
        for i in 0..8 {
            // SAFETY: `state[i]` is 32 readable bytes; `loadu` has no alignment requirement.
            v[i] = unsafe { _mm256_loadu_si256($state[i].as_ptr().cast()) };
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = v;
        for j in (0..16).step_by(4) {
            four_rounds!($rol, $p0, $xor3, $xor3, w, j, a, b, c, d, e, f, g, h);
        }
        for j in (16..64).step_by(4) {
            four_rounds!($rol, $p0, $maj, $ch, w, j, a, b, c, d, e, f, g, h);
        }
        let out = [a, b, c, d, e, f, g, h];
        for i in 0..8 {
            // SAFETY: `state[i]` is 32 writable bytes; `storeu` has no alignment requirement.
            unsafe { _mm256_storeu_si256($state[i].as_mut_ptr().cast(), xor(out[i], v[i])) };
        }
    }};
}

/// The compression function `CF` (GB/T 32905 §5.3.3) on eight lanes, with AVX2.
#[target_feature(enable = "avx2")]
fn compress8_avx2(state: &mut State8, blocks: &[&[u8; 64]; LANES]) {
    compress8_body!(state, blocks, rol, xor3, maj, ch, p0, p1);
}

/// The compression function `CF` (GB/T 32905 §5.3.3) on eight lanes, with AVX-512VL.
#[target_feature(enable = "avx2,avx512f,avx512vl")]
fn compress8_avx512(state: &mut State8, blocks: &[&[u8; 64]; LANES]) {
    compress8_body!(
        state, blocks, rol512, xor3_512, maj512, ch512, p0_512, p1_512
    );
}
