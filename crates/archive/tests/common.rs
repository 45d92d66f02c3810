//! Shared helpers for the archive integration tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::path::Path;
use std::sync::Arc;

use zaibei_archive::backup::{BackupOptions, BackupOutcome, backup};
use zaibei_archive::progress::Counters;
use zaibei_archive::restore::{RestoreOptions, RestoreOutcome, restore};
use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_format::{Id, Snapshot, SnapshotSummary, Timestamp, Tree};
use zaibei_repo::{BlobSaver, IndexedRepository, InitOptions, Repository};
use zaibei_store::{MemoryStore, Store};

/// A fresh repository in memory, indexed.
pub async fn new_repo(suite: Suite) -> (Arc<dyn Store>, Arc<IndexedRepository>) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let repo = Repository::init(
        Arc::clone(&store),
        b"pw",
        InitOptions::new(suite, PasswordKdf::insecure_for_tests(suite)),
    )
    .await
    .unwrap();
    (store, Arc::new(repo.load_index().await.unwrap()))
}

/// Reopens and re-indexes (to see what was written since).
pub async fn reopen(store: &Arc<dyn Store>) -> Arc<IndexedRepository> {
    Arc::new(
        Repository::open(Arc::clone(store), b"pw")
            .await
            .unwrap()
            .load_index()
            .await
            .unwrap(),
    )
}

/// Runs `check --read-data` on the repository and fails on any error.
pub async fn assert_checks(store: &Arc<dyn Store>) {
    let repo = reopen(store).await;
    let report = zaibei_repo::check(
        &repo,
        zaibei_repo::CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(
        report.errors(),
        0,
        "check --read-data: {:?}",
        report.problems
    );
}

/// Backs up `path`.
pub async fn backup_path(repo: &Arc<IndexedRepository>, path: &Path) -> BackupOutcome {
    let opts = BackupOptions {
        paths: vec![path.to_path_buf()],
        host: "test".into(),
        connections: 2,
        workers: 2,
        ..Default::default()
    };
    backup(Arc::clone(repo), opts, Arc::new(Counters::default()))
        .await
        .unwrap()
}

/// Restores the subtree at `subpath` of the snapshot with root tree `root` into `target`.
pub async fn restore_to(
    repo: &Arc<IndexedRepository>,
    root: Id,
    subpath: &[u8],
    target: &Path,
) -> RestoreOutcome {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        subpath: subpath.to_vec(),
        workers: 2,
        verify: true,
        ..Default::default()
    };
    restore(Arc::clone(repo), root, opts, Arc::new(Counters::default()))
        .await
        .unwrap()
}

/// Stores `tree` (which the caller may have made hostile) and returns its id. Uses the saver
/// directly, which does not validate names: exactly what an attacker with the key could do.
pub async fn store_tree(repo: &Arc<IndexedRepository>, trees: Vec<Tree>) -> Vec<Id> {
    let saver = BlobSaver::start(Arc::clone(repo), 1).await.unwrap();
    let s2 = saver.clone();
    let ids = tokio::task::spawn_blocking(move || {
        trees
            .iter()
            .map(|t| s2.save_tree(t).unwrap())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    ids
}

/// Stores one data blob.
pub async fn store_data(repo: &Arc<IndexedRepository>, data: Vec<u8>) -> Id {
    let saver = BlobSaver::start(Arc::clone(repo), 1).await.unwrap();
    let s2 = saver.clone();
    let id = tokio::task::spawn_blocking(move || {
        let id = s2.blob_id(&data).unwrap();
        s2.save_blob(zaibei_format::PackKind::Data, id, &data)
            .unwrap();
        id
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    id
}

/// A snapshot of `tree`.
pub async fn snapshot_of(repo: &Arc<IndexedRepository>, tree: Id) -> Id {
    let s = Snapshot {
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
    };
    repo.save_snapshot(&s).await.unwrap()
}
