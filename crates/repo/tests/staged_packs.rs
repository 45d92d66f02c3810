//! On a local disk, data packs are written to their files as they fill (no 16 MiB buffer per
//! pack), hashed as they are written, and given their names when complete.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{data_check, files, open, read_tree, save_files, snapshot_of};
use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_format::PackKind;
use zaibei_repo::{BlobSaver, InitOptions, Repository};
use zaibei_store::{FsStore, Store};

/// Every file below `dir`, with its path relative to `dir`.
fn files_below(dir: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files_below(&path, &format!("{rel}{name}/"), out);
        } else {
            out.push((format!("{rel}{name}"), std::fs::read(&path).unwrap()));
        }
    }
}

async fn packs_written_as_they_fill(suite: Suite) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path()));
    let mut opts = InitOptions::new(suite, PasswordKdf::insecure_for_tests(suite));
    // Packs of 3 MiB: each is written out in several pieces of about a MiB.
    opts.pack_size = 3 << 20;
    Repository::init(Arc::clone(&store), b"pw", opts)
        .await
        .unwrap();
    let repo = open(&store).await;
    // 10 MiB of noise in chunks of 10,000 bytes: four data packs.
    let written = files(0..40, 256 * 1024);
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let tree = save_files(&saver, &written).await.unwrap();
    let stats = saver.finish().await.unwrap();
    repo.save_snapshot(&snapshot_of(tree)).await.unwrap();
    assert!(stats.packs >= 4, "{stats:?}");

    let mut packs = Vec::new();
    files_below(&dir.path().join("data"), "", &mut packs);
    // Nothing but packs: no temporary file, nothing half written.
    assert!(packs.len() as u64 >= stats.packs - 1, "{stats:?}");
    for (name, bytes) in &packs {
        assert!(!name.contains("/."), "{name} is left in data/");
        // Each pack is named by the hash of all its bytes, hashed piece by piece as written.
        let hex = name.rsplit('/').next().unwrap();
        assert_eq!(hex, zaibei_format::Id(suite.hash(bytes)).to_hex(), "{name}");
    }
    let big = packs.iter().filter(|(_, b)| b.len() > 2 << 20).count();
    assert!(big >= 3, "{big} packs over 2 MiB");

    // The same repository, opened afresh, reads every file back and checks clean.
    let repo = open(&store).await;
    assert_eq!(read_tree(&repo, &tree).await, written);
    let report = data_check(&repo).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.packs_read >= 4, "{} packs read", report.packs_read);
    assert!(
        repo.index()
            .packs()
            .iter()
            .filter(|p| p.kind == PackKind::Data)
            .count()
            >= 4
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn data_packs_on_a_local_disk_are_written_as_they_fill_gm() {
    packs_written_as_they_fill(Suite::Gm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn data_packs_on_a_local_disk_are_written_as_they_fill_intl() {
    packs_written_as_they_fill(Suite::Intl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saver_dropped_unfinished_leaves_no_partial_pack() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::new(dir.path()));
    let mut opts = InitOptions::new(Suite::Gm, PasswordKdf::insecure_for_tests(Suite::Gm));
    opts.pack_size = 3 << 20;
    Repository::init(Arc::clone(&store), b"pw", opts)
        .await
        .unwrap();
    let repo = open(&store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    // 2 MiB: the open pack has been written out in part, and is never finished.
    save_files(&saver, &files(0..8, 256 * 1024)).await.unwrap();
    drop(saver);
    drop(repo);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut left = Vec::new();
    files_below(&dir.path().join("data"), "", &mut left);
    let names: Vec<&String> = left.iter().map(|(n, _)| n).collect();
    assert!(left.is_empty(), "{names:?}");
}
