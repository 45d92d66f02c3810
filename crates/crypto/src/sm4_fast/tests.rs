use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead as _, Payload};
use proptest::prelude::*;
use sm4::cipher::{Array, BlockCipherEncrypt, KeyInit};

use super::{FastSm4, Sm4Impl};

/// The SM4 S-box as printed in GB/T 32907-2016.
const SBOX: [u8; 256] = [
    0xd6, 0x90, 0xe9, 0xfe, 0xcc, 0xe1, 0x3d, 0xb7, 0x16, 0xb6, 0x14, 0xc2, 0x28, 0xfb, 0x2c, 0x05,
    0x2b, 0x67, 0x9a, 0x76, 0x2a, 0xbe, 0x04, 0xc3, 0xaa, 0x44, 0x13, 0x26, 0x49, 0x86, 0x06, 0x99,
    0x9c, 0x42, 0x50, 0xf4, 0x91, 0xef, 0x98, 0x7a, 0x33, 0x54, 0x0b, 0x43, 0xed, 0xcf, 0xac, 0x62,
    0xe4, 0xb3, 0x1c, 0xa9, 0xc9, 0x08, 0xe8, 0x95, 0x80, 0xdf, 0x94, 0xfa, 0x75, 0x8f, 0x3f, 0xa6,
    0x47, 0x07, 0xa7, 0xfc, 0xf3, 0x73, 0x17, 0xba, 0x83, 0x59, 0x3c, 0x19, 0xe6, 0x85, 0x4f, 0xa8,
    0x68, 0x6b, 0x81, 0xb2, 0x71, 0x64, 0xda, 0x8b, 0xf8, 0xeb, 0x0f, 0x4b, 0x70, 0x56, 0x9d, 0x35,
    0x1e, 0x24, 0x0e, 0x5e, 0x63, 0x58, 0xd1, 0xa2, 0x25, 0x22, 0x7c, 0x3b, 0x01, 0x21, 0x78, 0x87,
    0xd4, 0x00, 0x46, 0x57, 0x9f, 0xd3, 0x27, 0x52, 0x4c, 0x36, 0x02, 0xe7, 0xa0, 0xc4, 0xc8, 0x9e,
    0xea, 0xbf, 0x8a, 0xd2, 0x40, 0xc7, 0x38, 0xb5, 0xa3, 0xf7, 0xf2, 0xce, 0xf9, 0x61, 0x15, 0xa1,
    0xe0, 0xae, 0x5d, 0xa4, 0x9b, 0x34, 0x1a, 0x55, 0xad, 0x93, 0x32, 0x30, 0xf5, 0x8c, 0xb1, 0xe3,
    0x1d, 0xf6, 0xe2, 0x2e, 0x82, 0x66, 0xca, 0x60, 0xc0, 0x29, 0x23, 0xab, 0x0d, 0x53, 0x4e, 0x6f,
    0xd5, 0xdb, 0x37, 0x45, 0xde, 0xfd, 0x8e, 0x2f, 0x03, 0xff, 0x6a, 0x72, 0x6d, 0x6c, 0x5b, 0x51,
    0x8d, 0x1b, 0xaf, 0x92, 0xbb, 0xdd, 0xbc, 0x7f, 0x11, 0xd9, 0x5c, 0x41, 0x1f, 0x10, 0x5a, 0xd8,
    0x0a, 0xc1, 0x31, 0x88, 0xa5, 0xcd, 0x7b, 0xbd, 0x2d, 0x74, 0xd0, 0x12, 0xb8, 0xe5, 0xb4, 0xb0,
    0x89, 0x69, 0x97, 0x4a, 0x0c, 0x96, 0x77, 0x7e, 0x65, 0xb9, 0xf1, 0x09, 0xc5, 0x6e, 0xc6, 0x84,
    0x18, 0xf0, 0x7d, 0xec, 0x3a, 0xdc, 0x4d, 0x20, 0x79, 0xee, 0x5f, 0x3e, 0xd7, 0xcb, 0x39, 0x48,
];

const ALL: [Sm4Impl; 5] = [
    Sm4Impl::Avx512Gfni,
    Sm4Impl::Avx2Vaes,
    Sm4Impl::Avx2,
    Sm4Impl::Ssse3,
    Sm4Impl::Portable,
];

fn supported() -> impl Iterator<Item = Sm4Impl> {
    ALL.into_iter().filter(|i| i.is_supported())
}

fn cipher(key: &[u8; 16], imp: Sm4Impl) -> FastSm4 {
    let Some(c) = FastSm4::with_impl(key, imp) else {
        panic!("{imp:?} is supported but was refused");
    };
    assert_eq!(c.implementation(), imp);
    c
}

fn hex16(s: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, i) in out.iter_mut().zip(0..) {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or_else(|e| panic!("{e}"));
    }
    out
}

#[test]
fn detection_picks_a_supported_impl() {
    let best = Sm4Impl::detect();
    assert!(best.is_supported());
    assert!(Sm4Impl::Portable.is_supported());
    let key = [7u8; 16];
    assert_eq!(
        <FastSm4 as KeyInit>::new(&key.into()).implementation(),
        best
    );
    eprintln!("SM4 implementation on this CPU: {best:?}");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn simd_sbox_matches_standard() {
    let Some(_) = super::x86::sbox16([0; 16]) else {
        eprintln!("no AES-NI/SSSE3: skipped");
        return;
    };
    for hi in 0..16u8 {
        let input: [u8; 16] = core::array::from_fn(|i| hi * 16 + i as u8);
        let out = super::x86::sbox16(input).unwrap_or_default();
        for (x, y) in input.iter().zip(out) {
            assert_eq!(y, SBOX[usize::from(*x)], "S({x:#04x})");
        }
    }
}

/// The GFNI S-box's matrices and constants, checked on every CPU: `gf2p8affineqb` and
/// `gf2p8affineinvqb` emulated bit by bit (Intel SDM: bit `i` of a result byte is the parity of
/// the input byte masked by byte `7 - i` of the matrix, XOR bit `i` of the immediate; the
/// second instruction first inverts in the AES field, with 0 mapped to 0) must give the
/// standard S-box for all 256 inputs.
#[cfg(target_arch = "x86_64")]
#[test]
fn gfni_matrices_give_the_standard_sbox() {
    use super::x86::{GFNI_POST, GFNI_POST_C, GFNI_PRE, GFNI_PRE_C};
    fn affine(x: u8, matrix: i64, imm: i32) -> u8 {
        let m = (matrix as u64).to_le_bytes();
        (0..8).fold(0u8, |out, i| {
            let bit = ((m[7 - i] & x).count_ones() as u8 & 1) ^ ((imm as u8) >> i & 1);
            out | bit << i
        })
    }
    fn aes_mul(mut a: u8, mut b: u8) -> u8 {
        let mut r = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                r ^= a;
            }
            b >>= 1;
            a = (a << 1) ^ if a & 0x80 != 0 { 0x1b } else { 0 };
        }
        r
    }
    let inv = |a: u8| (1..=255u8).find(|&b| aes_mul(a, b) == 1).unwrap_or(0);
    for x in 0..=255u8 {
        let y = affine(x, GFNI_PRE, GFNI_PRE_C);
        let s = affine(inv(y), GFNI_POST, GFNI_POST_C);
        assert_eq!(s, SBOX[usize::from(x)], "input {x:#04x}");
    }
}

/// Re-derives the nibble tables of `x86.rs` from the field arithmetic.
#[cfg(target_arch = "x86_64")]
#[test]
fn nibble_tables_derivation() {
    use super::x86::{POST_HI, POST_LO, PRE_HI, PRE_LO};
    fn mul(mut a: u8, mut b: u8, poly: u16) -> u8 {
        let mut r = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                r ^= a;
            }
            b >>= 1;
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= (poly & 0xff) as u8;
            }
        }
        r
    }
    fn inv(a: u8, poly: u16) -> u8 {
        (1..=255u8).find(|&b| mul(a, b, poly) == 1).unwrap_or(0)
    }
    const SM4_POLY: u16 = 0x1f5;
    const AES_POLY: u16 = 0x11b;
    // SM4's affine layer: A = the circulant matrix of rotations by 0, 2, 5, 6, 7 to the right
    // (row byte 0xa7), c = 0xd3.
    let a =
        |x: u8| x ^ x.rotate_right(1) ^ x.rotate_right(2) ^ x.rotate_right(5) ^ x.rotate_right(7);
    for x in 0..=255u8 {
        assert_eq!(a(inv(a(x) ^ 0xd3, SM4_POLY)) ^ 0xd3, SBOX[usize::from(x)]);
    }
    let aes = |x: u8| {
        let b = inv(x, AES_POLY);
        b ^ b.rotate_left(1) ^ b.rotate_left(2) ^ b.rotate_left(3) ^ b.rotate_left(4) ^ 0x63
    };
    // T: the SM4 field to the AES field, generator ↦ a root of SM4's polynomial.
    let eval = |b: u8| {
        let (mut acc, mut p) = (0u8, 1u8);
        for i in 0..9 {
            if SM4_POLY >> i & 1 != 0 {
                acc ^= p;
            }
            p = mul(p, b, AES_POLY);
        }
        acc
    };
    let beta = (2..=255u8).find(|&b| eval(b) == 0).unwrap_or(0);
    let mut basis = [1u8; 8];
    for i in 1..8 {
        basis[i] = mul(basis[i - 1], beta, AES_POLY);
    }
    let t = |x: u8| {
        (0..8)
            .filter(|i| x >> i & 1 != 0)
            .fold(0, |acc, i| acc ^ basis[i])
    };
    let mut t_inv = [0u8; 256];
    let mut aes_inv = [0u8; 256];
    for x in 0..=255u8 {
        t_inv[usize::from(t(x))] = x;
        aes_inv[usize::from(aes(x))] = x;
    }
    let p = |x: u8| t(a(x) ^ 0xd3);
    let q = |u: u8| a(t_inv[usize::from(inv(aes_inv[usize::from(u)], AES_POLY))]) ^ 0xd3;
    for i in 0..16u8 {
        assert_eq!(PRE_LO[usize::from(i)], p(i));
        assert_eq!(PRE_HI[usize::from(i)], p(i << 4) ^ p(0));
        assert_eq!(POST_LO[usize::from(i)], q(i));
        assert_eq!(POST_HI[usize::from(i)], q(i << 4) ^ q(0));
    }
    for x in 0..=255u8 {
        assert_eq!(q(aes(p(x))), SBOX[usize::from(x)]);
    }
}

#[test]
fn standard_vector() {
    let key = hex16("0123456789abcdeffedcba9876543210");
    for imp in supported() {
        let c = cipher(&key, imp);
        let mut block = Array::from(key);
        c.encrypt_block(&mut block);
        assert_eq!(
            block,
            Array::from(hex16("681edf34d206965e86b3e94f536e4246")),
            "{imp:?}"
        );
    }
}

/// GB/T 32907 example 2: one million encryptions under the same key.
///
/// Unoptimised (debug) builds of the SIMD code need ~40 s for this, so there the portable
/// cipher (a dependency, built with optimisations) checks the vector, and the fast one is
/// run in lockstep with it for the first 20,000 iterations; release builds check the fast
/// cipher for the full million.
#[test]
fn standard_vector_million() {
    let key = hex16("0123456789abcdeffedcba9876543210");
    let expected = Array::from(hex16("595298c7c6fd271f0402f804c33d3f66"));
    let imp = Sm4Impl::detect();
    let fast = cipher(&key, imp);
    if cfg!(debug_assertions) {
        let portable = cipher(&key, Sm4Impl::Portable);
        let (mut a, mut b) = (Array::from(key), Array::from(key));
        for i in 0..1_000_000 {
            portable.encrypt_block(&mut a);
            if i < 20_000 {
                fast.encrypt_block(&mut b);
                assert_eq!(a, b, "{imp:?}, iteration {i}");
            }
        }
        assert_eq!(a, expected);
    } else {
        let mut block = Array::from(key);
        for _ in 0..1_000_000 {
            fast.encrypt_block(&mut block);
        }
        assert_eq!(block, expected, "{imp:?}");
    }
}

fn gcm_eq(key: &[u8; 16], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) {
    let reference = AesGcm::<sm4::Sm4, U12>::new(&(*key).into());
    let payload = || Payload { msg, aad };
    let Ok(expected) = reference.encrypt(nonce.into(), payload()) else {
        panic!("encrypt");
    };
    for imp in supported() {
        let fast = AesGcm::<FastSm4, U12>::from(cipher(key, imp));
        let got = fast.encrypt(nonce.into(), payload());
        assert_eq!(
            got.as_ref().ok(),
            Some(&expected),
            "{imp:?}, {} bytes",
            msg.len()
        );
        let opened = fast.decrypt(
            nonce.into(),
            Payload {
                msg: &expected,
                aad,
            },
        );
        assert_eq!(opened.ok().as_deref(), Some(msg), "{imp:?}");
    }
}

#[test]
fn gcm_matches_portable_every_short_length() {
    let key: [u8; 16] = core::array::from_fn(|i| (i * 37 + 11) as u8);
    let nonce: [u8; 12] = core::array::from_fn(|i| (i * 53 + 3) as u8);
    let data: Vec<u8> = (0..300u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for len in 0..=300 {
        gcm_eq(&key, &nonce, &data[..len % 40], &data[..len]);
    }
}

#[test]
fn gcm_matches_portable_large() {
    let key = [0x5au8; 16];
    let nonce = [0xa5u8; 12];
    let data: Vec<u8> = (0..(1u32 << 20) + 77)
        .map(|i| (i ^ (i >> 7)) as u8)
        .collect();
    for len in [4096, 65_536 + 15, 100_003, data.len()] {
        gcm_eq(&key, &nonce, b"aad", &data[..len]);
    }
}

proptest! {
    #[test]
    fn blocks_match_portable(key in any::<[u8; 16]>(), blocks in prop::collection::vec(any::<[u8; 16]>(), 1..=40)) {
        let reference = sm4::Sm4::new(&key.into());
        let mut expected: Vec<_> = blocks.iter().map(|b| Array::from(*b)).collect();
        reference.encrypt_blocks(&mut expected);
        for imp in supported() {
            let c = cipher(&key, imp);
            let mut got: Vec<_> = blocks.iter().map(|b| Array::from(*b)).collect();
            c.encrypt_blocks(&mut got);
            prop_assert_eq!(&got, &expected, "{:?}", imp);
            // Single-block calls as well.
            for (b, e) in blocks.iter().zip(&expected) {
                let mut one = Array::from(*b);
                c.encrypt_block(&mut one);
                prop_assert_eq!(&one, e);
            }
        }
    }

    #[test]
    fn gcm_matches_portable_random(key in any::<[u8; 16]>(), nonce in any::<[u8; 12]>(),
                                   aad in prop::collection::vec(any::<u8>(), 0..50),
                                   msg in prop::collection::vec(any::<u8>(), 0..1000)) {
        gcm_eq(&key, &nonce, &aad, &msg);
    }
}
