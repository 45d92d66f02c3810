//! Backups with the scout (the sources listed ahead of the walk, while the key is derived)
//! record what backups without it record: after files were added, changed and removed, and
//! when a directory changes between the scout's pass and the walk.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{backup_path, new_repo, reopen};
use zaibei_archive::backup::{BackupOptions, Scout, backup};
use zaibei_archive::progress::Counters;
use zaibei_crypto::Suite;
use zaibei_format::Id;
use zaibei_store::Store;

fn options(path: &Path, scout: Option<Arc<Scout>>) -> BackupOptions {
    BackupOptions {
        paths: vec![path.to_path_buf()],
        host: "test".into(),
        connections: 2,
        workers: 2,
        scout,
        ..Default::default()
    }
}

/// Backs up `path` with a scout that has listed everything first; returns the tree of `path`,
/// how many listings the walker used and how many files were unchanged. `between` runs after
/// the scout's pass.
async fn scouted(store: &Arc<dyn Store>, path: &Path, between: impl FnOnce()) -> (Id, u64, u64) {
    let scout = Scout::start(&options(path, None)).unwrap();
    let start = std::time::Instant::now();
    while !scout.finished() {
        assert!(start.elapsed().as_secs() < 20, "the scout never finished");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    between();
    // Opened afresh, to find the last snapshot as the parent.
    let repo = reopen(store).await;
    let opts = options(path, Some(Arc::clone(&scout)));
    let outcome = backup(repo, opts, Arc::new(Counters::default()))
        .await
        .unwrap();
    // The snapshot's time is no later than the metadata it used.
    if scout.used() > 0 {
        assert_eq!(outcome.snapshot.time, scout.started());
    }
    (
        tree_of(store, outcome.snapshot.tree, path).await,
        scout.used(),
        outcome.snapshot.summary.files_unmodified,
    )
}

/// The tree of `path` in the snapshot whose root tree is `root` (the directories above it
/// change with whatever else happens in the temporary directory).
async fn tree_of(store: &Arc<dyn Store>, root: Id, path: &Path) -> Id {
    let repo = reopen(store).await;
    let mut id = root;
    for part in path.components().skip(1) {
        let name = part.as_os_str().as_encoded_bytes();
        let tree = repo.load_tree(&id).await.unwrap();
        id = tree.find(name).unwrap().subtree.unwrap();
    }
    id
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_with_the_scout_records_what_one_without_it_records() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    for d in 0..8 {
        for f in 0..30 {
            write(
                &src.join(format!("d{d}/s/f{f:02}")),
                format!("{d} {f}").repeat(f + 1).as_bytes(),
            );
        }
        std::os::unix::fs::symlink("s/f00", src.join(format!("d{d}/link"))).unwrap();
    }
    let (store, _) = new_repo(Suite::Gm).await;
    // Without a parent snapshot the scout is stopped and its listings go unused. (The first
    // reads move the access times of new symlinks: back up twice.)
    let (_, used, _) = scouted(&store, &src, || {}).await;
    assert_eq!(used, 0);
    let first = backup_path(&reopen(&store).await, &src).await;
    let first = tree_of(&store, first.snapshot.tree, &src).await;

    // Listings of directories changed in the last two seconds are not used (timestamps move in
    // clock ticks): let them age.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Unchanged: the same tree, every directory's listing used (the root, d*, d*/s).
    let (same, used, unchanged) = scouted(&store, &src, || {}).await;
    assert_eq!(same, first);
    assert_eq!(used, 1 + 8 + 8);
    assert_eq!(unchanged, 8 * 30);

    // Added, changed and removed before the scout's pass: the same tree as the walker's own.
    write(&src.join("d1/s/new"), b"new file");
    write(&src.join("d2/s/f03"), b"changed contents");
    std::fs::remove_file(src.join("d3/s/f04")).unwrap();
    write(&src.join("d9/x/y"), b"a new directory");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let (scouted_tree, used, unchanged) = scouted(&store, &src, || {}).await;
    assert_eq!(unchanged, 8 * 30 - 2);
    let unscouted = backup_path(&reopen(&store).await, &src).await.snapshot.tree;
    assert_eq!(scouted_tree, tree_of(&store, unscouted, &src).await);
    assert_ne!(scouted_tree, first);
    assert_eq!(used, 1 + 9 + 9);

    // A directory changed after the scout's pass is listed again: the file added is there.
    let (with_late_file, used, _) = scouted(&store, &src, || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        write(&src.join("d5/s/late"), b"added after the scout's pass");
    })
    .await;
    assert_eq!(used, 1 + 9 + 9 - 1);
    let unscouted = backup_path(&reopen(&store).await, &src).await.snapshot.tree;
    assert_eq!(with_late_file, tree_of(&store, unscouted, &src).await);
    assert_ne!(with_late_file, scouted_tree);
}
