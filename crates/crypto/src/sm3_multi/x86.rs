//! The SM3 compression function on eight messages at once with AVX2.
//!
//! Each 256-bit vector holds one 32-bit word of eight independent messages ("word-sliced"):
//! lane `l` of every vector belongs to message `l`. The eight 64-byte blocks are loaded as
//! rows (two 256-bit loads each), byte-swapped with `vpshufb` (SM3 words are big-endian)
//! and transposed with an 8×8 transpose of 32-bit words (`unpack{lo,hi}_epi32`,
//! `unpack{lo,hi}_epi64`, `permute2x128`), so that vector `w[i]` holds word `i` of all eight
//! blocks. The message expansion (`W[0..68]`, `W'[j] = W[j] ^ W[j+4]`) and the 64 rounds are
//! then the scalar algorithm with every operation on vectors; AVX2 has no rotate, so each
//! rotation is two shifts and an OR.
//!
//! There is no branch and no memory access that depends on the data: the round constants
//! `T_j <<< j` are indexed by the round number only.

use core::arch::x86_64::*;

use super::LANES;

/// Word-sliced chaining values of eight messages: `state[i][l]` is word `i` of lane `l`.
pub(super) type State8 = [[u32; 8]; LANES];

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

/// `P0(x) = x ^ (x <<< 9) ^ (x <<< 17)`.
#[target_feature(enable = "avx2")]
#[inline]
fn p0(x: __m256i) -> __m256i {
    xor(xor(x, rol!(x, 9)), rol!(x, 17))
}

/// `P1(x) = x ^ (x <<< 15) ^ (x <<< 23)`.
#[target_feature(enable = "avx2")]
#[inline]
fn p1(x: __m256i) -> __m256i {
    xor(xor(x, rol!(x, 15)), rol!(x, 23))
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

/// Transposes an 8×8 matrix of 32-bit words: `out[i]` lane `l` = `rows[l]` lane `i`.
#[target_feature(enable = "avx2")]
#[inline]
fn transpose8(r: &[__m256i; 8]) -> [__m256i; 8] {
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
    [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ]
}

/// Loads 32 bytes and byte-swaps each 32-bit word.
#[target_feature(enable = "avx2")]
#[inline]
fn load_be(bytes: &[u8; 32], bswap: __m256i) -> __m256i {
    // SAFETY: `bytes` is 32 readable bytes and `loadu` has no alignment requirement.
    _mm256_shuffle_epi8(unsafe { _mm256_loadu_si256(bytes.as_ptr().cast()) }, bswap)
}

/// One round: `$ff`/`$gg` are the boolean functions of the round's half, `$j` its number.
macro_rules! round {
    ($ff:expr, $gg:expr, $w:ident, $j:expr, $a:ident, $b:ident, $c:ident, $d:ident,
     $e:ident, $f:ident, $g:ident, $h:ident) => {{
        let j = $j;
        let a12 = rol!($a, 12);
        let ss1 = rol!(add(add(a12, $e), _mm256_set1_epi32(T_ROT[j] as i32)), 7);
        let ss2 = xor(ss1, a12);
        let tt1 = add(add(add($ff($a, $b, $c), $d), xor($w[j], $w[j + 4])), ss2);
        let tt2 = add(add(add($gg($e, $f, $g), $h), $w[j]), ss1);
        $d = $c;
        $c = rol!($b, 9);
        $b = $a;
        $a = tt1;
        $h = $g;
        $g = rol!($f, 19);
        $f = $e;
        $e = p0(tt2);
    }};
}

/// The compression function `CF` (GB/T 32905 §5.3.3) on eight lanes.
#[target_feature(enable = "avx2")]
fn compress8_avx2(state: &mut State8, blocks: &[&[u8; 64]; LANES]) {
    let bswap = _mm256_setr_epi8(
        3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, //
        3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12,
    );
    let mut lo = [_mm256_setzero_si256(); 8];
    let mut hi = [_mm256_setzero_si256(); 8];
    for ((lo, hi), block) in lo.iter_mut().zip(hi.iter_mut()).zip(blocks) {
        let (first, second) = block.split_at(32);
        // `split_at(32)` of 64 bytes: both halves are 32 bytes.
        let (Ok(first), Ok(second)) = (<&[u8; 32]>::try_from(first), second.try_into()) else {
            unreachable!("a 64-byte block splits into two 32-byte halves");
        };
        *lo = load_be(first, bswap);
        *hi = load_be(second, bswap);
    }

    // Message expansion: W[0..68]; W'[j] = W[j] ^ W[j + 4] is formed in the rounds.
    let mut w = [_mm256_setzero_si256(); 68];
    w[..8].copy_from_slice(&transpose8(&lo));
    w[8..16].copy_from_slice(&transpose8(&hi));
    for j in 16..68 {
        let x = xor(xor(w[j - 16], w[j - 9]), rol!(w[j - 3], 15));
        w[j] = xor(xor(p1(x), rol!(w[j - 13], 7)), w[j - 6]);
    }

    let v: [__m256i; 8] = core::array::from_fn(|i| {
        // SAFETY: `state[i]` is 32 readable bytes; `loadu` has no alignment requirement.
        unsafe { _mm256_loadu_si256(state[i].as_ptr().cast()) }
    });
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = v;
    for j in 0..16 {
        round!(xor3, xor3, w, j, a, b, c, d, e, f, g, h);
    }
    for j in 16..64 {
        round!(maj, ch, w, j, a, b, c, d, e, f, g, h);
    }
    for (s, (x, v)) in state
        .iter_mut()
        .zip([a, b, c, d, e, f, g, h].into_iter().zip(v))
    {
        // SAFETY: `s` is 32 writable bytes; `storeu` has no alignment requirement.
        unsafe { _mm256_storeu_si256(s.as_mut_ptr().cast(), xor(x, v)) };
    }
}
