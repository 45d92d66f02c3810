//! Throughput of the backup data path's CPU stages other than crypto: content-defined
//! chunking and zstd compression (the AEADs and hashes are in `zaibei-crypto`'s benchmark).
//!
//! `cargo bench -p zaibei-archive --bench data_path -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zaibei_archive::chunker::Chunker;
use zaibei_crypto::Suite;
use zaibei_format::ChunkerParams;

/// Incompressible bytes (xorshift64*).
fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Text-like bytes without long repeats: lines of this crate's own source code, picked at
/// random (zstd finds only the short-range redundancy of real text, not a period).
fn text(len: usize) -> Vec<u8> {
    let lines: Vec<&str> = [
        include_str!("../src/chunker.rs"),
        include_str!("../src/exclude.rs"),
        include_str!("../src/fsmeta.rs"),
        include_str!("../src/tree_walk.rs"),
    ]
    .iter()
    .flat_map(|s| s.lines())
    .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut out = Vec::with_capacity(len + 200);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let line = lines[(x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 33) as usize % lines.len()];
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.truncate(len);
    out
}

fn chunking(c: &mut Criterion) {
    let data = random(64 << 20);
    let mut group = c.benchmark_group("chunker");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    for (label, params) in [
        ("1MiB average (default)", ChunkerParams::default()),
        (
            "64KiB average",
            ChunkerParams {
                min: 16 << 10,
                avg: 64 << 10,
                max: 256 << 10,
            },
        ),
    ] {
        let chunker = Chunker::new(Suite::Gm, &[7; 32], params);
        group.bench_function(label, |b| {
            b.iter(|| {
                let mut rest = &data[..];
                let mut chunks = 0u32;
                while !rest.is_empty() {
                    let cut = chunker.cut(rest).max(1);
                    rest = &rest[cut..];
                    chunks += 1;
                }
                black_box(chunks)
            })
        });
    }
    group.finish();
}

fn compression(c: &mut Criterion) {
    let text = text(4 << 20);
    let mut group = c.benchmark_group("zstd-text-4MiB");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.sample_size(10);
    for level in [1, 3] {
        let (_, packed) = zaibei_format::blob::compress(&text, level);
        let ratio = packed.map_or(1.0, |p| p.len() as f64 / text.len() as f64);
        eprintln!("zstd level {level}: ratio {ratio:.3}");
        group.bench_function(format!("level {level}"), |b| {
            b.iter(|| black_box(zaibei_format::blob::compress(&text, level)))
        });
    }
    group.finish();
}

criterion_group!(benches, chunking, compression);
criterion_main!(benches);
