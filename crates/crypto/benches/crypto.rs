//! Throughput of the primitives on the data path: the AEADs, the unkeyed hashes, and SM3 /
//! HMAC-SM3 over many messages (single-stream versus multi-buffer).
//!
//! `cargo bench -p zaibei-crypto --bench crypto -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zaibei_crypto::sm3_multi::{Sm3Impl, hmac_sm3_many_with, sm3_many_with};
use zaibei_crypto::sm4_fast::{FastSm4, Sm4Impl};
use zaibei_crypto::{Aead, Hasher, SecretKey, Suite};

const SIZES: [(usize, &str); 2] = [(64 << 10, "64KiB"), (1 << 20, "1MiB")];

fn bench(c: &mut Criterion) {
    let key = SecretKey::from_bytes([0x42; 32]);
    let nonce = [7u8; 12];
    let sm4_key: [u8; 16] = [0x42; 16];
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("seal-{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0xabu8; size];

        let gm = Aead::new(Suite::Gm, &key);
        group.bench_function("sm4-gcm (Aead, gm)", |b| {
            b.iter(|| {
                let mut v = std::mem::take(&mut buf);
                v.truncate(size);
                gm.seal_in_place(&nonce, b"", &mut v);
                buf = black_box(v);
            })
        });
        for imp in [
            Sm4Impl::Avx512Gfni,
            Sm4Impl::Avx2Vaes,
            Sm4Impl::Avx2,
            Sm4Impl::Ssse3,
            Sm4Impl::Portable,
        ] {
            let Some(cipher) = FastSm4::with_impl(&sm4_key, imp) else {
                continue;
            };
            let gcm = AesGcm::<FastSm4, U12>::from(cipher);
            group.bench_function(format!("sm4-gcm ({imp:?})"), |b| {
                b.iter(|| {
                    let tag = gcm.encrypt_inout_detached(
                        (&nonce).into(),
                        b"",
                        buf[..size].as_mut().into(),
                    );
                    black_box(tag.is_ok())
                })
            });
        }
        let rustcrypto = AesGcm::<sm4::Sm4, U12>::new(&sm4_key.into());
        group.bench_function("sm4-gcm (sm4 crate)", |b| {
            b.iter(|| {
                let tag = rustcrypto.encrypt_inout_detached(
                    (&nonce).into(),
                    b"",
                    buf[..size].as_mut().into(),
                );
                black_box(tag.is_ok())
            })
        });
        let intl = Aead::new(Suite::Intl, &key);
        group.bench_function("aes-256-gcm (Aead, intl)", |b| {
            b.iter(|| {
                let mut v = std::mem::take(&mut buf);
                v.truncate(size);
                intl.seal_in_place(&nonce, b"", &mut v);
                buf = black_box(v);
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("hash-{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        for (name, suite) in [("sm3", Suite::Gm), ("blake3", Suite::Intl)] {
            group.bench_function(name, |b| {
                b.iter(|| {
                    let mut h = Hasher::new(suite);
                    h.update(black_box(&buf[..size]));
                    black_box(h.finalize())
                })
            });
        }
        group.finish();
    }
}

/// Batches of messages for the multi-buffer hashes: (count, size, label).
const BATCHES: [(usize, usize, &str); 2] = [(64, 16 << 10, "64x16KiB"), (16, 1 << 20, "16x1MiB")];

fn bench_many(c: &mut Criterion) {
    let key = SecretKey::from_bytes([0x42; 32]);
    for (count, size, label) in BATCHES {
        let data: Vec<Vec<u8>> = (0..count)
            .map(|i| (0..size).map(|j| (i * 31 + j * 7) as u8).collect())
            .collect();
        let messages: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut group = c.benchmark_group(format!("many-{label}"));
        group.throughput(Throughput::Bytes((count * size) as u64));
        group.bench_function("sm3 single-stream", |b| {
            b.iter(|| {
                let digests: Vec<_> = messages.iter().map(|m| Suite::Gm.hash(m)).collect();
                black_box(digests)
            })
        });
        for imp in [Sm3Impl::Avx512, Sm3Impl::Avx2, Sm3Impl::Portable] {
            if !imp.is_supported() {
                continue;
            }
            group.bench_function(format!("sm3_many ({imp:?})"), |b| {
                b.iter(|| black_box(sm3_many_with(imp, black_box(&messages))))
            });
        }
        group.bench_function("hmac-sm3 single-stream", |b| {
            b.iter(|| {
                let digests: Vec<_> = messages
                    .iter()
                    .map(|m| Suite::Gm.keyed_hash(&key, m))
                    .collect();
                black_box(digests)
            })
        });
        for imp in [Sm3Impl::Avx512, Sm3Impl::Avx2, Sm3Impl::Portable] {
            if !imp.is_supported() {
                continue;
            }
            group.bench_function(format!("hmac_sm3_many ({imp:?})"), |b| {
                b.iter(|| black_box(hmac_sm3_many_with(imp, &key, black_box(&messages))))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench, bench_many);
criterion_main!(benches);
