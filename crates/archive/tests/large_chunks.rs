//! Files whose chunks have the maximum size (long runs of repeated bytes) are read through
//! widened windows, so that their ids are hashed side by side; what is stored and restored must
//! be exactly what the usual window gives.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use zaibei_archive::chunker::Chunker;
use zaibei_crypto::Suite;
use zaibei_format::{Id, Node};
use zaibei_repo::{BlobSaver, IndexedRepository};

/// `len` bytes of `line`, over and over.
fn repeated(line: &[u8], len: usize) -> Vec<u8> {
    line.iter().copied().cycle().take(len).collect()
}

fn chunker_of(repo: &IndexedRepository) -> Chunker {
    Chunker::new(
        repo.suite(),
        &repo.chunker_seed().unwrap(),
        repo.config().chunker,
    )
}

/// A line of text that, repeated, has no cut point before the maximum size under this
/// repository's (random) chunker seed: almost any line, but not every one under every seed.
fn line_without_cut_points(repo: &IndexedRepository) -> Vec<u8> {
    let chunker = chunker_of(repo);
    (0..100)
        .map(|k| format!("one line of text, repeated over and over again: {k}.\n").into_bytes())
        .find(|line| {
            let data = repeated(line, 3 * chunker.max_size());
            chunker.cut(&data) == chunker.max_size()
                && chunker.cut(&data[chunker.max_size()..]) == chunker.max_size()
        })
        .expect("a line without cut points")
}

/// Bytes that do not repeat (an xorshift stream).
fn noise(len: usize, mut x: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// The node at `path` (absolute) in the tree `root`.
async fn node_at(repo: &IndexedRepository, root: Id, path: &std::path::Path) -> Node {
    let mut tree = repo.load_tree(&root).await.unwrap();
    let names: Vec<_> = path.iter().skip(1).collect();
    for (i, name) in names.iter().enumerate() {
        let node = tree
            .nodes
            .iter()
            .find(|n| n.name == name.as_encoded_bytes())
            .unwrap_or_else(|| panic!("{name:?} is not in the snapshot"))
            .clone();
        if i + 1 == names.len() {
            return node;
        }
        tree = repo.load_tree(&node.subtree.unwrap()).await.unwrap();
    }
    panic!("empty path")
}

/// The ids of the chunks that a stream through the usual window cuts from `data`, and how many
/// of them have the maximum size.
async fn usual_ids(repo: &Arc<IndexedRepository>, data: &[u8]) -> (Vec<Id>, usize) {
    let chunker = chunker_of(repo);
    let mut buf = Vec::new();
    let mut stream = chunker.stream(data, &mut buf);
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next_chunk().unwrap() {
        chunks.push(chunk.to_vec());
    }
    drop(stream);
    let largest = chunks
        .iter()
        .filter(|c| c.len() == chunker.max_size())
        .count();
    let saver = BlobSaver::start(Arc::clone(repo), 1).await.unwrap();
    let slices: Vec<&[u8]> = chunks.iter().map(|c| &c[..]).collect();
    let ids = saver.blob_ids(&slices).unwrap();
    saver.finish().await.unwrap();
    (ids, largest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_of_maximum_size_chunks_store_what_the_usual_window_cuts() {
    let (store, repo) = new_repo(Suite::Gm).await;
    let src = tempfile::tempdir().unwrap();
    // Two such files read at once by two readers sharing one budget (whichever asks first
    // widens), one of them with bytes that do not repeat in the middle (small chunks, hashed in
    // the wide window), and a small file.
    let line = line_without_cut_points(&repo);
    let a = repeated(&line, 60 << 20);
    let mut b = repeated(&line, 40 << 20);
    b.splice(20 << 20..20 << 20, noise(3 << 20, 0x9e37_79b9_7f4a_7c15));
    let small = noise(10_000, 7);
    std::fs::write(src.path().join("a"), &a).unwrap();
    std::fs::write(src.path().join("b"), &b).unwrap();
    std::fs::write(src.path().join("small"), &small).unwrap();

    let out = backup_path(&repo, src.path()).await;
    assert_checks(&store).await;
    let repo = reopen(&store).await;
    for (name, data) in [("a", &a), ("b", &b)] {
        let (ids, largest) = usual_ids(&repo, data).await;
        assert!(
            largest >= 4,
            "{name}: only {largest} chunks of the maximum size"
        );
        let node = node_at(&repo, out.snapshot.tree, &src.path().join(name)).await;
        assert_eq!(node.size, data.len() as u64);
        assert!(
            node.content == ids,
            "{name}: {} ids stored, {} cut through the usual window",
            node.content.len(),
            ids.len()
        );
    }

    let target = tempfile::tempdir().unwrap();
    let sub = src.path().as_os_str().as_encoded_bytes().to_vec();
    let restored = restore_to(&repo, out.snapshot.tree, &sub, target.path()).await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert!(std::fs::read(target.path().join("a")).unwrap() == a);
    assert!(std::fs::read(target.path().join("b")).unwrap() == b);
    assert_eq!(std::fs::read(target.path().join("small")).unwrap(), small);
}
