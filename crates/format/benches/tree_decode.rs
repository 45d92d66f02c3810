//! Decoding and encoding a tree body: the one-pass decoder of `Tree::decode` and the direct
//! encoder of `Tree::encode` against the generic path (`cbor::Value`), on a directory of 256
//! files as a backup of a source tree meets them (owner names, one to three content blobs each).
//!
//! `cargo bench -p zaibei-format --bench tree_decode -- --warm-up-time 1 --measurement-time 3`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use zaibei_format::{Id, Node, NodeKind, Timestamp, Tree};

#[path = "../tests/reference/tree.rs"]
mod tree_reference;

fn directory(files: usize) -> Tree {
    let nodes = (0..files)
        .map(|i| {
            let mut n = Node::new(format!("source-file-{i:05}.c").into_bytes(), NodeKind::File);
            n.mode = 0o644;
            n.uid = 1000;
            n.gid = 1000;
            n.user = Some("builder".into());
            n.group = Some("builder".into());
            let t = Timestamp {
                secs: 1_700_000_000 + i as i64,
                nanos: 123_456_789,
            };
            (n.mtime, n.atime, n.ctime) = (t, t, t);
            n.inode = 4_000_000 + i as u64;
            n.device = 2049;
            n.links = 1;
            n.size = 3_000 + 997 * i as u64;
            n.content = (0..1 + i % 3)
                .map(|j| Id([(i * 3 + j) as u8; 32]))
                .collect();
            n
        })
        .collect();
    Tree { nodes }
}

fn bench(c: &mut Criterion) {
    let body = directory(256).encode();
    let mut group = c.benchmark_group("tree-decode-256-files");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("one pass (Tree::decode)", |b| {
        b.iter(|| Tree::decode(black_box(&body)))
    });
    group.bench_function("generic (cbor::Value, then fields)", |b| {
        b.iter(|| tree_reference::decode(black_box(&body)))
    });
    group.finish();
    let tree = directory(256);
    let mut group = c.benchmark_group("tree-encode-256-files");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("direct (Tree::encode)", |b| {
        b.iter(|| black_box(&tree).encode())
    });
    group.bench_function("generic (cbor::Value, keys sorted)", |b| {
        b.iter(|| tree_reference::encode(black_box(&tree)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
