//! Crash tests: every store write, publish and delete of backup, forget and prune is a
//! failpoint. Each command is crashed at every failpoint in turn, twice: once with the write
//! lost (power loss before it was durable) and once with it landed but unanswered. After each
//! crash the repository checks without errors, every snapshot restores to exactly what was
//! saved, and the next prune leaves nothing behind. A run that reaches no failpoint ends the
//! loop, so every failpoint was hit; the kinds of failpoint hit are asserted too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use zaibei_crypto::{PasswordKdf, Suite};
mod common;

use common::{Files, data, files, read_tree, save_files, snapshot_of};
use zaibei_format::Id;
use zaibei_repo::{
    BlobSaver, CheckOptions, IndexedRepository, InitOptions, MaxUnused, PruneOptions, Repository,
    check, prune,
};
use zaibei_store::{MemoryStore, ObjectInfo, Store, StoreError, StoreErrorKind};

/// What happens to the write at the failpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Crash {
    /// Lost: it never reached durable storage.
    Lost,
    /// Landed, but the process died before it learned so.
    Landed,
}

/// A store that dies at its `at`-th write or delete: from then on every operation fails.
#[derive(Debug)]
struct CrashStore {
    inner: MemoryStore,
    at: u64,
    mode: Crash,
    writes: AtomicU64,
    crashed: AtomicBool,
    /// Kinds of failpoint passed or hit: "put data", "delete index", "put state/condemned"...
    points: Mutex<BTreeSet<String>>,
}

fn class(name: &str) -> String {
    let mut parts = name.split('/');
    match (parts.next(), parts.next()) {
        (Some("state"), Some(kind)) => format!("state/{kind}"),
        (Some(first), _) => first.to_owned(),
        _ => String::new(),
    }
}

impl CrashStore {
    fn new(inner: MemoryStore, at: u64, mode: Crash) -> Self {
        CrashStore {
            inner,
            at,
            mode,
            writes: AtomicU64::new(0),
            crashed: AtomicBool::new(false),
            points: Mutex::new(BTreeSet::new()),
        }
    }

    fn dead(&self, op: &'static str, name: &str) -> StoreError {
        StoreError::new(StoreErrorKind::Other, op, name, "crash").with_detail("the process died")
    }

    fn check_alive(&self, op: &'static str, name: &str) -> Result<(), StoreError> {
        if self.crashed.load(Ordering::SeqCst) {
            Err(self.dead(op, name))
        } else {
            Ok(())
        }
    }

    /// Counts a write; `Ok(true)`: perform it and answer; `Ok(false)`: perform it, then die.
    fn failpoint(&self, op: &'static str, name: &str) -> Result<bool, StoreError> {
        self.check_alive(op, name)?;
        self.points
            .lock()
            .unwrap()
            .insert(format!("{op} {}", class(name)));
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if n < self.at {
            return Ok(true);
        }
        self.crashed.store(true, Ordering::SeqCst);
        match self.mode {
            Crash::Lost => Err(self.dead(op, name)),
            Crash::Landed => Ok(false),
        }
    }
}

#[async_trait]
impl Store for CrashStore {
    fn location(&self) -> &str {
        "crash"
    }
    async fn put(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let answer = self.failpoint("put", name)?;
        self.inner.put(name, data).await?;
        if answer {
            Ok(())
        } else {
            Err(self.dead("put", name))
        }
    }
    async fn put_new(&self, name: &str, data: Bytes) -> Result<(), StoreError> {
        let answer = self.failpoint("put", name)?;
        self.inner.put_new(name, data).await?;
        if answer {
            Ok(())
        } else {
            Err(self.dead("put", name))
        }
    }
    async fn get(&self, name: &str) -> Result<Bytes, StoreError> {
        self.check_alive("get", name)?;
        self.inner.get(name).await
    }
    async fn get_range(&self, name: &str, range: Range<u64>) -> Result<Bytes, StoreError> {
        self.check_alive("get", name)?;
        self.inner.get_range(name, range).await
    }
    async fn stat(&self, name: &str) -> Result<ObjectInfo, StoreError> {
        self.check_alive("stat", name)?;
        self.inner.stat(name).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
        self.check_alive("list", prefix)?;
        self.inner.list(prefix).await
    }
    async fn delete(&self, name: &str) -> Result<(), StoreError> {
        let answer = self.failpoint("delete", name)?;
        self.inner.delete(name).await?;
        if answer {
            Ok(())
        } else {
            Err(self.dead("delete", name))
        }
    }
}

// ---------------------------------------------------------------------------------------
// Repository helpers.
// ---------------------------------------------------------------------------------------

async fn open(store: Arc<dyn Store>) -> Result<Arc<IndexedRepository>, zaibei_repo::RepoError> {
    Ok(Arc::new(
        Repository::open(store, b"pw").await?.load_index().await?,
    ))
}

async fn backup(store: Arc<dyn Store>, files: &Files) -> Result<Id, zaibei_repo::RepoError> {
    let repo = open(store).await?;
    let saver = BlobSaver::start(Arc::clone(&repo), 2).await?;
    let tree = match save_files(&saver, files).await {
        Ok(t) => t,
        Err(e) => {
            let _ = saver.finish().await;
            return Err(e);
        }
    };
    saver.finish().await?;
    repo.save_snapshot(&snapshot_of(tree)).await
}

async fn run_prune(
    store: Arc<dyn Store>,
    margin: u64,
) -> Result<zaibei_repo::PruneReport, zaibei_repo::RepoError> {
    let repo = open(store).await?;
    let opts = PruneOptions {
        max_unused: MaxUnused::Percent(0.0),
        margin: Duration::from_secs(margin),
        ..Default::default()
    };
    prune(&repo, &opts, &|_, _, _| {}).await
}

/// Reads every file of every snapshot.
async fn contents(store: &Arc<dyn Store>) -> Vec<Files> {
    let repo = open(Arc::clone(store)).await.unwrap();
    let mut all = Vec::new();
    for (_, s) in repo.list_snapshots().await.unwrap().snapshots {
        all.push(read_tree(&repo, &s.tree).await);
    }
    all
}

async fn copy(from: &MemoryStore) -> MemoryStore {
    let to = MemoryStore::new();
    for prefix in ["config", "keys", "data", "index", "snapshots", "state"] {
        let listed = if prefix == "config" {
            vec![from.stat("config").await.unwrap()]
        } else {
            from.list(prefix).await.unwrap()
        };
        for o in listed {
            to.put(&o.name, from.get(&o.name).await.unwrap())
                .await
                .unwrap();
        }
    }
    to
}

/// The repository checks without errors; with `tidy`, without warnings either.
async fn assert_checks(store: &Arc<dyn Store>, tidy: bool, context: &str) {
    let repo = open(Arc::clone(store)).await.unwrap();
    let r = check(
        &repo,
        CheckOptions {
            read_data: true,
            ..Default::default()
        },
        &|_, _, _| {},
    )
    .await
    .unwrap();
    assert_eq!(r.errors(), 0, "{context}: {:?}", r.problems);
    if tidy {
        assert!(
            r.problems.is_empty(),
            "{context}: left behind: {:?}",
            r.problems
        );
    }
}

/// Crashes `op` (run on a copy of `base`) at every failpoint in both modes; after each crash
/// every snapshot must hold one of `allowed`, and the snapshots in `must` must all be there.
/// Returns the kinds of failpoint hit.
async fn crash_everywhere<F, Fut>(
    base: &MemoryStore,
    op: F,
    allowed: &[Files],
    must: &[Files],
) -> BTreeSet<String>
where
    F: Fn(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = Result<(), zaibei_repo::RepoError>>,
{
    let mut points = BTreeSet::new();
    for mode in [Crash::Lost, Crash::Landed] {
        let mut at = 1;
        loop {
            let mem = copy(base).await;
            let crash = Arc::new(CrashStore::new(mem.clone(), at, mode));
            let result = op(Arc::clone(&crash) as Arc<dyn Store>).await;
            points.extend(crash.points.lock().unwrap().iter().cloned());
            let crashed = crash.crashed.load(Ordering::SeqCst);
            let context = format!("{mode:?} at write {at}");
            if !crashed {
                result.unwrap_or_else(|e| panic!("{context}: failed without a crash: {e}"));
                break;
            }
            assert!(result.is_err(), "{context}: a crash went unnoticed");
            let store: Arc<dyn Store> = Arc::new(mem);
            assert_checks(&store, false, &context).await;
            let got = contents(&store).await;
            for snapshot in &got {
                assert!(
                    allowed.contains(snapshot),
                    "{context}: a snapshot holds something never saved"
                );
            }
            for m in must {
                assert!(got.contains(m), "{context}: a completed snapshot is lost");
            }
            // The next prune removes the leftovers (a second sweep takes what the first
            // condemned as left over).
            run_prune(Arc::clone(&store), 0).await.unwrap();
            run_prune(Arc::clone(&store), 0).await.unwrap();
            assert_checks(&store, true, &format!("{context}, after prune")).await;
            assert_eq!(
                contents(&store).await,
                got,
                "{context}: prune changed snapshots"
            );
            at += 1;
        }
        assert!(at > 1, "{mode:?}: the command wrote nothing");
    }
    points
}

async fn new_base() -> MemoryStore {
    let mem = MemoryStore::new();
    let mut o = InitOptions::new(Suite::Gm, PasswordKdf::insecure_for_tests(Suite::Gm));
    o.pack_size = 1 << 16;
    Repository::init(Arc::new(mem.clone()), b"pw", o)
        .await
        .unwrap();
    mem
}

fn expect(points: &BTreeSet<String>, wanted: &[&str]) {
    for w in wanted {
        assert!(
            points.contains(*w),
            "failpoint {w:?} never hit; hit: {points:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn backup_survives_a_crash_at_every_write() {
    let base = new_base().await;
    let a = files(0..6, 25_000);
    backup(Arc::new(base.clone()), &a).await.unwrap();
    let mut b = files(3..9, 25_000);
    b.push(("g".into(), data(99, 1000)));
    let points = crash_everywhere(
        &base,
        |s| {
            let b = b.clone();
            async move { backup(s, &b).await.map(|_| ()) }
        },
        &[a.clone(), b.clone()],
        std::slice::from_ref(&a),
    )
    .await;
    expect(&points, &["put data", "put index", "put snapshots"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn forget_survives_a_crash_at_every_delete() {
    let base = new_base().await;
    let a = files(0..3, 20_000);
    let b = files(10..13, 20_000);
    let sa = backup(Arc::new(base.clone()), &a).await.unwrap();
    backup(Arc::new(base.clone()), &b).await.unwrap();
    let points = crash_everywhere(
        &base,
        |s| async move { Repository::open(s, b"pw").await?.forget_snapshot(&sa).await },
        &[a.clone(), b.clone()],
        std::slice::from_ref(&b),
    )
    .await;
    expect(&points, &["put state/forgotten", "delete snapshots"]);
}

/// Three snapshots sharing data; the middle one forgotten, so prune both deletes whole packs
/// and repacks partly used ones.
async fn prune_base() -> (MemoryStore, Vec<Files>) {
    let base = new_base().await;
    let a = files(0..8, 12_000);
    // b's own files sit between files c shares, so its packs end up partly used.
    let mut b = files(4..12, 12_000);
    b.extend((4..12).map(|s| (format!("f{s:03}x"), data(s + 1000, 12_000))));
    b.sort();
    let c = files(8..16, 12_000);
    backup(Arc::new(base.clone()), &a).await.unwrap();
    let sb = backup(Arc::new(base.clone()), &b).await.unwrap();
    backup(Arc::new(base.clone()), &c).await.unwrap();
    Repository::open(Arc::new(base.clone()), b"pw")
        .await
        .unwrap()
        .forget_snapshot(&sb)
        .await
        .unwrap();
    (base, vec![a, c])
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_in_one_run_survives_a_crash_at_every_write_and_delete() {
    let (base, kept) = prune_base().await;
    let points = crash_everywhere(
        &base,
        |s| async move { run_prune(s, 0).await.map(|_| ()) },
        &kept,
        &kept,
    )
    .await;
    expect(
        &points,
        &[
            "put state/clock",
            "delete state/clock",
            "put data",
            "put index",
            "put state/condemned",
            "delete index",
            "delete data",
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn prune_mark_then_sweep_survive_a_crash_at_every_write_and_delete() {
    let (base, kept) = prune_base().await;
    // The mark phase, crashed everywhere.
    let marks = crash_everywhere(
        &base,
        |s| async move { run_prune(s, 3600).await.map(|_| ()) },
        &kept,
        &kept,
    )
    .await;
    expect(&marks, &["put data", "put index", "put state/condemned"]);
    // The sweep after a completed mark, crashed everywhere.
    run_prune(Arc::new(base.clone()), 3600).await.unwrap();
    let sweeps = crash_everywhere(
        &base,
        |s| async move { run_prune(s, 0).await.map(|_| ()) },
        &kept,
        &kept,
    )
    .await;
    expect(
        &sweeps,
        &[
            "put index",
            "put state/condemned",
            "delete index",
            "delete data",
            "delete state/condemned",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Copy between repositories.
// ---------------------------------------------------------------------------------------

/// Copies every snapshot of `src` into the repository in `dst`.
async fn run_copy(
    src: &Arc<IndexedRepository>,
    dst: Arc<dyn Store>,
) -> Result<usize, zaibei_repo::RepoError> {
    let dst = open(dst).await?;
    let all = src.list_snapshots().await?.snapshots;
    let opts = zaibei_repo::copy::CopyOptions::default();
    let r = zaibei_repo::copy::copy_snapshots(src, &dst, all, &opts, &|_, _, _| {}).await?;
    Ok(r.copied.len())
}

/// Crashes a copy from `src` into a copy of `dst_base` at every write, in both modes; after
/// each crash the destination checks clean and holds only complete snapshots, and running the
/// copy again finishes the work: every snapshot of the source reads back at the destination.
async fn copy_survives_crashes(src_mem: &MemoryStore, dst_base: &MemoryStore) -> BTreeSet<String> {
    let src = open(Arc::new(src_mem.clone())).await.unwrap();
    let wanted = contents(&(Arc::new(src_mem.clone()) as Arc<dyn Store>)).await;
    let before = contents(&(Arc::new(dst_base.clone()) as Arc<dyn Store>)).await;
    let mut points = BTreeSet::new();
    for mode in [Crash::Lost, Crash::Landed] {
        let mut at = 1;
        loop {
            let mem = copy(dst_base).await;
            let crash = Arc::new(CrashStore::new(mem.clone(), at, mode));
            let result = run_copy(&src, Arc::clone(&crash) as Arc<dyn Store>).await;
            points.extend(crash.points.lock().unwrap().iter().cloned());
            let context = format!("copy, {mode:?} at write {at}");
            if !crash.crashed.load(Ordering::SeqCst) {
                result.unwrap_or_else(|e| panic!("{context}: failed without a crash: {e}"));
                break;
            }
            assert!(result.is_err(), "{context}: a crash went unnoticed");
            let store: Arc<dyn Store> = Arc::new(mem);
            assert_checks(&store, false, &context).await;
            let got = contents(&store).await;
            for snapshot in &got {
                assert!(
                    wanted.contains(snapshot) || before.contains(snapshot),
                    "{context}: a snapshot holds something never saved"
                );
            }
            for b in &before {
                assert!(
                    got.contains(b),
                    "{context}: a snapshot of the destination is lost"
                );
            }
            // Resuming completes the copy.
            run_copy(&src, Arc::clone(&store)).await.unwrap();
            let done = contents(&store).await;
            for w in &wanted {
                assert!(done.contains(w), "{context}: resuming left a snapshot out");
            }
            assert_eq!(
                run_copy(&src, Arc::clone(&store)).await.unwrap(),
                0,
                "{context}: a third run found work left"
            );
            assert_checks(&store, false, &format!("{context}, resumed")).await;
            at += 1;
        }
        assert!(at > 1, "{mode:?}: the copy wrote nothing");
    }
    points
}

/// A source with two snapshots, and a destination that already holds the first: the copy
/// must move the second's packs, whole where no blob of them is at the destination and
/// shrunk where some are.
async fn copy_bases(shared_keys: bool) -> (MemoryStore, MemoryStore) {
    let src = new_base().await;
    let a = files(0..4, 30_000);
    backup(Arc::new(src.clone()), &a).await.unwrap();
    let dst = MemoryStore::new();
    let source = Repository::open(Arc::new(src.clone()), b"pw")
        .await
        .unwrap();
    let mut o = InitOptions::new(Suite::Gm, PasswordKdf::insecure_for_tests(Suite::Gm));
    o.pack_size = 1 << 16;
    if shared_keys {
        Repository::init_sharing_keys(Arc::new(dst.clone()), b"pw", o, &source)
            .await
            .unwrap();
    } else {
        Repository::init(Arc::new(dst.clone()), b"pw", o)
            .await
            .unwrap();
    }
    let src_indexed = open(Arc::new(src.clone())).await.unwrap();
    let dst_indexed = open(Arc::new(dst.clone())).await.unwrap();
    let expected = if shared_keys {
        zaibei_repo::copy::CopyMode::Packs
    } else {
        zaibei_repo::copy::CopyMode::Reencrypt
    };
    assert_eq!(
        zaibei_repo::copy::copy_mode(&src_indexed, &dst_indexed),
        expected
    );
    run_copy(&src_indexed, Arc::new(dst.clone())).await.unwrap();
    let mut b = files(2..7, 30_000);
    b.push(("tiny".into(), data(5, 300)));
    backup(Arc::new(src.clone()), &b).await.unwrap();
    (src, dst)
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_of_packs_survives_a_crash_at_every_write_and_resumes() {
    let (src, dst) = copy_bases(true).await;
    let points = copy_survives_crashes(&src, &dst).await;
    expect(&points, &["put data", "put index", "put snapshots"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn copy_by_reencryption_survives_a_crash_at_every_write_and_resumes() {
    let (src, dst) = copy_bases(false).await;
    let points = copy_survives_crashes(&src, &dst).await;
    expect(&points, &["put data", "put index", "put snapshots"]);
}
