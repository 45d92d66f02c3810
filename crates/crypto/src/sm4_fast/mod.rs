//! A fast SM4 block cipher for SM4-GCM.
//!
//! On x86-64 CPUs with AES-NI and SSSE3 the SM4 S-box is evaluated 16 or 32 bytes at a time
//! with the AES instruction `aesenclast`: both S-boxes are affine transforms of inversion in
//! GF(2^8) (with different field polynomials), so SM4's S-box is an affine map, then AES's
//! S-box, then another affine map (see `x86.rs`). The affine maps are applied with 4-bit
//! `pshufb` lookups held in registers, so no secret-dependent memory access or branch occurs.
//! Where the CPU has GFNI and AVX-512VL, the S-box of 32 bytes is two instructions instead
//! (`gf2p8affineqb`, then `gf2p8affineinvqb`, which inverts in AES's field), with no table.
//! Many blocks are processed at once (16 per call from counter mode), word-sliced across
//! vector lanes. AVX2 doubles the width; VAES runs `aesenclast` on 256-bit registers.
//!
//! Every other CPU, and every other architecture, uses the RustCrypto [`sm4::Sm4`] cipher.
//! Both compute the same function: [`FastSm4`] is a drop-in block cipher for
//! `aes_gcm::AesGcm<FastSm4, U12>` producing exactly the bytes of `AesGcm<sm4::Sm4, U12>`.

use core::fmt;

use sm4::cipher::consts::U16;
use sm4::cipher::{
    AlgorithmName, BlockCipherEncClosure, BlockCipherEncrypt, BlockSizeUser, Key, KeyInit,
    KeySizeUser,
};
use zeroize::{Zeroize, ZeroizeOnDrop};

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)] // calls into `#[target_feature]` code after runtime detection; see x86.rs
mod x86;

/// Which implementation a [`FastSm4`] key uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sm4Impl {
    /// AES-NI + SSSE3 (key schedule) + AVX2 + GFNI + AVX-512VL: the S-box in two `gf2p8affine`
    /// instructions and `L` with one-instruction rotations, 256-bit lanes, 16 blocks per batch.
    Avx512Gfni,
    /// AES-NI + AVX2 + VAES: 256-bit `aesenclast`, 16 blocks per batch.
    Avx2Vaes,
    /// AES-NI + AVX2: 256-bit lanes, `aesenclast` on each 128-bit half, 16 blocks per batch.
    Avx2,
    /// AES-NI + SSSE3: 128-bit lanes, 16 blocks per batch.
    Ssse3,
    /// The RustCrypto `sm4` crate, one block at a time (table-based S-box).
    Portable,
}

impl Sm4Impl {
    /// The fastest implementation this CPU supports (detection is cached by `std`).
    pub fn detect() -> Self {
        [
            Sm4Impl::Avx512Gfni,
            Sm4Impl::Avx2Vaes,
            Sm4Impl::Avx2,
            Sm4Impl::Ssse3,
        ]
        .into_iter()
        .find(|imp| imp.is_supported())
        .unwrap_or(Sm4Impl::Portable)
    }

    /// Whether this CPU supports `self`: has every feature its code is compiled for.
    pub fn is_supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            // Every SIMD implementation expands the key with AES-NI and SSSE3.
            let base = has!("aes") && has!("ssse3");
            match self {
                Sm4Impl::Portable => true,
                Sm4Impl::Ssse3 => base,
                Sm4Impl::Avx2 => base && has!("avx2"),
                Sm4Impl::Avx2Vaes => base && has!("avx2") && has!("vaes"),
                Sm4Impl::Avx512Gfni => {
                    base && has!("avx2") && has!("gfni") && has!("avx512f") && has!("avx512vl")
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Sm4Impl::Portable
        }
    }
}

/// SM4 block cipher (encryption only), vectorised with AES-NI or GFNI on x86-64.
#[derive(Clone)]
pub struct FastSm4(Inner);

#[derive(Clone)]
enum Inner {
    #[cfg(target_arch = "x86_64")]
    Simd(x86::Sm4Simd),
    Portable(sm4::Sm4),
}

impl FastSm4 {
    /// Prepares `key` for the given implementation, or `None` if this CPU lacks it.
    pub fn with_impl(key: &[u8; 16], imp: Sm4Impl) -> Option<Self> {
        if !imp.is_supported() {
            return None;
        }
        Some(FastSm4(match imp {
            Sm4Impl::Portable => Inner::Portable(sm4::Sm4::new(&(*key).into())),
            #[cfg(target_arch = "x86_64")]
            simd => Inner::Simd(x86::Sm4Simd::new(key, simd)?),
            #[cfg(not(target_arch = "x86_64"))]
            _ => return None,
        }))
    }

    /// The implementation this key uses.
    pub fn implementation(&self) -> Sm4Impl {
        match &self.0 {
            #[cfg(target_arch = "x86_64")]
            Inner::Simd(s) => s.implementation(),
            Inner::Portable(_) => Sm4Impl::Portable,
        }
    }
}

impl KeySizeUser for FastSm4 {
    type KeySize = U16;
}

impl KeyInit for FastSm4 {
    fn new(key: &Key<Self>) -> Self {
        let key: [u8; 16] = (*key).into();
        match Self::with_impl(&key, Sm4Impl::detect()) {
            Some(c) => c,
            None => FastSm4(Inner::Portable(sm4::Sm4::new(&key.into()))),
        }
    }
}

impl BlockSizeUser for FastSm4 {
    type BlockSize = U16;
}

impl BlockCipherEncrypt for FastSm4 {
    fn encrypt_with_backend(&self, f: impl BlockCipherEncClosure<BlockSize = Self::BlockSize>) {
        match &self.0 {
            #[cfg(target_arch = "x86_64")]
            Inner::Simd(s) => s.encrypt_with_backend(f),
            Inner::Portable(c) => f.call(c),
        }
    }
}

impl AlgorithmName for FastSm4 {
    fn write_alg_name(f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sm4")
    }
}

impl fmt::Debug for FastSm4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FastSm4 {{ impl: {:?}, .. }}", self.implementation())
    }
}

impl Drop for FastSm4 {
    fn drop(&mut self) {
        match &mut self.0 {
            #[cfg(target_arch = "x86_64")]
            Inner::Simd(s) => s.zeroize(),
            // `sm4::Sm4` (feature `zeroize`) wipes its round keys in its own `Drop`.
            Inner::Portable(_) => {}
        }
    }
}

impl ZeroizeOnDrop for FastSm4 {}

#[cfg(test)]
mod tests;
