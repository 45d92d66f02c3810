//! Resolving the repository location and opening it.

use std::sync::{Arc, OnceLock};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result, bail};
use zaibei_repo::{Cache, IndexedRepository, Repository};
use zaibei_store::{Location, OpenedStore, StoreCounters, StoreStats};

use zaibei_archive::tree_walk::normalize;

use crate::{Cli, exit};

/// Traffic counters of the store opened by this process.
static TRAFFIC: OnceLock<Arc<StoreCounters>> = OnceLock::new();

/// Requests and bytes that reached the store so far (zero before one is opened).
pub fn traffic() -> StoreStats {
    TRAFFIC.get().map(|c| c.snapshot()).unwrap_or_default()
}

/// The store named by `-r` / `ZAIBEI_REPOSITORY`, with retries, limits and counters.
pub fn store(cli: &Cli) -> Result<OpenedStore> {
    let Some(text) = cli.repo.as_deref() else {
        bail!(exit::WithCode(
            exit::USAGE,
            "no repository given: use -r PATH or set ZAIBEI_REPOSITORY".into()
        ));
    };
    let location = Location::parse(text).map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?;
    let opened = zaibei_store::open(&location, &cli.storage.open_options()?)
        .map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?;
    let _ = TRAFFIC.set(Arc::clone(&opened.counters));
    Ok(opened)
}

/// Packs a backup uploads at a time: `--connections`, or 8 on object storage or a zaibei
/// server (where latency calls for many) and 2 on a local disk (where more would only hold
/// more packs in memory).
pub fn upload_connections(cli: &Cli) -> usize {
    match cli.storage.connections {
        Some(n) => usize::from(n),
        None if is_remote(cli) => 8,
        None => 2,
    }
}

/// Whether the repository is on object storage or a zaibei server.
fn is_remote(cli: &Cli) -> bool {
    cli.repo
        .as_deref()
        .and_then(|text| Location::parse(text).ok())
        .is_some_and(|l| matches!(l, Location::Bucket(_) | Location::Server(_)))
}

/// Restore writers to run at least: `--connections` (8 by default) on object storage or a
/// zaibei server, where each writer waits for its reads, or when `--connections` is given;
/// 4 on a local disk, where fewer writers each gather a larger batch (the batches share
/// 32 MiB), so that more blob ids are hashed side by side: restoring the Linux tree from a
/// local repository took 0.3–0.5 s less user CPU with 4 writers than with 8, in the same
/// wall time (A/B, `docs/BENCHMARKS.md`).
pub fn restore_writers(cli: &Cli) -> usize {
    if is_remote(cli) || cli.storage.connections.is_some() {
        cli.storage.requests()
    } else {
        LOCAL_RESTORE_WRITERS
    }
}

/// Restore writers on a local disk ([`restore_writers`]).
const LOCAL_RESTORE_WRITERS: usize = 4;

/// Attaches the metadata cache the options ask for (object storage only by default).
pub fn attach_cache(cli: &Cli, repo: &mut Repository, remote: bool) {
    let Some(base) = cli.storage.cache_base(remote) else {
        return;
    };
    match Cache::open(&base, &repo.config().id, repo.suite()) {
        Ok(cache) => repo.set_cache(cache),
        Err(e) => tracing::warn!(
            "metadata cache in {} unusable ({e}); reading metadata from the repository",
            base.display()
        ),
    }
}

/// Opens the repository, asking for the password as configured.
pub async fn open(cli: &Cli) -> Result<Repository> {
    open_with(cli, true).await
}

/// Opens the repository; with `cache`, attaches the metadata cache the options ask for.
/// Commands that must judge the store itself (check) open without it.
pub async fn open_with(cli: &Cli, cache: bool) -> Result<Repository> {
    open_store(cli, store(cli)?, cache).await
}

/// Opens the repository in `opened` (from [`store`]), as [`open_with`] does.
pub async fn open_store(cli: &Cli, opened: OpenedStore, cache: bool) -> Result<Repository> {
    let store = opened.store;
    let password = crate::password::get(
        cli.password_file.as_deref(),
        "enter password for repository: ",
    )?;
    let location = store.location().to_owned();
    let mut repo = Repository::open(store, &password)
        .await
        .with_context(|| format!("opening repository {location}"))?;
    if cache {
        attach_cache(cli, &mut repo, opened.remote);
    }
    Ok(repo)
}

/// Opens the repository and loads its index.
pub async fn open_indexed(cli: &Cli) -> Result<Arc<IndexedRepository>> {
    open_indexed_with(cli, true).await
}

/// Opens the repository (with or without the metadata cache) and loads its index.
pub async fn open_indexed_with(cli: &Cli, cache: bool) -> Result<Arc<IndexedRepository>> {
    indexed(open_with(cli, cache).await?).await
}

/// Opens the repository in `opened` (from [`store`]) with the metadata cache, and loads its
/// index.
pub async fn open_indexed_store(cli: &Cli, opened: OpenedStore) -> Result<Arc<IndexedRepository>> {
    indexed(open_store(cli, opened, true).await?).await
}

async fn indexed(repo: Repository) -> Result<Arc<IndexedRepository>> {
    let indexed = repo.load_index().await.context("loading the index")?;
    for p in indexed.index_problems() {
        tracing::warn!("index object {} is unusable: {}", p.name, p.error);
    }
    Ok(Arc::new(indexed))
}

/// Splits `SNAPSHOT[:PATH]` (the path may be any bytes): the snapshot and the path in the form
/// [`normalize`] gives (empty for the root).
pub fn split_spec_os(spec: &OsStr) -> Result<(String, Vec<u8>)> {
    let b = spec.as_bytes();
    let (snap, path) = match b.iter().position(|&c| c == b':') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b""[..]),
    };
    let Ok(snap) = std::str::from_utf8(snap) else {
        bail!(exit::WithCode(
            exit::USAGE,
            format!("{:?} is not a snapshot id", String::from_utf8_lossy(snap))
        ));
    };
    Ok((snap.to_owned(), normalize(path)))
}

/// Fails with a clear message when the repository was opened with a maintenance-only key,
/// which cannot read trees or file data.
pub fn require_content(repo: &zaibei_repo::Repository, command: &str) -> Result<()> {
    if !repo.keys().has_content() {
        bail!(exit::WithCode(
            exit::ERROR,
            format!(
                "{command} reads trees and file data, which needs a full key; the repository was opened with a maintenance-only key"
            )
        ));
    }
    Ok(())
}
