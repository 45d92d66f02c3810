//! Prune on the memory and fs stores: two-phase deletion, repacking, take-back, orphans, and
//! a backup running beside a prune.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use zaibei_crypto::{PasswordKdf, Suite};
mod common;

use common::{
    Files, backup, data, data_check, files, new_repo, open, read_tree, save_files, snapshot_of,
};
use zaibei_format::{Id, PackKind};
use zaibei_repo::{
    BlobSaver, MaxUnused, PackWriter, PruneOptions, PruneReport, RepoError, Repository, prune,
};
use zaibei_store::{FsStore, MemoryStore, Store};

/// Reads every file of a snapshot back.
async fn read_back(store: &Arc<dyn Store>, snap: &Id) -> Files {
    let repo = open(store).await;
    let s = repo.load_snapshot(snap).await.unwrap();
    read_tree(&repo, &s.tree).await
}

async fn run_prune(store: &Arc<dyn Store>, margin: u64, max_unused: MaxUnused) -> PruneReport {
    let repo = open(store).await;
    let opts = PruneOptions {
        max_unused,
        margin: Duration::from_secs(margin),
        ..Default::default()
    };
    prune(&repo, &opts, &|_, _, _| {}).await.unwrap()
}

async fn assert_checks(store: &Arc<dyn Store>) {
    let report = data_check(&*open(store).await).await;
    assert_eq!(report.errors(), 0, "{:?}", report.problems);
}

async fn stored_bytes(store: &Arc<dyn Store>) -> u64 {
    store
        .list("data")
        .await
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

async fn forget(store: &Arc<dyn Store>, id: &Id) {
    let repo = Repository::open(Arc::clone(store), b"pw").await.unwrap();
    repo.forget_snapshot(id).await.unwrap();
}

async fn two_phase_deletion(store: Arc<dyn Store>) {
    new_repo(Arc::clone(&store)).await;
    let a = files(0..20, 30_000);
    let b = files(100..120, 30_000);
    let sa = backup(&store, &a).await;
    let sb = backup(&store, &b).await;
    let before = stored_bytes(&store).await;
    forget(&store, &sa).await;

    // Phase one: the unused packs are condemned, nothing is deleted.
    let mark = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert!(mark.unused_packs > 0, "{mark:?}");
    assert_eq!(mark.deleted_packs, 0);
    assert_eq!(mark.waiting_packs, mark.unused_packs);
    assert_eq!(stored_bytes(&store).await, before);
    assert_checks(&store).await;
    // A second run inside the margin changes nothing.
    let again = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert_eq!(again.deleted_packs, 0);
    assert_eq!(again.unused_packs, 0);
    assert_eq!(again.waiting_packs, mark.waiting_packs);

    // Phase two, once the margin has passed (here: a margin of zero).
    let sweep = run_prune(&store, 0, MaxUnused::Percent(5.0)).await;
    assert_eq!(sweep.deleted_packs, mark.waiting_packs, "{sweep:?}");
    let after = stored_bytes(&store).await;
    assert!(after < before / 2 + before / 10, "{after} of {before}");
    assert_checks(&store).await;
    assert!(
        read_back(&store, &sb).await == b,
        "snapshot contents differ"
    );
    // Nothing is left to do.
    let idle = run_prune(&store, 0, MaxUnused::Percent(0.0)).await;
    assert_eq!(
        idle.deleted_packs + idle.unused_packs + idle.repacked_packs,
        0,
        "{idle:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_phase_deletion_memory() {
    two_phase_deletion(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_phase_deletion_fs() {
    let dir = tempfile::tempdir().unwrap();
    two_phase_deletion(Arc::new(FsStore::new(dir.path().join("r")))).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partly_used_packs_are_repacked_with_the_maintenance_key() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    // Two snapshots whose blobs share packs (small files, saved in one go), then one goes.
    let both = files(0..40, 3_000);
    let half: Files = both.iter().step_by(2).cloned().collect();
    let s_all = backup(&store, &both).await;
    let s_half = backup(&store, &half).await;
    forget(&store, &s_all).await;
    let before = stored_bytes(&store).await;

    // With only the maintenance key.
    let full = Repository::open(Arc::clone(&store), b"pw").await.unwrap();
    full.add_key(
        b"maint",
        zaibei_format::KeyScope::Maintenance,
        PasswordKdf::insecure_for_tests(Suite::Gm),
        "h".into(),
        "u".into(),
    )
    .await
    .unwrap();
    let maint = Repository::open(Arc::clone(&store), b"maint")
        .await
        .unwrap()
        .load_index()
        .await
        .unwrap();
    let report = prune(
        &maint,
        &PruneOptions {
            max_unused: MaxUnused::Percent(0.0),
            margin: Duration::ZERO,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert!(report.repacked_packs > 0, "{report:?}");
    assert_eq!(report.unused_bytes_after, 0);
    assert!(report.repacked_bytes_after < report.repacked_bytes_before);
    let after = stored_bytes(&store).await;
    assert!(after < before * 6 / 10, "{after} of {before}");
    assert_checks(&store).await;
    assert!(
        read_back(&store, &s_half).await == half,
        "snapshot contents differ"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_beside_a_prune_stores_condemned_blobs_again() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    let old = files(0..10, 30_000);
    let s_old = backup(&store, &old).await;
    forget(&store, &s_old).await;

    // A backup starts while the old data is still there and deduplicates against it...
    let repo = open(&store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let mut new = old.clone();
    new.push(("g-extra".into(), data(999, 5_000)));
    let tree = save_files(&saver, &new).await.unwrap();
    // ...a prune condemns the packs no snapshot needs (this backup has none yet)...
    let mark = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert!(mark.unused_packs > 0);
    // ...and before publishing, the backup stores those blobs again.
    let stats = saver.finish().await.unwrap();
    assert!(stats.blobs_rescued > 0, "{stats:?}");
    let s_new = repo.save_snapshot(&snapshot_of(tree)).await.unwrap();

    let sweep = run_prune(&store, 0, MaxUnused::Percent(5.0)).await;
    assert!(sweep.deleted_packs > 0, "{sweep:?}");
    assert_checks(&store).await;
    assert!(
        read_back(&store, &s_new).await == new,
        "snapshot contents differ"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snapshot_published_after_the_mark_takes_its_packs_back() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    let old = files(0..10, 30_000);
    let s_old = backup(&store, &old).await;
    let tree = open(&store).await.load_snapshot(&s_old).await.unwrap().tree;
    forget(&store, &s_old).await;
    let mark = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert!(mark.unused_packs > 0);
    // A writer that skipped its re-check publishes a snapshot of the condemned tree.
    let s_new = open(&store)
        .await
        .save_snapshot(&snapshot_of(tree))
        .await
        .unwrap();
    let sweep = run_prune(&store, 0, MaxUnused::Percent(5.0)).await;
    assert_eq!(sweep.taken_back, mark.unused_packs, "{sweep:?}");
    assert_eq!(sweep.deleted_packs, 0);
    assert_checks(&store).await;
    assert!(
        read_back(&store, &s_new).await == old,
        "snapshot contents differ"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn packs_no_index_lists_are_condemned_then_deleted() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    let keep = files(0..3, 10_000);
    let s = backup(&store, &keep).await;
    // A pack uploaded by a backup that died before writing its index.
    let repo = open(&store).await;
    let mut w = PackWriter::new(repo.keys(), PackKind::Data, 1 << 16).unwrap();
    let payload = data(77, 5000);
    let id = repo.keys().content("t").unwrap().blob_id(&payload);
    w.add(id, &payload, 3).unwrap();
    let finished = w.finish(repo.keys().maintenance(), repo.suite()).unwrap();
    let zaibei_repo::Finished::Named(orphan) = finished else {
        panic!("a pack writer made without a store assembles the pack in memory");
    };
    let name = zaibei_repo::names::pack(&orphan.id);
    let zaibei_repo::PackBody::Memory(bytes) = orphan.body else {
        panic!("a pack writer made without a store assembles the pack in memory");
    };
    store.put(&name, bytes).await.unwrap();

    let mark = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert_eq!(mark.orphan_packs, 1, "{mark:?}");
    assert!(store.stat(&name).await.is_ok());
    let sweep = run_prune(&store, 0, MaxUnused::Percent(5.0)).await;
    assert_eq!(sweep.deleted_packs, 1, "{sweep:?}");
    assert!(store.stat(&name).await.unwrap_err().is_not_found());
    assert_checks(&store).await;
    assert!(
        read_back(&store, &s).await == keep,
        "snapshot contents differ"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_refuses_when_it_cannot_know_what_is_used() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    backup(&store, &files(0..3, 10_000)).await;
    // A damaged index object: its packs would look unused.
    let index = store.list("index").await.unwrap();
    let victim = &index[0].name;
    let mut bytes = store.get(victim).await.unwrap().to_vec();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    store.put(victim, bytes.into()).await.unwrap();
    let repo = open(&store).await;
    let err = prune(&repo, &PruneOptions::default(), &|_, _, _| {})
        .await
        .unwrap_err();
    assert!(matches!(err, RepoError::Refused(_)), "{err}");
    assert!(err.to_string().contains(victim.as_str()), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn of_two_prunes_racing_for_a_generation_one_loses() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    let repo = Repository::open(Arc::clone(&store), b"pw").await.unwrap();
    let head = repo.read_state("condemned").await.unwrap();
    let body = |m| {
        zaibei_format::Condemned {
            margin: m,
            packs: vec![],
        }
        .to_value()
    };
    let first = repo
        .publish_state("condemned", &head, body(1))
        .await
        .unwrap();
    // A second writer that started from the same generation sees the first and backs off,
    // removing its own object.
    let second = repo.publish_state("condemned", &head, body(2)).await;
    assert!(matches!(second, Err(RepoError::Refused(_))), "{second:?}");
    let now = repo.read_state("condemned").await.unwrap();
    assert_eq!((now.generation, now.id), (1, first.id));
    assert_eq!(store.list("state/condemned").await.unwrap().len(), 1);
}

/// A damaged newest `condemned` object must not block every later prune: the next one falls
/// back to the previous generation, publishes past the damaged one and removes it.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_condemned_state_does_not_block_prune() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    new_repo(Arc::clone(&store)).await;
    let sa = backup(&store, &files(0..10, 30_000)).await;
    let sb = backup(&store, &files(100..110, 30_000)).await;
    forget(&store, &sa).await;
    let mark = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert_eq!(mark.generation, 1);
    let states = store.list("state/condemned").await.unwrap();
    assert_eq!(states.len(), 1);
    let mut bytes = store.get(&states[0].name).await.unwrap().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    store.put(&states[0].name, bytes.into()).await.unwrap();

    let again = run_prune(&store, 3600, MaxUnused::Percent(5.0)).await;
    assert_eq!(again.generation, 2, "{again:?}");
    assert!(
        again.unused_packs > 0,
        "the damaged generation's packs are marked again"
    );
    let names: Vec<String> = store
        .list("state/condemned")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert!(!names.contains(&states[0].name), "{names:?}");
    let sweep = run_prune(&store, 0, MaxUnused::Percent(5.0)).await;
    assert!(sweep.deleted_packs > 0, "{sweep:?}");
    assert_checks(&store).await;
    assert_eq!(read_back(&store, &sb).await, files(100..110, 30_000));
}
