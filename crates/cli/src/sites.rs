//! Reaching the other sites of a repository's set: opening their repositories with this one's
//! keys, asking them for their site state, and the fencing check before any deletion.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use zaibei_format::{SitePeer, SiteRecord};
use zaibei_repo::Repository;
use zaibei_repo::site::{PeerAnswer, PeerRepo, SiteState, fencing_verdict};
use zaibei_store::{Location, Store};

use crate::{Cli, exit};

/// The location text recorded for a site: a local directory made absolute, object storage as
/// given.
pub fn canonical_location(text: &str) -> Result<String> {
    let location = Location::parse(text).map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?;
    Ok(match location {
        Location::Fs(path) => {
            let abs = std::path::absolute(&path)
                .with_context(|| format!("making {} absolute", path.display()))?;
            abs.to_string_lossy().into_owned()
        }
        _ => text.to_owned(),
    })
}

/// This repository's location as recorded for its peers.
pub fn own_location(cli: &Cli) -> Result<String> {
    let Some(text) = cli.repo.as_deref() else {
        bail!(exit::WithCode(exit::USAGE, "no repository given".into()));
    };
    canonical_location(text)
}

/// The store at `location`, with the storage options of the command line.
pub fn open_store(cli: &Cli, location: &str) -> Result<Arc<dyn Store>> {
    let parsed =
        Location::parse(location).map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?;
    Ok(zaibei_store::open(&parsed, &cli.storage.open_options()?)
        .map_err(|e| exit::WithCode(exit::USAGE, e.to_string()))?
        .store)
}

/// Opens the repository at `location` with the keys `local` holds. Fails when it does not
/// share key material with `local`, or is `local` itself.
pub async fn open_peer(cli: &Cli, location: &str, local: &Repository) -> Result<Repository> {
    let store = open_store(cli, location)?;
    match Repository::open_sharing_keys(store, local)
        .await
        .with_context(|| format!("opening the repository at {location}"))?
    {
        Some(repo) if repo.config().id == local.config().id => bail!(
            "{location} is this repository itself (a local path that names the same directory \
             on this host?)"
        ),
        Some(repo) => Ok(repo),
        None => bail!(
            "the repository at {location} does not share key material with {}: sites of one \
             set are created from each other with `zaibei init --from`",
            local.store().location()
        ),
    }
}

/// How long reaching one peer may take before it counts as unreachable.
fn peer_timeout(cli: &Cli) -> Duration {
    Duration::from_secs(cli.storage.io_timeout.clamp(1, 600))
}

/// Opens every peer of `record` with `local`'s keys, all at once; a peer whose store does not
/// answer in time (`--io-timeout`) counts as unreachable.
pub async fn open_peers(cli: &Cli, local: &Repository, record: &SiteRecord) -> Vec<PeerRepo> {
    reach_peers(cli, local, record)
        .await
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// Opens every peer of `record` and reads its site state, all at once and each within
/// `--io-timeout`: the peer, and what it answered.
pub async fn reach_peers(
    cli: &Cli,
    local: &Repository,
    record: &SiteRecord,
) -> Vec<(PeerRepo, PeerAnswer)> {
    let opens = record.peers.iter().map(|p| async move {
        let reach = async {
            let r = open_peer(cli, &p.location, local).await?;
            // Reach the store now: an unreachable site must show here, not later.
            let state = r.site_state().await?;
            anyhow::Ok((r, state.record))
        };
        let (repo, answer) = match tokio::time::timeout(peer_timeout(cli), reach).await {
            Ok(Ok((r, record))) => (Ok(r), PeerAnswer::Reached(record)),
            Ok(Err(e)) => {
                let why = exit::describe(&e);
                (Err(why.clone()), PeerAnswer::Unreachable(why))
            }
            Err(_) => {
                let why = format!("no answer within {} s", peer_timeout(cli).as_secs());
                (Err(why.clone()), PeerAnswer::Unreachable(why))
            }
        };
        (
            PeerRepo {
                peer: p.clone(),
                repo,
            },
            answer,
        )
    });
    futures::future::join_all(opens).await
}

/// Asks every peer of `state` for its site state: each answer is the one read while the peer
/// was reached, within `--io-timeout`, so a peer that stops answering cannot hang the caller.
pub async fn ask_peers(
    cli: &Cli,
    local: &Repository,
    state: &SiteState,
) -> Vec<(SitePeer, PeerAnswer)> {
    let Some(record) = &state.record else {
        return Vec::new();
    };
    reach_peers(cli, local, record)
        .await
        .into_iter()
        .map(|(p, answer)| (p.peer, answer))
        .collect()
}

/// Refuses, with exit code [`exit::FENCED`], unless `repo` may delete: it belongs to no set of
/// sites, or it is provably the current primary (see `zaibei_repo::site`).
pub async fn require_primary(cli: &Cli, repo: &Repository, what: &str) -> Result<()> {
    let state = repo.site_state().await.context("reading the site state")?;
    if state.record.is_none() && !state.newer_unreadable() {
        return Ok(());
    }
    let peers = ask_peers(cli, repo, &state).await;
    if let Err(e) = fencing_verdict(&state, &peers) {
        bail!(exit::WithCode(
            exit::FENCED,
            format!("{what} refused: {}", e)
        ));
    }
    Ok(())
}
