//! `check`'s impact reports: which snapshots and files a damaged object costs, copies of a blob
//! stored twice, and what a maintenance-only key can tell.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{
    backup, data_check, files, new_store, open, open_with, read_tree, save_files, snapshot_of,
};
use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_format::{Id, IndexFile, KeyScope, PackKind};
use zaibei_repo::{BlobSaver, Severity, names, repack};
use zaibei_store::Store;

/// Two snapshots sharing `f001`; returns the store, both ids and the first blob of `f001`.
async fn two_snapshots() -> (Arc<dyn Store>, Id, Id, Id) {
    let store = new_store().await;
    let s1 = backup(&store, &files(0..3, 30_000)).await;
    let s2 = backup(&store, &files(1..5, 30_000)).await;
    let repo = open(&store).await;
    let tree = repo
        .load_tree(&repo.load_snapshot(&s1).await.unwrap().tree)
        .await
        .unwrap();
    let f001 = tree.nodes.iter().find(|n| n.name == b"f001").unwrap();
    (store, s1, s2, f001.content[0])
}

/// Flips a byte inside the record of `blob`; returns the pack's name.
async fn damage_blob(store: &Arc<dyn Store>, blob: &Id) -> String {
    let repo = open(store).await;
    let loc = repo.locate(PackKind::Data, blob).unwrap();
    let name = names::pack(&loc.pack.id);
    let mut bytes = store.get(&name).await.unwrap().to_vec();
    bytes[(loc.offset + loc.length / 2) as usize] ^= 0x40;
    store.put(&name, bytes.into()).await.unwrap();
    name
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_blob_names_every_snapshot_and_file_that_needs_it() {
    let (store, s1, s2, blob) = two_snapshots().await;
    let pack = damage_blob(&store, &blob).await;
    let repo = open(&store).await;
    let report = data_check(&repo).await;
    let object = format!("data blob {blob}");
    let p = report
        .problems
        .iter()
        .find(|p| p.object == object)
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    assert_eq!(p.severity, Severity::Error);
    let a = p.affected.as_ref().unwrap();
    let mut both = vec![s1, s2];
    both.sort();
    assert_eq!(a.snapshots, both);
    assert!(a.paths_known);
    assert_eq!(a.paths_total, 1);
    assert_eq!(a.paths[0].path, "/f001");
    assert_eq!(a.paths[0].snapshots, both);
    // The pack's hash problem costs nothing beyond the blob.
    let hash = report.problems.iter().find(|p| p.object == pack).unwrap();
    assert!(hash.affected.is_none(), "{hash:?}");
    assert_eq!(report.snapshots_affected, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_copy_keeps_the_blob_readable_and_the_damage_harmless() {
    let (store, s1, _, blob) = two_snapshots().await;
    // Copy the pack holding the blob into a new pack (a duplicate, as concurrent backups make)
    // and index it.
    let repo = open(&store).await;
    let loc = repo.locate(PackKind::Data, &blob).unwrap();
    let name = names::pack(&loc.pack.id);
    let source = store.get(&name).await.unwrap();
    let copy = repack::shrink_pack(
        repo.keys().maintenance(),
        repo.suite(),
        &name,
        &source,
        |id| *id == blob,
    )
    .unwrap();
    store
        .put(&names::pack(&copy.id), copy.bytes.clone())
        .await
        .unwrap();
    let index = IndexFile {
        packs: vec![copy.index],
        supersedes: vec![],
    }
    .seal(repo.keys().maintenance())
    .unwrap();
    let index_id = Id(repo.suite().hash(&index));
    store
        .put(&names::index(&index_id), index.into())
        .await
        .unwrap();
    // Damage the copy the index gives first (damage_blob locates it).
    damage_blob(&store, &blob).await;
    let repo = open(&store).await;
    let report = data_check(&repo).await;
    let p = report
        .problems
        .iter()
        .find(|p| p.object == format!("data blob {blob}"))
        .unwrap();
    assert!(p.affected.as_ref().unwrap().snapshots.is_empty(), "{p:?}");
    assert_eq!(report.snapshots_affected, 0);
    // Reading falls back to the good copy.
    let back = read_tree(&repo, &repo.load_snapshot(&s1).await.unwrap().tree).await;
    assert_eq!(back, files(0..3, 30_000));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maintenance_key_names_snapshots_but_not_paths() {
    let (store, s1, s2, blob) = two_snapshots().await;
    let repo = open(&store).await;
    repo.add_key(
        b"maint",
        KeyScope::Maintenance,
        PasswordKdf::insecure_for_tests(Suite::Gm),
        "h".into(),
        "u".into(),
    )
    .await
    .unwrap();
    let pack = damage_blob(&store, &blob).await;
    let repo = open_with(&store, b"maint").await;
    let report = data_check(&repo).await;
    assert!(report.content_unverified);
    // Data cannot be authenticated without the content key: the whole pack is suspect.
    let p = report
        .problems
        .iter()
        .find(|p| p.object == pack && p.affected.is_some())
        .unwrap_or_else(|| panic!("{:?}", report.problems));
    let a = p.affected.as_ref().unwrap();
    assert!(!a.paths_known);
    assert!(a.paths.is_empty());
    assert!(
        a.snapshots.contains(&s1) && a.snapshots.contains(&s2),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_tree_names_the_directory() {
    let (store, s1, s2, _) = two_snapshots().await;
    // Delete the tree packs: every snapshot loses its root.
    let repo = open(&store).await;
    let root = repo.load_snapshot(&s2).await.unwrap().tree;
    let tree_pack = repo.locate(PackKind::Tree, &root).unwrap().pack.id;
    store.delete(&names::pack(&tree_pack)).await.unwrap();
    let report = data_check(&*open(&store).await).await;
    let p = report
        .problems
        .iter()
        .find(|p| p.object == names::pack(&tree_pack))
        .unwrap();
    let a = p.affected.as_ref().unwrap();
    assert!(a.snapshots.contains(&s2));
    let root_path = a.paths.iter().find(|p| p.path == "/").unwrap();
    assert!(root_path.snapshots.contains(&s2));
    // s1's tree lies in its own pack unless both landed in one.
    let s1_root = repo.load_snapshot(&s1).await.unwrap().tree;
    let same_pack = repo.locate(PackKind::Tree, &s1_root).unwrap().pack.id == tree_pack;
    assert_eq!(a.snapshots.contains(&s1), same_pack);
}

/// A directory shared at different depths by two snapshots is named at both paths.
#[tokio::test(flavor = "multi_thread")]
async fn a_subtree_shared_at_different_depths_is_named_at_each_path() {
    use zaibei_format::{Node, NodeKind, Tree};
    let store = new_store().await;
    let repo = open(&store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let shared = save_files(&saver, &files(0..2, 20_000)).await.unwrap();
    let s2 = saver.clone();
    let (root1, root2) = tokio::task::spawn_blocking(move || {
        let dir = |name: &str, sub: Id| {
            let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
            n.subtree = Some(sub);
            Tree { nodes: vec![n] }
        };
        let root1 = s2.save_tree(&dir("x", shared)).unwrap();
        let mid = s2.save_tree(&dir("z", shared)).unwrap();
        let deeper = s2.save_tree(&dir("w", mid)).unwrap();
        let root2 = s2.save_tree(&dir("y", deeper)).unwrap();
        (root1, root2)
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    // The deeper snapshot first, so that the shared tree is met at its shallow depth second.
    let snap2 = repo.save_snapshot(&snapshot_of(root2)).await.unwrap();
    let snap1 = repo.save_snapshot(&snapshot_of(root1)).await.unwrap();
    let blob = open(&store).await.load_tree(&shared).await.unwrap().nodes[1].content[0];
    damage_blob(&store, &blob).await;
    let report = data_check(&*open(&store).await).await;
    let p = report
        .problems
        .iter()
        .find(|p| p.object == format!("data blob {blob}"))
        .unwrap();
    let a = p.affected.as_ref().unwrap();
    let paths: Vec<(&str, &[Id])> = a
        .paths
        .iter()
        .map(|p| (p.path.as_str(), p.snapshots.as_slice()))
        .collect();
    assert_eq!(
        paths,
        vec![("/x/f001", &[snap1][..]), ("/y/w/z/f001", &[snap2][..])]
    );
}
