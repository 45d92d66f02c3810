//! Throughput of the primitives on the data path: the AEADs and the unkeyed hashes.
//!
//! `cargo bench -p zaibei-crypto --bench crypto -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use aes_gcm::AesGcm;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{AeadInOut, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
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

criterion_group!(benches, bench);
criterion_main!(benches);
