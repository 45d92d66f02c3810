//! Site roles and forget mirroring at repository level: three sites on memory stores that
//! share key material.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{backup, files, init_opts, new_store, open};
use zaibei_format::{Id, SitePeer, SiteRole};
use zaibei_repo::copy::{CopyMode, CopyOptions, copy_mode, copy_snapshots};
use zaibei_repo::site::{self, PeerRepo};
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
async fn mirror(primary: &Site, replica: &Site) -> Vec<Id> {
    let p = primary.repo().await;
    let me = p.site_state().await.unwrap().record.unwrap();
    let held = p.snapshot_ids().await.unwrap();
    site::mirror_forgets(&me, &held, &replica.repo().await)
        .await
        .unwrap()
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
