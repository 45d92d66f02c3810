//! Helpers shared by the repository's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::ops::Range;
use std::sync::Arc;

use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_format::{Id, Node, NodeKind, PackKind, Snapshot, SnapshotSummary, Timestamp, Tree};
use zaibei_repo::{
    BlobSaver, CheckOptions, CheckReport, IndexedRepository, InitOptions, RepoError, Repository,
    check,
};
use zaibei_store::{MemoryStore, Store};

/// Files of one directory: names and contents.
pub type Files = Vec<(String, Vec<u8>)>;

/// Deterministic pseudo-random bytes (xorshift32).
pub fn data(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Files `fNNN` for each seed.
pub fn files(seeds: Range<u32>, len: usize) -> Files {
    seeds.map(|s| (format!("f{s:03}"), data(s, len))).collect()
}

/// Saves `files` as one directory tree (chunks of 10,000 bytes) with `saver`; returns the
/// tree id. Errors of the saver are returned, not unwrapped (crash tests expect them).
pub async fn save_files(saver: &BlobSaver, files: &Files) -> Result<Id, RepoError> {
    let files = files.clone();
    let s2 = saver.clone();
    tokio::task::spawn_blocking(move || {
        let mut tree = Tree::default();
        for (name, bytes) in &files {
            let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
            node.size = bytes.len() as u64;
            for chunk in bytes.chunks(10_000) {
                let id = s2.blob_id(chunk)?;
                s2.save_blob(PackKind::Data, id, chunk)?;
                node.content.push(id);
            }
            tree.nodes.push(node);
        }
        tree.sort_and_check().unwrap();
        s2.save_tree(&tree)
    })
    .await
    .unwrap()
}

/// A snapshot of `tree` taken now.
pub fn snapshot_of(tree: Id) -> Snapshot {
    Snapshot {
        time: Timestamp::now(),
        tree,
        paths: vec![b"/x".to_vec()],
        hostname: "h".into(),
        username: "u".into(),
        uid: 0,
        gid: 0,
        tags: vec![],
        parent: None,
        program: "test".into(),
        excludes: vec![],
        summary: SnapshotSummary::default(),
        original: None,
    }
}

/// Reads every file of the directory tree `tree` back.
pub async fn read_tree(repo: &Arc<IndexedRepository>, tree: &Id) -> Files {
    let tree = repo.load_tree(tree).await.unwrap();
    let mut out = Vec::new();
    for node in &tree.nodes {
        let mut bytes = Vec::new();
        for id in &node.content {
            bytes.extend(repo.read_blob(PackKind::Data, id).await.unwrap());
        }
        out.push((String::from_utf8(node.name.clone()).unwrap(), bytes));
    }
    out
}

/// Options of a test repository: `gm` suite, cheapest KDF, 64 KiB packs (many small packs).
pub fn init_opts() -> InitOptions {
    let mut o = InitOptions::new(Suite::Gm, PasswordKdf::insecure_for_tests(Suite::Gm));
    o.pack_size = 1 << 16;
    o
}

/// A new repository with password `pw` in `store`.
pub async fn new_repo(store: Arc<dyn Store>) {
    Repository::init(store, b"pw", init_opts()).await.unwrap();
}

/// A memory store holding a new repository with password `pw`.
pub async fn new_store() -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    store
}

/// Opens the repository in `store` with `password` and loads its index.
pub async fn open_with(store: &Arc<dyn Store>, password: &[u8]) -> Arc<IndexedRepository> {
    Arc::new(
        Repository::open(Arc::clone(store), password)
            .await
            .unwrap()
            .load_index()
            .await
            .unwrap(),
    )
}

/// Opens the repository in `store` with password `pw`.
pub async fn open(store: &Arc<dyn Store>) -> Arc<IndexedRepository> {
    open_with(store, b"pw").await
}

/// Backs up `files` as one directory; returns the snapshot id.
pub async fn backup(store: &Arc<dyn Store>, files: &Files) -> Id {
    let repo = open(store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let tree = save_files(&saver, files).await.unwrap();
    saver.finish().await.unwrap();
    repo.save_snapshot(&snapshot_of(tree)).await.unwrap()
}

/// `check --read-data`.
pub async fn data_check(repo: &IndexedRepository) -> CheckReport {
    check(
        repo,
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap()
}
