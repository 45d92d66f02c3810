//! Opening many blobs at once (`BlobOpener`): the same plaintexts as one by one, in order,
//! across packs; a blob whose plaintext does not hash to its id is refused, naming it, and
//! does not spoil the others.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{data, new_store, open};
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

#[tokio::test(flavor = "multi_thread")]
async fn many_blobs_open_together_and_a_wrong_id_is_named() {
    let store = new_store().await;
    let repo = open(&store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    // Blobs of many lengths (empty, tiny, across SM3 block boundaries, several packs of the
    // test repository's 64 KiB), and one stored under an id that is not its plaintext's.
    let payloads: Vec<Vec<u8>> = [0usize, 1, 55, 56, 64, 1000, 20_000, 40_000, 70_000, 3]
        .iter()
        .enumerate()
        .map(|(i, &len)| data(i as u32 + 1, len))
        .collect();
    let forged = Id([7u8; 32]);
    let (ids, payloads_moved) = {
        let s = saver.clone();
        tokio::task::spawn_blocking(move || {
            let mut ids = Vec::new();
            for p in &payloads {
                let id = s.blob_id(p).unwrap();
                s.save_blob(PackKind::Data, id, p).unwrap();
                ids.push(id);
            }
            s.save_blob(PackKind::Data, forged, b"not what the id says")
                .unwrap();
            (ids, payloads)
        })
        .await
        .unwrap()
    };
    saver.finish().await.unwrap();
    let repo = open(&store).await;
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
