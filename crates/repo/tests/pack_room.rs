//! A data pack takes blobs while they fit in the room it reserved (its capacity and an
//! eighth) and closes before one that would make it grow: growing would copy the pack into a
//! buffer twice as large. Tree packs grow as they fill.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::{data, new_store, open};
use zaibei_format::PackKind;
use zaibei_repo::{BlobSaver, PackWriter};

/// The test repository's pack size.
const PACK: usize = 1 << 16;

#[tokio::test]
async fn a_data_pack_takes_blobs_while_they_fit_in_its_room() {
    let store = new_store().await;
    let repo = open(&store).await;
    let content = repo.keys().content("t").unwrap();
    let mut pack = PackWriter::new(repo.keys(), PackKind::Data, PACK).unwrap();
    assert!(pack.has_room_for(4 * PACK), "an empty pack takes any blob");
    for seed in [1, 2] {
        // Noise: stored as it is, 30,000 bytes and the blob's overhead.
        let noise = data(seed, 30_000);
        assert!(pack.has_room_for(noise.len()));
        pack.add(content.blob_id(&noise), &noise, 3).unwrap();
    }
    assert!(
        !pack.has_room_for(30_000),
        "a third would pass the 72 KiB reserved"
    );
    assert!(pack.has_room_for(8_000), "a small one still fits");

    let mut trees = PackWriter::new(repo.keys(), PackKind::Tree, PACK).unwrap();
    let tree = data(3, 30_000);
    trees.add(content.blob_id(&tree), &tree, 3).unwrap();
    assert!(trees.has_room_for(4 * PACK), "tree packs grow as needed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_saver_closes_a_pack_before_it_outgrows_its_room() {
    let store = new_store().await;
    let repo = open(&store).await;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let s = saver.clone();
    tokio::task::spawn_blocking(move || {
        for seed in 1..=12 {
            let noise = data(seed, 30_000);
            let id = s.blob_id(&noise).unwrap();
            s.save_blob(PackKind::Data, id, &noise).unwrap();
        }
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    let packs = store.list("data").await.unwrap();
    let room = (PACK + PACK / 8) as u64;
    for pack in &packs {
        // Blobs, a sealed header of two entries, and the trailer: within the room and a
        // little more, not the three blobs (90,000 bytes and more) a pack that closes only
        // once it is full would hold.
        assert!(
            pack.size < room + 1024,
            "{} is {} bytes",
            pack.name,
            pack.size
        );
    }
    assert_eq!(packs.len(), 6, "two blobs of 30,000 bytes per pack");
}
