//! `repair index` and `repair snapshots` on the memory store: a lost index, an unindexed
//! pack, a damaged data pack (with the full key and with the maintenance key alone), damaged
//! and missing trees, lost reference blobs, dry runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{Files, data_check, files, new_store, open, open_with, save_files, snapshot_of};
use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_format::{Id, KeyScope, Node, NodeKind, PackKind, Tree};
use zaibei_repo::repair::{
    REPAIRED_TAG, RemovalReason, RepairIndexOptions, RepairSnapshotsOptions, SnapshotOutcome,
};
use zaibei_repo::{
    BlobSaver, CheckReport, IndexedRepository, RepairIndexReport, RepairSnapshotsReport,
    Repository, repair_index, repair_snapshots,
};
use zaibei_store::Store;

/// Opens with a maintenance-only key (added on first use).
async fn open_maintenance(store: &Arc<dyn Store>) -> Arc<IndexedRepository> {
    let full = Repository::open(Arc::clone(store), b"pw").await.unwrap();
    if Repository::open(Arc::clone(store), b"maint").await.is_err() {
        full.add_key(
            b"maint",
            KeyScope::Maintenance,
            PasswordKdf::insecure_for_tests(Suite::Gm),
            "h".into(),
            "u".into(),
        )
        .await
        .unwrap();
    }
    open_with(store, b"maint").await
}

/// Saves a tree `x` holding one directory per entry of `dirs`, under a root tree; returns the
/// root. Paths in the snapshot: `/x/DIR/FILE`.
async fn save_dirs(saver: &BlobSaver, dirs: &[(&str, Files)]) -> Id {
    let mut x = Tree::default();
    for (name, files) in dirs {
        let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
        node.subtree = Some(save_files(saver, files).await.unwrap());
        x.nodes.push(node);
    }
    x.sort_and_check().unwrap();
    let s = saver.clone();
    tokio::task::spawn_blocking(move || {
        let mut node = Node::new(b"x".to_vec(), NodeKind::Dir);
        node.subtree = Some(s.save_tree(&x)?);
        s.save_tree(&Tree { nodes: vec![node] })
    })
    .await
    .unwrap()
    .unwrap()
}

/// Backs up `dirs` (see [`save_dirs`]) as one snapshot.
async fn backup_dirs(store: &Arc<dyn Store>, dirs: &[(&str, Files)]) -> Id {
    let repo = open(store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let tree = save_dirs(&saver, dirs).await;
    saver.finish().await.unwrap();
    repo.save_snapshot(&snapshot_of(tree)).await.unwrap()
}

/// Every file below `tree`, by path (`/x/a/f001`), read back.
async fn read_all(repo: &IndexedRepository, tree: &Id) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![(*tree, String::new())];
    while let Some((id, prefix)) = stack.pop() {
        let tree = repo.load_tree(&id).await.unwrap();
        for node in &tree.nodes {
            let path = format!("{prefix}/{}", String::from_utf8_lossy(&node.name));
            match node.kind {
                NodeKind::Dir => stack.push((node.subtree.unwrap(), path)),
                _ => {
                    let mut bytes = Vec::new();
                    for b in &node.content {
                        bytes.extend(repo.read_blob(PackKind::Data, b).await.unwrap());
                    }
                    out.insert(path, bytes);
                }
            }
        }
    }
    out
}

/// What `dirs` look like when read back by [`read_all`].
fn expected(dirs: &[(&str, Files)]) -> BTreeMap<String, Vec<u8>> {
    dirs.iter()
        .flat_map(|(d, files)| {
            files
                .iter()
                .map(move |(f, bytes)| (format!("/x/{d}/{f}"), bytes.clone()))
        })
        .collect()
}

async fn run_check(store: &Arc<dyn Store>) -> CheckReport {
    data_check(&*open(store).await).await
}

async fn assert_checks(store: &Arc<dyn Store>) {
    let report = run_check(store).await;
    assert_eq!(report.errors(), 0, "{:?}", report.problems);
}

async fn repair_idx(repo: &Arc<IndexedRepository>, dry_run: bool) -> RepairIndexReport {
    repair_index(
        repo,
        &RepairIndexOptions {
            dry_run,
            connections: 3,
            force: false,
        },
        &|_, _, _| {},
    )
    .await
    .unwrap()
}

async fn repair_snaps(
    store: &Arc<dyn Store>,
    forget_originals: bool,
    dry_run: bool,
) -> RepairSnapshotsReport {
    repair_snapshots(
        open(store).await,
        &RepairSnapshotsOptions {
            forget_originals,
            dry_run,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap()
}

/// Every object of the store with its bytes.
async fn everything(store: &Arc<dyn Store>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    out.insert(
        "config".to_owned(),
        store.get("config").await.unwrap().to_vec(),
    );
    for dir in ["keys", "data", "index", "snapshots", "state"] {
        for o in store.list(dir).await.unwrap() {
            let bytes = store.get(&o.name).await.unwrap();
            out.insert(o.name, bytes.to_vec());
        }
    }
    out
}

async fn names_in(store: &Arc<dyn Store>, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = store
        .list(dir)
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    v.sort();
    v
}

/// Every blob the index locates, by kind.
fn indexed_blobs(repo: &Arc<IndexedRepository>) -> Vec<(PackKind, Id)> {
    let mut v: Vec<(PackKind, Id)> = PackKind::ALL
        .iter()
        .flat_map(|&k| repo.index().blobs(k).map(move |(id, _)| (k, *id)))
        .collect();
    v.sort_by_key(|(k, id)| (*k as u8, *id));
    v
}

/// Flips a byte in the middle of the stored record of one blob, in place; returns its pack.
async fn corrupt_blob(store: &Arc<dyn Store>, kind: PackKind, blob: &Id) -> Id {
    let repo = open(store).await;
    let loc = repo.locate(kind, blob).unwrap();
    let name = zaibei_repo::names::pack(&loc.pack.id);
    let mut bytes = store.get(&name).await.unwrap().to_vec();
    let at = usize::try_from(loc.offset + loc.length / 2).unwrap();
    bytes[at] ^= 0x40;
    store.put(&name, bytes.into()).await.unwrap();
    loc.pack.id
}

/// The data blob of the file `/x/DIR/FILE` of a snapshot (files here are one blob each).
async fn blob_of(store: &Arc<dyn Store>, snap: &Id, dir: &str, file: &str) -> Id {
    let repo = open(store).await;
    let root = repo.load_snapshot(snap).await.unwrap().tree;
    let x = repo.load_tree(&root).await.unwrap().nodes[0]
        .subtree
        .unwrap();
    let d = repo
        .load_tree(&x)
        .await
        .unwrap()
        .find(dir.as_bytes())
        .unwrap()
        .subtree
        .unwrap();
    let t = repo.load_tree(&d).await.unwrap();
    t.find(file.as_bytes()).unwrap().content[0]
}

/// The tree of the directory `/x/DIR` of a snapshot.
async fn tree_of(store: &Arc<dyn Store>, snap: &Id, dir: &str) -> Id {
    let repo = open(store).await;
    let root = repo.load_snapshot(snap).await.unwrap().tree;
    let x = repo.load_tree(&root).await.unwrap().nodes[0]
        .subtree
        .unwrap();
    let t = repo.load_tree(&x).await.unwrap();
    t.find(dir.as_bytes()).unwrap().subtree.unwrap()
}

fn dirs_a() -> Vec<(&'static str, Files)> {
    vec![("a", files(0..12, 3_000)), ("b", files(20..32, 3_000))]
}

fn dirs_b() -> Vec<(&'static str, Files)> {
    vec![("c", files(100..110, 5_000))]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_index_is_rebuilt_from_the_packs() {
    let store = new_store().await;
    let (da, db) = (dirs_a(), dirs_b());
    let sa = backup_dirs(&store, &da).await;
    let sb = backup_dirs(&store, &db).await;
    let before = indexed_blobs(&open(&store).await);
    let old_index = names_in(&store, "index").await;
    assert!(!old_index.is_empty());
    for name in &old_index {
        store.delete(name).await.unwrap();
    }
    let lost = run_check(&store).await;
    assert!(
        lost.errors() > 0,
        "check finds nothing wrong without an index"
    );

    let repo = open(&store).await;
    assert!(indexed_blobs(&repo).is_empty());
    let r = repair_idx(&repo, false).await;
    assert!(r.complete(), "{r:?}");
    assert_eq!(r.index_replaced, 0);
    assert_eq!(r.packs_listed, names_in(&store, "data").await.len());
    assert_eq!(r.packs_read, r.packs_listed);
    assert_eq!(r.packs_indexed, r.packs_listed);
    assert_eq!(r.packs_added, r.packs_listed);
    assert_eq!(r.blobs_indexed as usize, before.len());
    assert!(r.damaged.is_empty() && r.unreadable.is_empty() && r.missing.is_empty());

    let repo = open(&store).await;
    assert_eq!(indexed_blobs(&repo), before, "every blob is located again");
    assert_checks(&store).await;
    for (snap, dirs) in [(sa, &da), (sb, &db)] {
        let tree = repo.load_snapshot(&snap).await.unwrap().tree;
        assert!(read_all(&repo, &tree).await == expected(dirs));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pack_missing_from_the_index_is_indexed_again() {
    let store = new_store().await;
    backup_dirs(&store, &dirs_a()).await;
    let old_index = names_in(&store, "index").await;
    backup_dirs(&store, &dirs_b()).await;
    let before = indexed_blobs(&open(&store).await);
    // An interrupted backup: its packs are stored, its index object is not.
    let second: Vec<String> = names_in(&store, "index")
        .await
        .into_iter()
        .filter(|n| !old_index.contains(n))
        .collect();
    assert_eq!(second.len(), 1, "one index object per small backup");
    let lost_packs = {
        let bytes = store.get(&second[0]).await.unwrap();
        let repo = open(&store).await;
        zaibei_format::IndexFile::open(repo.keys().maintenance(), &bytes)
            .unwrap()
            .packs
            .len()
    };
    store.delete(&second[0]).await.unwrap();
    assert!(run_check(&store).await.errors() > 0);

    let repo = open(&store).await;
    let r = repair_idx(&repo, false).await;
    assert!(r.complete(), "{r:?}");
    assert_eq!(r.packs_added, lost_packs);
    assert_eq!(r.index_replaced, old_index.len());
    assert_eq!(r.index_deleted, old_index.len());
    assert_eq!(r.index_written, 1);
    assert_eq!(
        names_in(&store, "index").await.len(),
        1,
        "the old index objects are gone"
    );
    assert_eq!(indexed_blobs(&open(&store).await), before);
    assert_checks(&store).await;

    // On an intact repository, repair only rewrites the index.
    let again = repair_idx(&open(&store).await, false).await;
    assert!(again.complete(), "{again:?}");
    assert_eq!(again.packs_added, 0);
    assert_eq!(indexed_blobs(&open(&store).await), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_data_pack_is_salvaged_with_the_full_key() {
    let store = new_store().await;
    let sa = backup_dirs(&store, &dirs_a()).await;
    let victim = blob_of(&store, &sa, "a", "f003").await;
    let before = indexed_blobs(&open(&store).await);
    let pack = corrupt_blob(&store, PackKind::Data, &victim).await;
    let in_pack: Vec<Id> = {
        let repo = open(&store).await;
        repo.index()
            .blobs(PackKind::Data)
            .filter(|(_, l)| l.pack.id == pack)
            .map(|(id, _)| *id)
            .collect()
    };
    assert!(in_pack.len() > 2, "the damaged pack holds other blobs");

    let r = repair_idx(&open(&store).await, false).await;
    assert!(!r.complete());
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    let d = &r.damaged[0];
    assert_eq!(d.id, pack);
    assert_eq!(d.kind, PackKind::Data);
    assert_eq!(
        (d.blobs, d.salvaged, d.copied, d.damaged, d.lost),
        (in_pack.len(), in_pack.len() - 1, in_pack.len() - 1, 1, 1)
    );
    assert!(r.unreadable.is_empty() && r.missing.is_empty());
    assert_eq!(r.blobs_unindexed, 1);
    let new_pack = d.new_pack.expect("a pack of the salvaged blobs");
    let data = names_in(&store, "data").await;
    assert!(
        data.contains(&zaibei_repo::names::pack(&pack)),
        "the damaged pack stays"
    );
    assert!(data.contains(&zaibei_repo::names::pack(&new_pack)));

    let repo = open(&store).await;
    assert!(!repo.index().contains(PackKind::Data, &victim));
    assert!(repo.index().pack(&pack).is_none());
    for id in in_pack.iter().filter(|b| **b != victim) {
        assert_eq!(repo.locate(PackKind::Data, id).unwrap().pack.id, new_pack);
        repo.read_blob(PackKind::Data, id).await.unwrap();
    }
    let after = indexed_blobs(&repo);
    assert_eq!(after.len(), before.len() - 1);
    // Only the snapshot's need of the lost blob is left for check to report.
    let report = run_check(&store).await;
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.severity == zaibei_repo::Severity::Warning
                || p.affected.as_ref().is_some_and(|a| a
                    .paths
                    .iter()
                    .map(|x| x.path.as_str())
                    .eq(["/x/a/f003"]))),
        "{:?}",
        report.problems
    );
    assert!(report.errors() > 0);

    // Running it again copies nothing new: the salvaged blobs are held by the new pack.
    let again = repair_idx(&open(&store).await, false).await;
    assert_eq!(again.damaged.len(), 1, "{again:?}");
    let d = &again.damaged[0];
    assert_eq!(
        (d.salvaged, d.copied, d.lost, d.new_pack),
        (d.blobs - 1, 0, 1, None)
    );
    assert_eq!(again.blobs_unindexed, 0);
    assert_eq!(indexed_blobs(&open(&store).await), after);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_data_pack_keeps_its_index_entry_with_the_maintenance_key() {
    let store = new_store().await;
    let sa = backup_dirs(&store, &dirs_a()).await;
    let victim = blob_of(&store, &sa, "b", "f021").await;
    let before = indexed_blobs(&open(&store).await);
    let pack = corrupt_blob(&store, PackKind::Data, &victim).await;
    let in_pack = open(&store)
        .await
        .index()
        .blobs(PackKind::Data)
        .filter(|(_, l)| l.pack.id == pack)
        .count();
    assert!(in_pack > 2, "the damaged pack holds other blobs");
    let data_before = names_in(&store, "data").await;

    let maint = open_maintenance(&store).await;
    let r = repair_idx(&maint, false).await;
    assert!(r.unreadable.is_empty(), "{r:?}");
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    let d = &r.damaged[0];
    assert_eq!(
        (d.id, d.kind, d.kept, d.header_damaged),
        (pack, PackKind::Data, true, false)
    );
    assert_eq!((d.blobs, d.copied, d.new_pack), (in_pack, 0, None));
    assert_eq!(r.blobs_unindexed, 0, "nothing is unindexed");
    assert!(r.needs_full_key() && !r.complete());
    assert_eq!(
        names_in(&store, "data").await,
        data_before,
        "no pack written or deleted"
    );
    // Every blob stays indexed where it was, the damaged one included.
    let repo = open(&store).await;
    assert!(repo.index().pack(&pack).is_some());
    assert_eq!(indexed_blobs(&repo), before);

    // A full key salvages it later: every intact blob copied, the damaged one lost.
    let full = repair_idx(&open(&store).await, false).await;
    assert_eq!(full.damaged.len(), 1, "{full:?}");
    let d = &full.damaged[0];
    assert!(!d.kept && !full.needs_full_key());
    assert_eq!(
        (d.salvaged, d.copied, d.damaged, d.lost),
        (in_pack - 1, in_pack - 1, 1, 1)
    );
    let new_pack = d.new_pack.unwrap();
    let repo = open(&store).await;
    assert!(repo.index().pack(&pack).is_none());
    assert!(!repo.index().contains(PackKind::Data, &victim));
    assert_eq!(indexed_blobs(&repo).len(), before.len() - 1);
    for (kind, id) in before.iter().filter(|(_, id)| *id != victim) {
        if repo.locate(*kind, id).unwrap().pack.id == new_pack {
            repo.read_blob(*kind, id).await.unwrap();
        }
    }
}

/// The data pack holding the most blobs, with its blobs (in offset order) and its size.
async fn biggest_data_pack(store: &Arc<dyn Store>) -> (Id, Vec<(Id, u64, u64)>, u64) {
    let repo = open(store).await;
    let mut by_pack: BTreeMap<Id, Vec<(Id, u64, u64)>> = BTreeMap::new();
    for (id, l) in repo.index().blobs(PackKind::Data) {
        by_pack
            .entry(l.pack.id)
            .or_default()
            .push((*id, l.offset, l.length));
    }
    let (pack, mut blobs) = by_pack.into_iter().max_by_key(|(_, v)| v.len()).unwrap();
    blobs.sort_by_key(|b| b.1);
    let size = repo.index().pack(&pack).unwrap().size;
    (pack, blobs, size)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_truncated_data_pack_is_salvaged_through_the_old_index() {
    let store = new_store().await;
    backup_dirs(&store, &dirs_a()).await;
    let (pack, blobs, size) = biggest_data_pack(&store).await;
    let cut = size * 6 / 10;
    let (whole, cut_off): (Vec<_>, Vec<_>) = blobs.iter().partition(|(_, o, l)| o + l <= cut);
    assert!(whole.len() > 1 && !cut_off.is_empty(), "{blobs:?} {size}");
    let name = zaibei_repo::names::pack(&pack);
    let bytes = store.get(&name).await.unwrap();
    store
        .put(&name, bytes.slice(..usize::try_from(cut).unwrap()))
        .await
        .unwrap();

    // The maintenance key cannot authenticate data: the old entry is kept as it was.
    let r = repair_idx(&open_maintenance(&store).await, false).await;
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    assert!(r.damaged[0].kept && r.damaged[0].header_damaged, "{r:?}");
    assert!(open(&store).await.index().pack(&pack).is_some());

    // The full key salvages what lies wholly before the cut.
    let r = repair_idx(&open(&store).await, false).await;
    assert!(!r.complete());
    assert!(r.unreadable.is_empty(), "{r:?}");
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    let d = &r.damaged[0];
    assert_eq!((d.id, d.header_damaged, d.kept), (pack, true, false));
    assert_eq!(
        (d.blobs, d.salvaged, d.copied, d.lost),
        (blobs.len(), whole.len(), whole.len(), cut_off.len())
    );
    assert_eq!(r.blobs_unindexed, cut_off.len() as u64);
    let new_pack = d.new_pack.unwrap();
    let repo = open(&store).await;
    assert!(repo.index().pack(&pack).is_none());
    for (id, _, _) in &whole {
        assert_eq!(repo.locate(PackKind::Data, id).unwrap().pack.id, new_pack);
        repo.read_blob(PackKind::Data, id).await.unwrap();
    }
    for (id, _, _) in &cut_off {
        assert!(!repo.index().contains(PackKind::Data, id));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pack_with_a_damaged_header_is_salvaged_through_the_old_index() {
    let store = new_store().await;
    let (da, db) = (dirs_a(), dirs_b());
    let sa = backup_dirs(&store, &da).await;
    let sb = backup_dirs(&store, &db).await;
    let before = indexed_blobs(&open(&store).await);
    let (pack, blobs, size) = biggest_data_pack(&store).await;
    // The sealed header lies between the last blob and the trailer.
    let header_start = blobs.iter().map(|(_, o, l)| o + l).max().unwrap();
    let header_end = size - zaibei_format::pack::PACK_TRAILER_LEN as u64;
    assert!(header_end > header_start + 16);
    let name = zaibei_repo::names::pack(&pack);
    let mut bytes = store.get(&name).await.unwrap().to_vec();
    bytes[usize::try_from((header_start + header_end) / 2).unwrap()] ^= 0x10;
    store.put(&name, bytes.into()).await.unwrap();

    let r = repair_idx(&open(&store).await, false).await;
    assert_eq!(r.damaged.len(), 1, "{r:?}");
    let d = &r.damaged[0];
    assert_eq!((d.id, d.header_damaged, d.kept), (pack, true, false));
    assert_eq!(
        (d.blobs, d.salvaged, d.copied, d.damaged, d.lost),
        (blobs.len(), blobs.len(), blobs.len(), 0, 0)
    );
    assert!(r.complete(), "{r:?}");
    let repo = open(&store).await;
    assert_eq!(indexed_blobs(&repo), before);
    assert!(repo.index().pack(&pack).is_none());
    for (snap, dirs) in [(sa, &da), (sb, &db)] {
        let tree = repo.load_snapshot(&snap).await.unwrap().tree;
        assert!(read_all(&repo, &tree).await == expected(dirs));
    }
    assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_index_refuses_when_many_indexed_packs_are_missing() {
    let store = new_store().await;
    backup_dirs(&store, &dirs_a()).await;
    let data = names_in(&store, "data").await;
    let index_before = names_in(&store, "index").await;
    assert!(data.len() >= 3, "{data:?}");
    store.delete(&data[0]).await.unwrap();
    let repo = open(&store).await;
    let err = repair_index(&repo, &RepairIndexOptions::default(), &|_, _, _| {})
        .await
        .unwrap_err();
    assert!(err.to_string().contains("--force"), "{err}");
    assert_eq!(
        names_in(&store, "index").await,
        index_before,
        "nothing written"
    );
    let r = repair_index(
        &repo,
        &RepairIndexOptions {
            force: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(r.missing.len(), 1);
    assert!(!r.complete());
}

#[tokio::test(flavor = "multi_thread")]
async fn repaired_snapshots_leave_out_damaged_files_and_keep_the_originals() {
    let store = new_store().await;
    let (da, db) = (dirs_a(), dirs_b());
    let sa = backup_dirs(&store, &da).await;
    let sb = backup_dirs(&store, &db).await;
    let victim = blob_of(&store, &sa, "a", "f003").await;
    corrupt_blob(&store, PackKind::Data, &victim).await;
    repair_idx(&open(&store).await, false).await;
    let original_bytes = store.get(&zaibei_repo::names::snapshot(&sa)).await.unwrap();
    let sb_bytes = store.get(&zaibei_repo::names::snapshot(&sb)).await.unwrap();

    let r = repair_snaps(&store, false, false).await;
    assert!(r.complete(), "{r:?}");
    assert_eq!((r.repaired(), r.intact(), r.unrepairable()), (1, 1, 0));
    assert_eq!(r.trees_written, 3, "the tree of a, of x and the root");
    let ra = r.snapshots.iter().find(|s| s.id == sa).unwrap();
    let rb = r.snapshots.iter().find(|s| s.id == sb).unwrap();
    assert_eq!(rb.outcome, SnapshotOutcome::Intact);
    assert!(rb.removed.is_empty() && !rb.forgotten);
    assert_eq!(ra.removed.len(), 1);
    assert_eq!(ra.removed[0].path, b"/x/a/f003");
    assert_eq!(ra.removed[0].reason, RemovalReason::MissingData(victim));
    assert!(!ra.forgotten);
    let SnapshotOutcome::Repaired {
        snapshot: Some(new),
        tree,
        earlier: false,
    } = ra.outcome
    else {
        panic!("{:?}", ra.outcome)
    };

    // The original is untouched; the undamaged snapshot was not rewritten.
    let sa_now = store.get(&zaibei_repo::names::snapshot(&sa)).await.unwrap();
    assert_eq!(sa_now, original_bytes);
    let sb_now = store.get(&zaibei_repo::names::snapshot(&sb)).await.unwrap();
    assert_eq!(sb_now, sb_bytes);
    assert_eq!(names_in(&store, "snapshots").await.len(), 3);

    // The replacement: same fields, new tree, tagged, pointing at the original.
    let repo = open(&store).await;
    let old = repo.load_snapshot(&sa).await.unwrap();
    let replacement = repo.load_snapshot(&new).await.unwrap();
    assert_eq!(replacement.tree, tree);
    assert_eq!(replacement.original, Some(sa));
    assert_eq!(replacement.tags, vec![REPAIRED_TAG.to_owned()]);
    let mut same = replacement.clone();
    same.tree = old.tree;
    same.tags = old.tags.clone();
    same.original = None;
    assert_eq!(same, old);
    let mut want = expected(&da);
    want.remove("/x/a/f003");
    assert!(read_all(&repo, &tree).await == want, "replacement contents");
    // The untouched directory keeps its tree.
    assert_eq!(
        tree_of(&store, &new, "b").await,
        tree_of(&store, &sa, "b").await
    );
    assert_ne!(
        tree_of(&store, &new, "a").await,
        tree_of(&store, &sa, "a").await
    );
    // The original still needs the lost blob.
    assert!(run_check(&store).await.errors() > 0);

    // Again, forgetting the originals: the replacement is reused, the original goes.
    let f = repair_snaps(&store, true, false).await;
    let fa = f.snapshots.iter().find(|s| s.id == sa).unwrap();
    assert_eq!(
        fa.outcome,
        SnapshotOutcome::Repaired {
            snapshot: Some(new),
            tree,
            earlier: true
        }
    );
    assert!(fa.forgotten);
    let fb = f.snapshots.iter().find(|s| s.id == sb).unwrap();
    assert!(!fb.forgotten, "an intact snapshot is never forgotten");
    let mut left = names_in(&store, "snapshots").await;
    left.sort();
    let mut want_left = vec![
        zaibei_repo::names::snapshot(&sb),
        zaibei_repo::names::snapshot(&new),
    ];
    want_left.sort();
    assert_eq!(left, want_left);
    assert_checks(&store).await;
    // The replacement of a snapshot that is itself intact needs nothing.
    let idle = repair_snaps(&store, true, false).await;
    assert_eq!((idle.repaired(), idle.intact()), (0, 2));
}

#[tokio::test(flavor = "multi_thread")]
async fn forget_originals_in_one_run_leaves_a_repository_that_checks() {
    let store = new_store().await;
    let da = dirs_a();
    let sa = backup_dirs(&store, &da).await;
    let sb = backup_dirs(&store, &dirs_b()).await;
    let victim = blob_of(&store, &sa, "b", "f025").await;
    corrupt_blob(&store, PackKind::Data, &victim).await;
    repair_idx(&open(&store).await, false).await;
    let r = repair_snapshots(
        open(&store).await,
        &RepairSnapshotsOptions {
            snapshots: vec![sa],
            forget_originals: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(r.snapshots.len(), 1, "only the snapshot asked for");
    assert!(r.snapshots[0].forgotten);
    let SnapshotOutcome::Repaired {
        snapshot: Some(new),
        ..
    } = r.snapshots[0].outcome
    else {
        panic!("{:?}", r.snapshots[0].outcome)
    };
    let repo = open(&store).await;
    assert!(
        repo.load_snapshot(&sa).await.is_err(),
        "the original is gone"
    );
    repo.load_snapshot(&sb).await.unwrap();
    assert_checks(&store).await;
    let mut want = expected(&da);
    want.remove("/x/b/f025");
    let tree = repo.load_snapshot(&new).await.unwrap().tree;
    assert!(read_all(&repo, &tree).await == want);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_runs_write_nothing() {
    let store = new_store().await;
    let sa = backup_dirs(&store, &dirs_a()).await;
    backup_dirs(&store, &dirs_b()).await;
    let victim = blob_of(&store, &sa, "a", "f001").await;
    corrupt_blob(&store, PackKind::Data, &victim).await;
    // Also unindexed packs: one backup's index object is lost.
    let index = names_in(&store, "index").await;
    store.delete(&index[0]).await.unwrap();

    let before = everything(&store).await;
    let dry = repair_idx(&open(&store).await, true).await;
    assert!(dry.dry_run);
    assert_eq!(
        everything(&store).await,
        before,
        "repair index --dry-run wrote"
    );
    assert_eq!((dry.index_written, dry.index_deleted), (0, 0));
    assert_eq!(dry.damaged.len(), 1);
    assert!(dry.damaged[0].new_pack.is_none());
    let real = repair_idx(&open(&store).await, false).await;
    assert_eq!(real.packs_indexed, dry.packs_indexed);
    assert_eq!(real.blobs_indexed, dry.blobs_indexed);
    assert_eq!(real.packs_added, dry.packs_added);
    assert!(real.packs_added > 0);
    assert_eq!(real.blobs_unindexed, dry.blobs_unindexed);
    let mut d = real.damaged[0].clone();
    assert!(d.new_pack.is_some());
    d.new_pack = None;
    assert_eq!(d, dry.damaged[0]);

    let before = everything(&store).await;
    let dry = repair_snaps(&store, true, true).await;
    assert_eq!(
        everything(&store).await,
        before,
        "repair snapshots --dry-run wrote"
    );
    let ra = dry.snapshots.iter().find(|s| s.id == sa).unwrap();
    assert!(matches!(
        ra.outcome,
        SnapshotOutcome::Repaired { snapshot: None, .. }
    ));
    assert!(!ra.forgotten);
    assert_eq!(ra.removed.len(), 1);
    // The dry run names the tree the real run writes.
    let real = repair_snaps(&store, false, false).await;
    let rr = real.snapshots.iter().find(|s| s.id == sa).unwrap();
    let tree_of_outcome = |o: &SnapshotOutcome| match o {
        SnapshotOutcome::Repaired { tree, .. } => *tree,
        other => panic!("{other:?}"),
    };
    assert_eq!(tree_of_outcome(&rr.outcome), tree_of_outcome(&ra.outcome));
    assert_eq!(rr.removed, ra.removed);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_or_damaged_subtree_is_left_out() {
    let store = new_store().await;
    let da = dirs_a();
    let sa = backup_dirs(&store, &da).await;
    let sb = backup_dirs(&store, &dirs_b()).await;
    let lost_tree = tree_of(&store, &sa, "a").await;
    corrupt_blob(&store, PackKind::Tree, &lost_tree).await;

    // Before the index is repaired, the tree is indexed but does not open.
    let dry = repair_snaps(&store, false, true).await;
    let ra = dry.snapshots.iter().find(|s| s.id == sa).unwrap();
    assert_eq!(ra.removed.len(), 1, "{:?}", ra.removed);
    assert_eq!(ra.removed[0].path, b"/x/a");
    assert!(
        matches!(&ra.removed[0].reason, RemovalReason::DamagedTree { tree, .. } if *tree == lost_tree),
        "{:?}",
        ra.removed[0].reason
    );

    // The index repair salvages the other trees of that pack; the lost one is missing.
    let ri = repair_idx(&open(&store).await, false).await;
    assert_eq!(ri.damaged.len(), 1);
    assert_eq!(ri.damaged[0].kind, PackKind::Tree);
    assert_eq!(ri.damaged[0].lost, 1);
    let r = repair_snaps(&store, true, false).await;
    assert!(r.complete(), "{r:?}");
    let ra = r.snapshots.iter().find(|s| s.id == sa).unwrap();
    assert_eq!(ra.removed.len(), 1);
    assert_eq!(ra.removed[0].path, b"/x/a");
    assert_eq!(ra.removed[0].reason, RemovalReason::MissingTree(lost_tree));
    assert!(ra.forgotten);
    let SnapshotOutcome::Repaired {
        snapshot: Some(new),
        tree,
        ..
    } = ra.outcome
    else {
        panic!("{:?}", ra.outcome)
    };
    let repo = open(&store).await;
    let want: BTreeMap<String, Vec<u8>> = expected(&da)
        .into_iter()
        .filter(|(p, _)| !p.starts_with("/x/a/"))
        .collect();
    assert!(read_all(&repo, &tree).await == want);
    assert_eq!(repo.load_snapshot(&new).await.unwrap().tree, tree);
    repo.load_snapshot(&sb).await.unwrap();
    assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_whose_root_is_lost_is_reported_and_kept() {
    let store = new_store().await;
    let sa = backup_dirs(&store, &dirs_a()).await;
    let root = open(&store).await.load_snapshot(&sa).await.unwrap().tree;
    corrupt_blob(&store, PackKind::Tree, &root).await;
    repair_idx(&open(&store).await, false).await;
    let r = repair_snaps(&store, true, false).await;
    assert_eq!(r.unrepairable(), 1, "{r:?}");
    assert!(!r.complete());
    assert_eq!(
        r.snapshots[0].outcome,
        SnapshotOutcome::Unrepairable(RemovalReason::MissingTree(root))
    );
    assert!(!r.snapshots[0].forgotten);
    assert_eq!(
        names_in(&store, "snapshots").await.len(),
        1,
        "never forgotten"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lost_reference_blobs_are_stored_again() {
    let store = new_store().await;
    let sa = backup_dirs(&store, &dirs_a()).await;
    let tree = tree_of(&store, &sa, "b").await;
    corrupt_blob(&store, PackKind::Refs, &tree).await;
    // Reference packs are salvaged with the maintenance key alone.
    let ri = repair_idx(&open_maintenance(&store).await, false).await;
    assert_eq!(ri.damaged.len(), 1, "{ri:?}");
    assert_eq!(
        (ri.damaged[0].kind, ri.damaged[0].lost),
        (PackKind::Refs, 1)
    );
    assert!(
        run_check(&store).await.errors() > 0,
        "the reference blob is missing"
    );
    let r = repair_snaps(&store, false, false).await;
    assert_eq!(r.refs_restored, 1);
    assert_eq!((r.repaired(), r.intact()), (0, 1), "no snapshot changes");
    assert!(open(&store).await.index().contains(PackKind::Refs, &tree));
    assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_snapshots_needs_the_full_key_and_a_readable_index() {
    let store = new_store().await;
    backup_dirs(&store, &dirs_a()).await;
    let err = repair_snapshots(
        open_maintenance(&store).await,
        &RepairSnapshotsOptions::default(),
        &|_, _, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("full key"), "{err}");
    // A damaged index object: repair snapshots refuses until repair index ran.
    let index = names_in(&store, "index").await;
    let mut bytes = store.get(&index[0]).await.unwrap().to_vec();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    store.put(&index[0], bytes.into()).await.unwrap();
    let err = repair_snapshots(
        open(&store).await,
        &RepairSnapshotsOptions::default(),
        &|_, _, _| {},
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("repair index"), "{err}");
    let ri = repair_idx(&open(&store).await, false).await;
    assert!(ri.complete(), "{ri:?}");
    let r = repair_snaps(&store, false, false).await;
    assert_eq!(r.intact(), 1);
    assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn repair_snapshots_refuses_while_an_intact_pack_is_unindexed() {
    let store = new_store().await;
    backup_dirs(&store, &dirs_a()).await;
    backup_dirs(&store, &dirs_b()).await;
    let index = names_in(&store, "index").await;
    store.delete(&index[0]).await.unwrap();
    let before = everything(&store).await;
    for forget_originals in [false, true] {
        let err = repair_snapshots(
            open(&store).await,
            &RepairSnapshotsOptions {
                forget_originals,
                ..Default::default()
            },
            &|_, _, _| {},
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("in no index") && err.to_string().contains("repair index"),
            "{err}"
        );
    }
    assert!(everything(&store).await == before, "nothing written");
    // Once the index is rebuilt, nothing needs repairing.
    assert!(repair_idx(&open(&store).await, false).await.complete());
    let r = repair_snaps(&store, true, false).await;
    assert_eq!((r.intact(), r.repaired()), (2, 0));
}

#[tokio::test(flavor = "multi_thread")]
async fn reference_blobs_of_a_deleted_pack_are_stored_again() {
    let store = new_store().await;
    backup_dirs(&store, &dirs_a()).await;
    let repo = open(&store).await;
    let refs: Vec<Id> = repo
        .index()
        .blobs(PackKind::Refs)
        .map(|(id, _)| *id)
        .collect();
    let packs: std::collections::BTreeSet<Id> = refs
        .iter()
        .map(|id| repo.locate(PackKind::Refs, id).unwrap().pack.id)
        .collect();
    assert!(!refs.is_empty());
    for p in &packs {
        store.delete(&zaibei_repo::names::pack(p)).await.unwrap();
    }
    // The index still lists the deleted pack: the saver must not skip its blobs.
    let r = repair_snaps(&store, false, false).await;
    assert_eq!(r.refs_restored, refs.len(), "{r:?}");
    assert_eq!((r.intact(), r.repaired()), (1, 0));
    let ri = repair_index(
        &*open(&store).await,
        &RepairIndexOptions {
            force: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(ri.missing, packs.into_iter().collect::<Vec<_>>());
    let repo = open(&store).await;
    for id in &refs {
        repo.read_blob(PackKind::Refs, id).await.unwrap();
    }
    assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_blob_whose_first_copy_is_gone_is_present_through_its_second() {
    let store = new_store().await;
    let sa = backup_dirs(&store, &dirs_a()).await;
    let blob = blob_of(&store, &sa, "a", "f003").await;
    // A second copy of the blob in a pack of its own, indexed.
    let repo = open(&store).await;
    let name = zaibei_repo::names::pack(&repo.locate(PackKind::Data, &blob).unwrap().pack.id);
    let source = store.get(&name).await.unwrap();
    let copy = zaibei_repo::repack::shrink_pack(
        repo.keys().maintenance(),
        repo.suite(),
        &name,
        &source,
        |id| *id == blob,
    )
    .unwrap();
    store
        .put(&zaibei_repo::names::pack(&copy.id), copy.bytes.clone())
        .await
        .unwrap();
    let index = zaibei_format::IndexFile {
        packs: vec![copy.index],
        supersedes: vec![],
    }
    .seal(repo.keys().maintenance())
    .unwrap();
    let index_id = Id(repo.suite().hash(&index));
    store
        .put(&zaibei_repo::names::index(&index_id), index.into())
        .await
        .unwrap();
    // The copy the index gives first goes.
    let repo = open(&store).await;
    assert_eq!(repo.index().locations(PackKind::Data, &blob).len(), 2);
    let first = repo.locate(PackKind::Data, &blob).unwrap().pack.id;
    store
        .delete(&zaibei_repo::names::pack(&first))
        .await
        .unwrap();

    let r = repair_snaps(&store, false, true).await;
    let removed: Vec<String> = r
        .snapshots
        .iter()
        .flat_map(|s| s.removed.iter())
        .map(|p| String::from_utf8_lossy(&p.path).into_owned())
        .collect();
    assert!(!removed.contains(&"/x/a/f003".to_owned()), "{removed:?}");
}
