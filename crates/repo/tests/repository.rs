//! Repository-level tests on the memory and fs stores.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use zaibei_crypto::{PasswordKdf, Suite};
use zaibei_format::{
    Id, KeyScope, Node, NodeKind, PackKind, Snapshot, SnapshotSummary, Timestamp, Tree,
};
use zaibei_repo::{BlobSaver, CheckOptions, InitOptions, RepoError, Repository, check};
use zaibei_store::{FsStore, MemoryStore, Store};

fn opts(suite: Suite) -> InitOptions {
    let mut o = InitOptions::new(suite, PasswordKdf::insecure_for_tests(suite));
    o.pack_size = 1 << 16; // many small packs
    o
}

/// Writes a snapshot of one directory holding `files`; returns its id.
async fn write_snapshot(repo: Repository, files: &[(&str, Vec<u8>)]) -> Id {
    let repo = Arc::new(repo.load_index().await.unwrap());
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let files: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|(n, d)| (n.to_string(), d.clone()))
        .collect();
    let s2 = saver.clone();
    let tree_id = tokio::task::spawn_blocking(move || {
        let mut tree = Tree::default();
        for (name, data) in &files {
            let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
            node.size = data.len() as u64;
            for chunk in data.chunks(10_000) {
                let id = s2.blob_id(chunk).unwrap();
                s2.save_blob(PackKind::Data, id, chunk).unwrap();
                node.content.push(id);
            }
            tree.nodes.push(node);
        }
        tree.sort_and_check().unwrap();
        s2.save_tree(&tree).unwrap()
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    let snap = Snapshot {
        time: Timestamp::now(),
        tree: tree_id,
        paths: vec![b"/x".to_vec()],
        hostname: "h".into(),
        username: "u".into(),
        uid: 0,
        gid: 0,
        tags: vec![],
        parent: None,
        program: "test".into(),
        excludes: vec![],
        summary: SnapshotSummary::default(),
        original: None,
    };
    repo.save_snapshot(&snap).await.unwrap()
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2654435761) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

async fn round_trip(store: Arc<dyn Store>, suite: Suite) {
    let repo = Repository::init(Arc::clone(&store), b"secret", opts(suite))
        .await
        .unwrap();
    assert!(matches!(
        Repository::init(Arc::clone(&store), b"secret", opts(suite)).await,
        Err(RepoError::AlreadyExists { .. })
    ));
    let a = data(1, 200_000);
    let b = data(2, 50_000);
    let snap_id = write_snapshot(
        repo,
        &[("a", a.clone()), ("b", b.clone()), ("a-again", a.clone())],
    )
    .await;

    assert!(matches!(
        Repository::open(Arc::clone(&store), b"wrong").await,
        Err(RepoError::WrongPassword { tried: 1 })
    ));
    let repo = Repository::open(Arc::clone(&store), b"secret")
        .await
        .unwrap()
        .load_index()
        .await
        .unwrap();
    let (found, snap) = repo.find_snapshot(&snap_id.to_hex()[..8]).await.unwrap();
    assert_eq!(found, snap_id);
    let tree = repo.load_tree(&snap.tree).await.unwrap();
    assert_eq!(tree.nodes.len(), 3);
    for (node, expect) in tree.nodes.iter().zip([&a, &a, &b]) {
        let mut got = Vec::new();
        for id in &node.content {
            got.extend(repo.read_blob(PackKind::Data, id).await.unwrap());
        }
        assert_eq!(&got, expect);
    }
    // Deduplication: "a" and "a-again" share their blobs.
    assert_eq!(repo.index().blob_count(PackKind::Data), 20 + 5);

    let report = check(
        &repo,
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.errors(), 0, "{:?}", report.problems);
    assert!(report.blobs_read >= 27);

    // A maintenance-only key reads the reference layer but never contents.
    let id = repo
        .add_key(
            b"maint",
            KeyScope::Maintenance,
            PasswordKdf::insecure_for_tests(suite),
            "h".into(),
            "u".into(),
        )
        .await
        .unwrap();
    let m = Repository::open(Arc::clone(&store), b"maint")
        .await
        .unwrap();
    assert_eq!(m.key_id(), id);
    assert_eq!(m.scope(), KeyScope::Maintenance);
    let m = m.load_index().await.unwrap();
    assert_eq!(m.list_snapshots().await.unwrap().snapshots.len(), 1);
    assert!(
        m.read_blob(PackKind::Data, &tree.nodes[0].content[0])
            .await
            .is_err()
    );
    assert!(m.load_tree(&snap.tree).await.is_err());
    let refs = m.load_refs(&snap.tree).await.unwrap();
    assert_eq!(refs.data.len(), 25);
    let report = check(
        &m,
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(report.errors(), 0, "{:?}", report.problems);
    assert!(report.content_unverified);
    assert!(
        m.add_key(
            b"x",
            KeyScope::Full,
            PasswordKdf::insecure_for_tests(suite),
            "h".into(),
            "u".into()
        )
        .await
        .is_err()
    );
    assert_eq!(repo.list_keys().await.unwrap().len(), 2);
    assert!(
        repo.remove_key(&repo.key_id()).await.is_err(),
        "removed the key in use"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_memory_gm() {
    round_trip(Arc::new(MemoryStore::new()), Suite::Gm).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn round_trip_fs_intl() {
    let dir = tempfile::tempdir().unwrap();
    round_trip(Arc::new(FsStore::new(dir.path())), Suite::Intl).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn check_finds_damaged_and_missing_packs() {
    let store = MemoryStore::new();
    let s: Arc<dyn Store> = Arc::new(store.clone());
    let repo = Repository::init(Arc::clone(&s), b"pw", opts(Suite::Gm))
        .await
        .unwrap();
    write_snapshot(repo, &[("f", data(3, 300_000))]).await;
    let packs = s.list("data").await.unwrap();
    assert!(packs.len() > 3);
    // Flip one byte in one pack, delete another.
    let victim = &packs[0].name;
    let mut bytes = s.get(victim).await.unwrap().to_vec();
    bytes[100] ^= 1;
    s.put(victim, bytes.into()).await.unwrap();
    s.delete(&packs[1].name).await.unwrap();
    let repo = Repository::open(Arc::clone(&s), b"pw")
        .await
        .unwrap()
        .load_index()
        .await
        .unwrap();
    let structural = check(&repo, CheckOptions::default(), &|_, _, _| {})
        .await
        .unwrap();
    assert!(
        structural
            .problems
            .iter()
            .any(|p| p.object == packs[1].name),
        "{:?}",
        structural.problems
    );
    let full = check(
        &repo,
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert!(
        full.problems.iter().any(|p| p.object == *victim),
        "{:?}",
        full.problems
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn open_reports_missing_and_newer_repositories() {
    let s: Arc<dyn Store> = Arc::new(MemoryStore::new());
    assert!(matches!(
        Repository::open(Arc::clone(&s), b"pw").await,
        Err(RepoError::NotFound { .. })
    ));
    Repository::init(Arc::clone(&s), b"pw", opts(Suite::Gm))
        .await
        .unwrap();
    let mut cfg = s.get("config").await.unwrap().to_vec();
    cfg[7] = 9;
    s.put("config", cfg.into()).await.unwrap();
    let err = Repository::open(Arc::clone(&s), b"pw").await.unwrap_err();
    assert!(err.is_unsupported_version(), "{err}");
}

/// A store with faults: reads of some objects fail as an unreachable network would, after
/// retries, and (when asked) another process forgets a snapshot right after it was listed.
#[derive(Debug, Default)]
struct Faulty {
    inner: MemoryStore,
    /// Reads of names starting with this fail (empty: none).
    failing: std::sync::Mutex<String>,
    /// Listing the snapshots deletes the first one listed.
    forget_after_listing: bool,
}

impl Faulty {
    fn fail(&self, op: &'static str, name: &str) -> Result<(), zaibei_store::StoreError> {
        let prefix = self.failing.lock().unwrap();
        if !prefix.is_empty() && name.starts_with(prefix.as_str()) {
            return Err(zaibei_store::StoreError::new(
                zaibei_store::StoreErrorKind::Unavailable,
                op,
                name,
                "unreachable",
            ));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for Faulty {
    fn location(&self) -> &str {
        "faulty"
    }
    async fn put(&self, n: &str, d: bytes::Bytes) -> Result<(), zaibei_store::StoreError> {
        self.inner.put(n, d).await
    }
    async fn put_new(&self, n: &str, d: bytes::Bytes) -> Result<(), zaibei_store::StoreError> {
        self.inner.put_new(n, d).await
    }
    async fn get(&self, n: &str) -> Result<bytes::Bytes, zaibei_store::StoreError> {
        self.fail("get", n)?;
        self.inner.get(n).await
    }
    async fn get_range(
        &self,
        n: &str,
        r: std::ops::Range<u64>,
    ) -> Result<bytes::Bytes, zaibei_store::StoreError> {
        self.fail("get", n)?;
        self.inner.get_range(n, r).await
    }
    async fn stat(&self, n: &str) -> Result<zaibei_store::ObjectInfo, zaibei_store::StoreError> {
        self.inner.stat(n).await
    }
    async fn list(
        &self,
        p: &str,
    ) -> Result<Vec<zaibei_store::ObjectInfo>, zaibei_store::StoreError> {
        let listed = self.inner.list(p).await?;
        if self.forget_after_listing
            && p.starts_with("snapshots")
            && let Some(first) = listed.first()
        {
            self.inner.delete(&first.name).await?;
        }
        Ok(listed)
    }
    async fn delete(&self, n: &str) -> Result<(), zaibei_store::StoreError> {
        self.inner.delete(n).await
    }
}

#[tokio::test]
async fn an_unreachable_store_is_never_reported_as_damage() {
    let failing = Arc::new(Faulty::default());
    let store: Arc<dyn Store> = failing.clone();
    let repo = Repository::init(Arc::clone(&store), b"pw", opts(Suite::Gm))
        .await
        .unwrap();
    write_snapshot(repo, &[("a", data(1, 50_000))]).await;

    // Index objects that cannot be fetched stop the command; they are not skipped.
    *failing.failing.lock().unwrap() = "index/".into();
    let repo = Repository::open(Arc::clone(&store), b"pw").await.unwrap();
    let Err(e) = repo.load_index().await else {
        panic!("loading an index that cannot be fetched succeeded");
    };
    assert!(e.is_store_unreachable() && !e.is_integrity(), "{e}");

    // Packs and snapshots that cannot be fetched make check fail, not report damage.
    for prefix in ["data/", "snapshots/"] {
        failing.failing.lock().unwrap().clear();
        let repo = Repository::open(Arc::clone(&store), b"pw")
            .await
            .unwrap()
            .load_index()
            .await
            .unwrap();
        *failing.failing.lock().unwrap() = prefix.into();
        let e = check(
            &repo,
            CheckOptions {
                read_data: true,
                ..Default::default()
            },
            &|_, _, _| {},
        )
        .await
        .map(|r| r.problems)
        .unwrap_err();
        assert!(e.is_store_unreachable(), "{prefix}: {e}");
    }
}

/// Blobs handed to the sealer threads (`save_blob_queued`) from several threads at once, with
/// duplicates and packs small enough that many close while others fill, are all stored and
/// indexed once `finish` returns, each exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn queued_blobs_are_all_stored_by_finish() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let mut o = opts(Suite::Gm);
    o.pack_size = 64 << 10;
    let repo = Repository::init(Arc::clone(&store), b"secret", o)
        .await
        .unwrap();
    let repo = Arc::new(repo.load_index().await.unwrap());
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await.unwrap();
    let blobs: Vec<Vec<u8>> = (0..150u8)
        .map(|i| data(i, 3000 + 97 * usize::from(i)))
        .collect();
    let blobs = Arc::new(blobs);
    let mut threads = Vec::new();
    for t in 0..3usize {
        let (saver, blobs) = (saver.clone(), Arc::clone(&blobs));
        threads.push(tokio::task::spawn_blocking(move || {
            let mut new = 0;
            // Every thread offers every blob: each must be stored once in all.
            for i in 0..blobs.len() {
                let b = &blobs[(i + 50 * t) % blobs.len()];
                let id = saver.blob_id(b).unwrap();
                new += usize::from(saver.save_blob_queued(PackKind::Data, id, b).unwrap());
            }
            new
        }));
    }
    let mut new = 0;
    for t in threads {
        new += t.await.unwrap();
    }
    assert_eq!(new, blobs.len());
    let stats = saver.finish().await.unwrap();
    assert_eq!(stats.data_blobs, blobs.len() as u64);
    assert!(stats.packs > 5, "only {} packs", stats.packs);
    let reopened = Repository::open(Arc::clone(&store), b"secret")
        .await
        .unwrap()
        .load_index()
        .await
        .unwrap();
    for b in blobs.iter() {
        let id = reopened.keys().content("test").unwrap().blob_id(b);
        assert_eq!(&reopened.read_blob(PackKind::Data, &id).await.unwrap(), b);
    }
}

/// A snapshot forgotten between the listing and the read (a concurrent `forget`) is gone, not
/// damaged: listing and `check` carry on with the others and report nothing.
#[tokio::test]
async fn a_snapshot_forgotten_while_listing_is_not_damage() {
    let store: Arc<dyn Store> = Arc::new(Faulty {
        forget_after_listing: true,
        ..Default::default()
    });
    let repo = Repository::init(Arc::clone(&store), b"pw", opts(Suite::Gm))
        .await
        .unwrap();
    write_snapshot(repo, &[("a", data(1, 50_000))]).await;
    let repo = Repository::open(Arc::clone(&store), b"pw").await.unwrap();
    write_snapshot(repo, &[("b", data(2, 50_000))]).await;
    let repo = Repository::open(Arc::clone(&store), b"pw").await.unwrap();
    let list = repo.list_snapshots().await.unwrap();
    assert!(list.damaged.is_empty(), "{:?}", list.damaged);
    assert_eq!(list.snapshots.len(), 1);
    let repo = repo.load_index().await.unwrap();
    let report = check(&repo, CheckOptions::default(), &|_, _, _| {})
        .await
        .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
