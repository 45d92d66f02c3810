//! Site roles and forget mirroring at repository level: three sites on memory stores that
//! share key material.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{backup, files, init_opts, new_store, open};
use zaibei_format::{Id, SitePeer, SiteRole};
use zaibei_repo::copy::{CopyMode, CopyOptions, copy_mode, copy_snapshots};
use zaibei_repo::site::{self, MirrorReport, PeerRepo};
use zaibei_repo::{RepoError, Repository};
use zaibei_store::{MemoryStore, Store};

struct Site {
    name: &'static str,
    store: Arc<dyn Store>,
}

impl Site {
    async fn repo(&self) -> Repository {
        Repository::open(Arc::clone(&self.store), b"pw")
            .await
            .unwrap()
    }

    fn peer(&self) -> SitePeer {
        SitePeer {
            name: self.name.into(),
            location: format!("mem:{}", self.name),
        }
    }

    async fn ids(&self) -> Vec<Id> {
        let mut ids = self.repo().await.snapshot_ids().await.unwrap();
        ids.sort();
        ids
    }
}

/// Site `a` (primary) with replicas `b` and `c`, all sharing `a`'s keys.
async fn three_sites() -> (Site, Site, Site) {
    let a = Site {
        name: "a",
        store: new_store().await,
    };
    let source = a.repo().await;
    let mut replicas = Vec::new();
    for name in ["b", "c"] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        Repository::init_sharing_keys(Arc::clone(&store), b"pw", init_opts(), &source)
            .await
            .unwrap();
        replicas.push(Site { name, store });
    }
    let c = replicas.pop().unwrap();
    let b = replicas.pop().unwrap();
    site::create_set(&source, "a").await.unwrap();
    for r in [&b, &c] {
        let others: Vec<PeerRepo> = Vec::new();
        site::add_replica(&source, "mem:a", r.peer(), &r.repo().await, &others)
            .await
            .unwrap();
    }
    (a, b, c)
}

/// Copies the snapshots `which` of `from` to `to`.
async fn copy(from: &Site, to: &Site, which: &[Id]) {
    let src = open(&from.store).await;
    let dst = open(&to.store).await;
    assert_eq!(copy_mode(&src, &dst), CopyMode::Packs);
    let chosen = src
        .list_snapshots()
        .await
        .unwrap()
        .snapshots
        .into_iter()
        .filter(|(id, _)| which.contains(id))
        .collect();
    copy_snapshots(&src, &dst, chosen, &CopyOptions::default(), &|_, _, _| {})
        .await
        .unwrap();
}

/// What a sync from `primary` does for forgets at `replica`.
async fn try_mirror(primary: &Site, replica: &Site) -> Result<MirrorReport, RepoError> {
    let p = primary.repo().await;
    let me = p.site_state().await.unwrap().record.unwrap();
    let held = p.snapshot_ids().await.unwrap();
    site::mirror_forgets(&p, &me, &held, &replica.repo().await).await
}

/// The snapshots a sync from `primary` forgets at `replica`; asserts none is reported missing.
async fn mirror(primary: &Site, replica: &Site) -> Vec<Id> {
    let report = try_mirror(primary, replica).await.unwrap();
    assert!(report.missing_at_primary.is_empty(), "{report:?}");
    report.forgotten
}

fn sorted(mut ids: Vec<Id>) -> Vec<Id> {
    ids.sort();
    ids
}

/// Deletes a snapshot object the way someone holding only storage credentials can.
async fn raw_delete(site: &Site, id: &Id) {
    site.store
        .delete(&zaibei_repo::names::snapshot(id))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lagging_replica_that_takes_over_never_forgets_what_another_holds() {
    let (a, b, c) = three_sites().await;
    let s1 = backup(&a.store, &files(0..3, 20_000)).await;
    let s2 = backup(&a.store, &files(1..4, 20_000)).await;
    let s3 = backup(&a.store, &files(2..5, 20_000)).await;
    // c is up to date; b lags behind by s3.
    copy(&a, &c, &[s1, s2, s3]).await;
    assert!(mirror(&a, &c).await.is_empty());
    copy(&a, &b, &[s1, s2]).await;
    assert!(mirror(&a, &b).await.is_empty());

    // a burns down; b takes over with c.
    let peers = vec![
        PeerRepo {
            peer: a.peer(),
            repo: Err("cut off".into()),
        },
        PeerRepo {
            peer: c.peer(),
            repo: Ok(c.repo().await),
        },
    ];
    let change = site::become_primary(&b.repo().await, &peers, false)
        .await
        .unwrap();
    assert_eq!(change.record.epoch, 2);
    assert_eq!(change.updated, vec!["c".to_owned()]);
    let c_record = c.repo().await.site_state().await.unwrap().record.unwrap();
    assert_eq!(
        (c_record.role, c_record.epoch, c_record.primary.as_str()),
        (SiteRole::Replica, 2, "b")
    );

    // b's first sync to c: c's record of what a held must not make c forget s3, which b
    // never had.
    assert!(mirror(&b, &c).await.is_empty());
    assert!(c.ids().await.contains(&s3), "s3 survives at c");
    // A forget at b, carried over by the next sync, removes exactly that snapshot at c.
    b.repo().await.forget_snapshot(&s1).await.unwrap();
    assert_eq!(mirror(&b, &c).await, vec![s1]);
    let mut left = vec![s2, s3];
    left.sort();
    assert_eq!(c.ids().await, left);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_change_of_roles_that_the_sets_disagree_on_changes_nothing() {
    let (a, b, c) = three_sites().await;
    // At b, c's repository answers for "a": the locations are wrong.
    let peers = vec![
        PeerRepo {
            peer: a.peer(),
            repo: Ok(c.repo().await),
        },
        PeerRepo {
            peer: c.peer(),
            repo: Ok(c.repo().await),
        },
    ];
    let before: Vec<_> = [&a, &b, &c].iter().map(|s| s.store.clone()).collect();
    let mut states = Vec::new();
    for s in &before {
        states.push(
            Repository::open(Arc::clone(s), b"pw")
                .await
                .unwrap()
                .site_state()
                .await
                .unwrap()
                .record,
        );
    }
    let err = site::become_primary(&b.repo().await, &peers, false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, RepoError::Refused(ref m) if m.contains("disagree")),
        "{err}"
    );
    for (s, was) in before.iter().zip(states) {
        let now = Repository::open(Arc::clone(s), b"pw")
            .await
            .unwrap()
            .site_state()
            .await
            .unwrap()
            .record;
        assert_eq!(now, was, "a refused change of roles wrote nothing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn adding_a_replica_again_after_an_interruption_finishes_the_job() {
    let (a, b, _c) = three_sites().await;
    // Adding b again is refused (already a member), adding the primary itself too.
    let source = a.repo().await;
    let none: Vec<PeerRepo> = Vec::new();
    assert!(
        site::add_replica(&source, "mem:a", b.peer(), &b.repo().await, &none)
            .await
            .is_err()
    );
    let self_peer = SitePeer {
        name: "z".into(),
        location: "mem:a".into(),
    };
    let err = site::add_replica(&source, "mem:a", self_peer, &source, &none)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("itself"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshots_deleted_at_the_primary_without_a_key_stay_at_the_replicas() {
    let (a, b, _c) = three_sites().await;
    let s1 = backup(&a.store, &files(0..3, 20_000)).await;
    let s2 = backup(&a.store, &files(1..4, 20_000)).await;
    let s3 = backup(&a.store, &files(2..5, 20_000)).await;
    copy(&a, &b, &[s1, s2, s3]).await;
    assert!(mirror(&a, &b).await.is_empty());

    // Someone with the store's credentials only empties `snapshots/` at the primary; the
    // next backup (a watch cycle) and sync follow.
    for id in [s1, s2, s3] {
        raw_delete(&a, &id).await;
    }
    let s4 = backup(&a.store, &files(3..6, 20_000)).await;
    copy(&a, &b, &[s4]).await;
    let report = try_mirror(&a, &b).await.unwrap();
    assert!(report.forgotten.is_empty(), "{report:?}");
    assert_eq!(report.missing_at_primary, sorted(vec![s1, s2, s3]));
    assert_eq!(
        b.ids().await,
        sorted(vec![s1, s2, s3, s4]),
        "nothing deleted"
    );
    // The next sync reports them again: the replica's record keeps them.
    let again = try_mirror(&a, &b).await.unwrap();
    assert_eq!(again.missing_at_primary, sorted(vec![s1, s2, s3]));
    assert_eq!(b.ids().await, sorted(vec![s1, s2, s3, s4]));

    // Copied back, they are the primary's again; a real forget then reaches the replica.
    copy(&b, &a, &[s1, s2, s3]).await;
    assert!(mirror(&a, &b).await.is_empty());
    a.repo().await.forget_snapshot(&s1).await.unwrap();
    raw_delete(&a, &s2).await;
    let report = try_mirror(&a, &b).await.unwrap();
    assert_eq!(report.forgotten, vec![s1]);
    assert_eq!(report.missing_at_primary, vec![s2]);
    assert_eq!(b.ids().await, sorted(vec![s2, s3, s4]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_forget_record_is_refused_and_deletes_nothing() {
    let (a, b, _c) = three_sites().await;
    let s1 = backup(&a.store, &files(0..3, 20_000)).await;
    let s2 = backup(&a.store, &files(1..4, 20_000)).await;
    copy(&a, &b, &[s1, s2]).await;
    assert!(mirror(&a, &b).await.is_empty());
    raw_delete(&a, &s1).await;

    // Garbage under a forget record's name, above every generation.
    let garbage = format!("state/forgotten/{:016x}-{}", 0xffu64, Id([0xab; 32]));
    a.store
        .put(&garbage, bytes::Bytes::from_static(b"forget s1, please"))
        .await
        .unwrap();
    let err = try_mirror(&a, &b).await.unwrap_err();
    assert!(
        matches!(err, RepoError::Refused(ref m) if m.contains(&garbage)),
        "{err}"
    );
    assert_eq!(b.ids().await, sorted(vec![s1, s2]), "nothing deleted");
    a.store.delete(&garbage).await.unwrap();

    // A well-formed record naming site "a", sealed with another repository's keys (an
    // attacker's own zaibei), copied in under the next generation's name.
    let other: Arc<dyn Store> = Arc::new(MemoryStore::new());
    Repository::init(Arc::clone(&other), b"pw", init_opts())
        .await
        .unwrap();
    let forger = Repository::open(Arc::clone(&other), b"pw").await.unwrap();
    site::create_set(&forger, "a").await.unwrap();
    forger.record_forgets(&[s1]).await.unwrap();
    let forged = other.list("state/forgotten").await.unwrap();
    assert_eq!(forged.len(), 1);
    let name = forged[0]
        .name
        .replace("0000000000000001-", "0000000000000100-");
    let body = other.get(&forged[0].name).await.unwrap();
    a.store.put(&name, body).await.unwrap();
    let err = try_mirror(&a, &b).await.unwrap_err();
    assert!(
        matches!(err, RepoError::Refused(ref m) if m.contains(&name)),
        "{err}"
    );
    assert_eq!(b.ids().await, sorted(vec![s1, s2]), "nothing deleted");

    // A forget at the primary supersedes the bad object: forgets flow again, and s1, which
    // no record names, stays.
    a.repo().await.forget_snapshot(&s2).await.unwrap();
    let report = try_mirror(&a, &b).await.unwrap();
    assert_eq!(report.forgotten, vec![s2]);
    assert_eq!(report.missing_at_primary, vec![s1]);
    assert_eq!(b.ids().await, vec![s1]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forget_record_of_a_snapshot_still_held_is_harmless() {
    let (a, b, _c) = three_sites().await;
    let s1 = backup(&a.store, &files(0..3, 20_000)).await;
    let s2 = backup(&a.store, &files(1..4, 20_000)).await;
    copy(&a, &b, &[s1, s2]).await;
    assert!(mirror(&a, &b).await.is_empty());
    // A forget that died after publishing its record, before deleting.
    a.repo().await.record_forgets(&[s1]).await.unwrap();
    assert!(mirror(&a, &b).await.is_empty());
    assert_eq!(b.ids().await, sorted(vec![s1, s2]));
    // Run again, it finishes; the records merge.
    a.repo().await.forget_snapshot(&s1).await.unwrap();
    assert_eq!(a.ids().await, vec![s2]);
    assert_eq!(mirror(&a, &b).await, vec![s1]);
    assert_eq!(b.ids().await, vec![s2]);
    let record = a.repo().await.forgotten_state().await.unwrap().record;
    assert_eq!(record.entries.len(), 1);
    assert_eq!(record.entries[0].site.as_deref(), Some("a"));
    assert_eq!(record.entries[0].snapshots, vec![s1]);
    // The replica recorded its own forget, under its own name.
    let at_b = b.repo().await.forgotten_state().await.unwrap().record;
    assert_eq!(
        at_b.forgotten_by("b", 1).into_iter().collect::<Vec<_>>(),
        vec![s1]
    );
}
