//! Resolving the repository location and opening it.

use std::sync::Arc;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result, bail};
use zaibei_repo::{IndexedRepository, Repository};
use zaibei_store::{FsStore, Store};

use zaibei_archive::tree_walk::normalize;

use crate::{Cli, exit};

/// The store named by `-r` / `ZAIBEI_REPOSITORY`.
pub fn store(cli: &Cli) -> Result<Arc<dyn Store>> {
    let Some(location) = cli.repo.as_deref() else {
        bail!(crate::exit::WithCode(
            crate::exit::USAGE,
            "no repository given: use -r PATH or set ZAIBEI_REPOSITORY".into()
        ));
    };
    let path = location.strip_prefix("fs:").unwrap_or(location);
    if path.is_empty() {
        bail!(crate::exit::WithCode(
            crate::exit::USAGE,
            "empty repository location".into()
        ));
    }
    if let Some((scheme, _)) = path.split_once(':')
        && !scheme.contains('/')
        && scheme.len() > 1
    {
        bail!(crate::exit::WithCode(
            crate::exit::USAGE,
            format!(
                "unsupported repository location {location:?}: this build stores repositories in local directories (PATH or fs:PATH)"
            )
        ));
    }
    Ok(Arc::new(FsStore::new(path)))
}

/// Opens the repository, asking for the password as configured.
pub async fn open(cli: &Cli) -> Result<Repository> {
    let store = store(cli)?;
    let password = crate::password::get(
        cli.password_file.as_deref(),
        "enter password for repository: ",
    )?;
    let location = store.location().to_owned();
    Repository::open(store, &password)
        .await
        .with_context(|| format!("opening repository {location}"))
}

/// Opens the repository and loads its index.
pub async fn open_indexed(cli: &Cli) -> Result<Arc<IndexedRepository>> {
    let repo = open(cli).await?;
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
