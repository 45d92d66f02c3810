//! The repository-level part of the store conformance suite, run on every store: memory, a
//! local directory, and a real S3 server (Garage, started by `scripts/test`). Init, two
//! backups running at once (two independently opened clients), restore of both, incremental
//! re-backup, and `check --read-data`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_repo::{InitOptions, Repository};
use zaibei_store::{Location, MemoryStore, OpenOptions, Store};
use zaibei_testkit::S3Target;

/// A small tree: files of several sizes (one spanning several chunks), nested directories,
/// an empty file and a symlink.
fn make_tree(root: &Path, seed: u8) {
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    for i in 0..20u32 {
        let len = (i as usize * 7919) % 50_000;
        let data: Vec<u8> = (0..len)
            .map(|j| (j as u32).wrapping_mul(2654435761).wrapping_add(i) as u8 ^ seed)
            .collect();
        std::fs::write(root.join(format!("a/b/f{i}")), data).unwrap();
    }
    let big: Vec<u8> = (0..3_000_000u32)
        .map(|j| (j.wrapping_mul(0x9e37_79b9) >> 13) as u8 ^ seed)
        .collect();
    std::fs::write(root.join("a/b/c/big"), big).unwrap();
    std::os::unix::fs::symlink("../empty", root.join("a/link")).unwrap();
    // Old enough that change detection trusts the metadata (files modified within the
    // second of a backup are read again, as their later changes could hide in the same tick).
    let past = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    for (rel, _) in contents(root) {
        let p = root.join(&rel);
        if !p.is_symlink() {
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(past)
                .unwrap();
        }
    }
}

/// Every regular file and symlink below `root`, by relative path.
fn contents(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(p);
            } else if t.is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                out.insert(rel, target.as_os_str().as_encoded_bytes().to_vec());
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

async fn open_client(store: &Arc<dyn Store>) -> Arc<zaibei_repo::IndexedRepository> {
    common::reopen(store).await
}

async fn repository_suite(store: Arc<dyn Store>, suite: Suite) {
    let work = tempfile::tempdir().unwrap();
    let (one, two) = (work.path().join("one"), work.path().join("two"));
    make_tree(&one, 1);
    make_tree(&two, 2);
    // Files changed in the same tick as a backup are read again by the next one (a later
    // change could hide in that tick); let the clock move on so the re-backup can trust them.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    Repository::init(
        Arc::clone(&store),
        b"pw",
        InitOptions::new(suite, PasswordKdf::insecure_for_tests(suite)),
    )
    .await
    .unwrap();

    // Two clients, each with its own view of the index, back up at the same time.
    let (c1, c2) = (open_client(&store).await, open_client(&store).await);
    let (b1, b2) = tokio::join!(
        common::backup_path(&c1, &one),
        common::backup_path(&c2, &two)
    );
    assert_ne!(b1.snapshot_id, b2.snapshot_id);

    let repo = open_client(&store).await;
    let snapshots = repo.list_snapshots().await.unwrap();
    assert_eq!(snapshots.snapshots.len(), 2);
    assert!(snapshots.damaged.is_empty());
    for (outcome, source) in [(&b1, &one), (&b2, &two)] {
        let target = work.path().join(format!("restore-{}", outcome.snapshot_id));
        let restored = common::restore_to(&repo, outcome.snapshot.tree, b"", &target).await;
        assert!(restored.errors.is_empty(), "{:?}", restored.errors);
        let inside = target.join(source.strip_prefix("/").unwrap());
        assert_eq!(contents(source), contents(&inside), "restore differs");
    }

    // Unchanged: the re-backup reads no file and adds no data.
    let again = common::backup_path(&repo, &one).await;
    // (Trees may be new: comparing the restore read the sources and moved their atimes.)
    assert_eq!(again.snapshot.summary.bytes_read, 0);
    assert_eq!(again.snapshot.summary.files_unmodified, 22);
    assert_eq!(again.snapshot.summary.data_blobs_added, 0);

    common::assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_repository_suite() {
    repository_suite(Arc::new(MemoryStore::new()), Suite::Gm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fs_repository_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = zaibei_store::open(
        &Location::Fs(dir.path().join("repo")),
        &OpenOptions::default(),
    )
    .unwrap()
    .store;
    repository_suite(store, Suite::Intl).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_repository_suite() {
    let t = S3Target::from_env().unwrap_or_else(|e| panic!("{e}"));
    let location = t.location(&S3Target::unique_prefix("repository-suite"), None);
    let mut opts = OpenOptions::default();
    opts.bucket.region = Some(t.credentials.region.clone());
    opts.bucket.access_key_id = Some(t.credentials.access_key_id.clone());
    opts.bucket.secret_access_key = Some(t.credentials.secret_access_key.clone());
    let store = zaibei_store::open(&Location::parse(&location).unwrap(), &opts)
        .unwrap()
        .store;
    repository_suite(store, Suite::Gm).await;
}
