//! Opening many blobs at once (`BlobOpener`): the same plaintexts as one by one, in order,
//! across packs; a blob whose plaintext does not hash to its id is refused, naming it, and
//! does not spoil the others.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{data, new_store, open};
use zaibei_crypto::sm3_multi::Sm3Impl;
use zaibei_format::{Id, PackKind};
use zaibei_repo::{BlobOpener, BlobSaver, RepoError, names};

/// Reads the stored bytes of blob `id` as the index places them.
async fn stored(repo: &zaibei_repo::IndexedRepository, id: &Id) -> Vec<u8> {
    let loc = repo.locate(PackKind::Data, id).unwrap();
    repo.store()
        .get_range(
            &names::pack(&loc.pack.id),
            loc.offset..loc.offset + loc.length,
        )
        .await
        .unwrap()
        .to_vec()
}

/// Stores `payloads` under their ids and `forged.1` under the id `forged.0`, which is not its
/// plaintext's, and returns the repository opened afresh with the payloads' ids.
async fn save_with_a_forged_blob(
    store: &Arc<dyn zaibei_store::Store>,
    payloads: &[Vec<u8>],
    forged: (Id, Vec<u8>),
) -> (Arc<zaibei_repo::IndexedRepository>, Vec<Id>) {
    let repo = open(store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let ids = {
        let s = saver.clone();
        let payloads = payloads.to_vec();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            for p in &payloads {
                let id = s.blob_id(p).unwrap();
                s.save_blob(PackKind::Data, id, p).unwrap();
                ids.push(id);
            }
            s.save_blob(PackKind::Data, forged.0, &forged.1).unwrap();
            ids
        })
        .await
        .unwrap()
    };
    saver.finish().await.unwrap();
    (open(store).await, ids)
}

#[tokio::test(flavor = "multi_thread")]
async fn many_blobs_open_together_and_a_wrong_id_is_named() {
    let store = new_store().await;
    // Blobs of many lengths (empty, tiny, across SM3 block boundaries, several packs of the
    // test repository's 64 KiB), and one stored under an id that is not its plaintext's.
    let payloads_moved: Vec<Vec<u8>> = [0usize, 1, 55, 56, 64, 1000, 20_000, 40_000, 70_000, 3]
        .iter()
        .enumerate()
        .map(|(i, &len)| data(i as u32 + 1, len))
        .collect();
    let forged = Id([7u8; 32]);
    let (repo, ids) = save_with_a_forged_blob(
        &store,
        &payloads_moved,
        (forged, b"not what the id says".to_vec()),
    )
    .await;
    let packs: std::collections::HashSet<Id> = ids
        .iter()
        .map(|id| repo.locate(PackKind::Data, id).unwrap().pack.id)
        .collect();
    assert!(packs.len() > 1, "the blobs span several packs");

    let mut order: Vec<Id> = ids.clone();
    order.insert(4, forged);
    let mut opener = BlobOpener::new(&repo, PackKind::Data);
    for id in &order {
        let bytes = stored(&repo, id).await;
        let loc = repo.locate(PackKind::Data, id).unwrap();
        opener.add(id, &loc, &bytes).unwrap();
    }
    let total: usize = payloads_moved.iter().map(Vec::len).sum();
    assert_eq!(
        opener.pending_bytes(),
        total + b"not what the id says".len()
    );
    let opened = opener.finish();
    assert_eq!(opened.len(), order.len());
    for ((id, result), want) in opened.iter().zip(&order) {
        assert_eq!(id, want, "results come back in the order added");
        if *id == forged {
            let err = result.as_ref().unwrap_err().to_string();
            assert!(
                err.contains(&forged.to_string()) && err.contains("hashes to"),
                "{err}"
            );
        } else {
            let i = ids.iter().position(|x| x == id).unwrap();
            assert_eq!(result.as_ref().unwrap(), &payloads_moved[i]);
        }
    }

    // Stored bytes of one blob presented as another's: refused at once by the tag (the id is
    // bound into the associated data), naming the blob asked for.
    let mut opener = BlobOpener::new(&repo, PackKind::Data);
    let loc = repo.locate(PackKind::Data, &ids[1]).unwrap();
    let other = stored(&repo, &ids[2]).await;
    let err: RepoError = opener.add(&ids[1], &loc, &other).unwrap_err();
    assert!(err.to_string().contains(&ids[1].to_string()), "{err}");
    assert!(opener.finish().is_empty());

    // The single-blob path gives the same answers.
    let bytes = stored(&repo, &forged).await;
    let loc = repo.locate(PackKind::Data, &forged).unwrap();
    assert!(
        repo.open_stored_blob(PackKind::Data, &forged, &loc, &bytes)
            .is_err()
    );
    let bytes = stored(&repo, &ids[6]).await;
    let loc = repo.locate(PackKind::Data, &ids[6]).unwrap();
    assert_eq!(
        repo.open_stored_blob(PackKind::Data, &ids[6], &loc, &bytes)
            .unwrap(),
        payloads_moved[6]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn blobs_opened_in_rounds_come_back_once_each_checked_and_a_forged_one_is_named() {
    let store = new_store().await;
    // Per round: two long blobs and several short ones, so that in `gm` with the multi-buffer
    // engine the long ones are left over to the next round. The forged blob is long too.
    let lens = [30_000usize, 28_000, 100, 200, 300, 400, 500, 600];
    let payloads: Vec<Vec<u8>> = (0..3)
        .flat_map(|_| lens)
        .enumerate()
        .map(|(i, len)| data(i as u32 + 50, len))
        .collect();
    let forged = Id([9u8; 32]);
    let (repo, ids) = save_with_a_forged_blob(&store, &payloads, (forged, data(999, 31_000))).await;

    let mut opener = BlobOpener::new(&repo, PackKind::Data);
    let mut back: Vec<(Id, Result<Vec<u8>, String>)> = Vec::new();
    let mut held_over = 0;
    for (round, chunk) in ids.chunks(lens.len()).enumerate() {
        let mut added: Vec<Id> = chunk.to_vec();
        if round == 0 {
            added.insert(0, forged);
        }
        for id in &added {
            let bytes = stored(&repo, id).await;
            let loc = repo.locate(PackKind::Data, id).unwrap();
            opener.add(id, &loc, &bytes).unwrap();
        }
        let settled = opener.check_ready();
        for (id, _) in &settled {
            assert!(!opener.holds(id), "a blob handed back is not held");
        }
        // Each blob added is either handed back or held, not both.
        for id in &added {
            let handed = settled.iter().any(|(s, _)| s == id);
            assert!(
                handed != opener.holds(id),
                "{id} handed back and held, or neither"
            );
        }
        back.extend(
            settled
                .into_iter()
                .map(|(id, r)| (id, r.map_err(|e| e.to_string()))),
        );
        held_over += added.iter().filter(|id| opener.holds(id)).count();
    }
    let multi_buffer = [Sm3Impl::Avx512, Sm3Impl::Avx2]
        .iter()
        .any(|i| i.is_supported());
    assert_eq!(
        held_over > 0,
        multi_buffer,
        "long blobs are held over a round exactly when they hash side by side"
    );
    let held: Vec<Id> = ids
        .iter()
        .chain([&forged])
        .filter(|id| opener.holds(id))
        .copied()
        .collect();
    let rest = opener.finish();
    assert_eq!(rest.len(), held.len());
    back.extend(
        rest.into_iter()
            .map(|(id, r)| (id, r.map_err(|e| e.to_string()))),
    );
    assert_eq!(back.len(), ids.len() + 1, "every blob comes back once");
    for (id, result) in &back {
        if *id == forged {
            let err = result.as_ref().unwrap_err();
            assert!(
                err.contains(&forged.to_string()) && err.contains("hashes to"),
                "{err}"
            );
        } else {
            let i = ids.iter().position(|x| x == id).unwrap();
            assert_eq!(result.as_ref().unwrap(), &payloads[i]);
        }
    }
}
