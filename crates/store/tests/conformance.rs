//! Every local store passes the conformance suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use zaibei_store::{FsStore, MemoryStore, conformance};

#[tokio::test]
async fn memory_store_conforms() {
    conformance::run(Arc::new(MemoryStore::new()))
        .await
        .unwrap();
}

#[tokio::test]
async fn fs_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    conformance::run(Arc::new(FsStore::new(dir.path().join("repo"))))
        .await
        .unwrap();
}

#[tokio::test]
async fn fs_store_leaves_no_temporary_files_and_hides_them_from_listings() {
    use bytes::Bytes;
    use zaibei_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let s = FsStore::new(dir.path());
    s.put("index/aa", Bytes::from_static(b"x")).await.unwrap();
    let names: Vec<_> = std::fs::read_dir(dir.path().join("index"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("aa")]);
    std::fs::write(dir.path().join("index/.tmp-dead"), b"partial").unwrap();
    let listed = s.list("index").await.unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn fs_store_with_a_relative_root() {
    use bytes::Bytes;
    use zaibei_store::Store;
    let dir = tempfile::tempdir().unwrap();
    let rel = pathdiff_relative(dir.path());
    let s = FsStore::new(rel.join("repo"));
    s.put("keys/aa", Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("repo/keys/aa")).unwrap(),
        b"x"
    );
}

/// `path` relative to the current directory (through `..` components).
fn pathdiff_relative(path: &std::path::Path) -> std::path::PathBuf {
    let cwd = std::env::current_dir().unwrap();
    let up = cwd.components().count() - 1;
    let mut rel = std::path::PathBuf::new();
    for _ in 0..up {
        rel.push("..");
    }
    rel.join(path.strip_prefix("/").unwrap())
}
