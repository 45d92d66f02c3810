//! Loading several trees at once (`IndexedRepository::load_trees`): the same trees as one by
//! one, with fewer requests to the store (a pack of trees is read whole once and held); a tree
//! stored under a wrong id, a tree damaged inside the pack read whole and a tree the index does
//! not know give the errors loading them alone gives, without spoiling the others.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{new_store, open};
use zaibei_format::{Id, Node, NodeKind, PackKind, Tree};
use zaibei_repo::{BlobSaver, RepoError};
use zaibei_store::{StatsStore, Store, StoreCounters};

/// A tree of `n` files whose names carry `seed`.
fn tree(seed: u32, n: u32) -> Tree {
    let mut tree = Tree {
        nodes: (0..n)
            .map(|i| {
                let mut node = Node::new(format!("f{seed}-{i}").into_bytes(), NodeKind::File);
                node.size = u64::from(seed * 1000 + i);
                node
            })
            .collect(),
    };
    tree.sort_and_check().unwrap();
    tree
}

/// Saves `trees` into one pack (and `extra`, a tree under the id given, after them); returns
/// the trees' ids.
async fn save_trees(store: &Arc<dyn Store>, trees: &[Tree], extra: Option<(Id, Tree)>) -> Vec<Id> {
    let repo = open(store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 1).await.unwrap();
    let s = saver.clone();
    let trees = trees.to_vec();
    let ids = tokio::task::spawn_blocking(move || {
        let ids: Vec<Id> = trees.iter().map(|t| s.save_tree(t).unwrap()).collect();
        if let Some((id, t)) = extra {
            s.save_blob(PackKind::Tree, id, &t.encode()).unwrap();
        }
        ids
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn trees_load_together_with_fewer_reads_and_errors_name_their_tree() {
    let inner = new_store().await;
    let trees: Vec<Tree> = (1..=12).map(|s| tree(s, 3 + s)).collect();
    let forged = Id([9u8; 32]);
    // And a valid tree under an id that is not its plaintext's.
    let ids = save_trees(&inner, &trees, Some((forged, tree(99, 2)))).await;
    let unknown = Id([5u8; 32]);
    let mut wanted = ids.clone();
    wanted.insert(4, forged);
    wanted.push(unknown);

    let counters = Arc::new(StoreCounters::default());
    let store: Arc<dyn Store> =
        Arc::new(StatsStore::new(Arc::clone(&inner), Arc::clone(&counters)));
    let repo = open(&store).await;
    let before = counters.snapshot().gets;
    let loaded = repo.load_trees(&wanted).await.unwrap();
    let gets = counters.snapshot().gets - before;
    // The twelve good trees lie in one pack, read whole: one read, then the forged one again
    // alone.
    assert_eq!(gets, 2, "{gets} reads for {} trees", wanted.len());

    assert_eq!(loaded.len(), wanted.len());
    let mut seen = Vec::new();
    for (id, result) in &loaded {
        seen.push(*id);
        if *id == forged {
            let e = result.as_ref().err().unwrap().to_string();
            assert!(e.contains(&forged.to_string()), "{e}");
            assert!(e.contains("hashes to"), "{e}");
        } else if *id == unknown {
            assert!(matches!(result, Err(RepoError::BlobNotFound { .. })));
        } else {
            let i = ids.iter().position(|x| x == id).unwrap();
            assert_eq!(**result.as_ref().unwrap(), trees[i]);
        }
    }
    seen.sort();
    wanted.sort();
    assert_eq!(seen, wanted, "every tree asked for is answered once");

    // The caller holds the trees: none went into the cache, so loading one opens it again,
    // from the pack read whole and held (without a read).
    let before = counters.snapshot().gets;
    assert_eq!(*repo.take_tree(&ids[0]).await.unwrap(), trees[0]);
    assert_eq!(counters.snapshot().gets, before);
    // A second batch from the same pack needs no read either.
    let again = repo.load_trees(&ids[3..9]).await.unwrap();
    assert_eq!(counters.snapshot().gets, before);
    for (id, result) in again {
        let i = ids.iter().position(|x| *x == id).unwrap();
        assert_eq!(*result.unwrap(), trees[i]);
    }

    // Alone, each gives the same.
    let fresh = open(&inner).await;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(*fresh.load_tree(id).await.unwrap(), trees[i]);
    }
    let alone = fresh.load_tree(&forged).await.unwrap_err().to_string();
    let together = loaded
        .iter()
        .find(|(id, _)| *id == forged)
        .and_then(|(_, r)| r.as_ref().err())
        .unwrap()
        .to_string();
    assert_eq!(alone, together);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_tree_in_a_pack_read_whole_is_named_and_the_others_load() {
    let store = new_store().await;
    let trees: Vec<Tree> = (1..=6).map(|s| tree(s, 4 + s)).collect();
    let ids = save_trees(&store, &trees, None).await;
    // One byte of the third tree's stored bytes flipped in the pack, its length unchanged.
    let damaged = ids[2];
    {
        let repo = open(&store).await;
        let loc = repo.index().lookup(PackKind::Tree, &damaged).unwrap();
        let name = zaibei_repo::names::pack(&loc.pack.id);
        let mut pack = store.get(&name).await.unwrap().to_vec();
        let at = usize::try_from(loc.offset + loc.length / 2).unwrap();
        pack[at] ^= 0x40;
        store.put(&name, pack.into()).await.unwrap();
    }

    let repo = open(&store).await;
    let loaded = repo.load_trees(&ids).await.unwrap();
    assert_eq!(loaded.len(), ids.len());
    for (id, result) in &loaded {
        if *id == damaged {
            let e = result.as_ref().err().unwrap().to_string();
            assert!(e.contains(&damaged.to_string()), "{e}");
        } else {
            let i = ids.iter().position(|x| x == id).unwrap();
            assert_eq!(**result.as_ref().unwrap(), trees[i]);
        }
    }
    // Alone, through the held pack or not, it gives the same error.
    let alone = open(&store).await.load_tree(&damaged).await.unwrap_err();
    assert!(alone.to_string().contains(&damaged.to_string()), "{alone}");
    assert!(repo.take_tree(&damaged).await.is_err());
}
