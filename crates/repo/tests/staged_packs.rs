//! On a local disk, data packs are written to their files as they fill (no 16 MiB buffer per
//! pack) and given their names once complete, several at a time: the names are hashed side by
//! side from the files.

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
    // 30 MiB of noise: ten data packs, so that eight are named together as the sealers
    // finish them and the rest when the saver finishes.
    let written = files(0..120, 256 * 1024);
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let tree = save_files(&saver, &written).await.unwrap();
    let stats = saver.finish().await.unwrap();
    repo.save_snapshot(&snapshot_of(tree)).await.unwrap();
    assert!(stats.packs >= 10, "{stats:?}");

    let mut packs = Vec::new();
    files_below(&dir.path().join("data"), "", &mut packs);
    // Nothing but packs: no temporary file, nothing half written.
    assert!(packs.len() as u64 >= stats.packs - 1, "{stats:?}");
    for (name, bytes) in &packs {
        assert!(!name.contains("/."), "{name} is left in data/");
        // Each pack is named by the hash of all its bytes.
        let hex = name.rsplit('/').next().unwrap();
        assert_eq!(hex, zaibei_format::Id(suite.hash(bytes)).to_hex(), "{name}");
    }
    let big = packs.iter().filter(|(_, b)| b.len() > 2 << 20).count();
    assert!(big >= 9, "{big} packs over 2 MiB");

    // The same repository, opened afresh, reads every file back and checks clean.
    let repo = open(&store).await;
    assert_eq!(read_tree(&repo, &tree).await, written);
    let report = data_check(&repo).await;
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.packs_read >= 10, "{} packs read", report.packs_read);
    assert!(
        repo.index()
            .packs()
            .iter()
            .filter(|p| p.kind == PackKind::Data)
            .count()
            >= 10
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
    // 10 MiB: three finished packs wait for their names, and the open one has been written
    // out in part; none is ever published.
    save_files(&saver, &files(0..40, 256 * 1024)).await.unwrap();
    drop(saver);
    drop(repo);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let mut left = Vec::new();
    files_below(&dir.path().join("data"), "", &mut left);
    let names: Vec<&String> = left.iter().map(|(n, _)| n).collect();
    assert!(left.is_empty(), "{names:?}");
}
