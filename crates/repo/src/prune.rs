//! Prune: removing data no snapshot references, in two phases measured on the store's clock
//! (docs/FORMAT.md §14).
//!
//! One run does both phases:
//!
//! 1. It walks every snapshot through the reference blobs (the maintenance key suffices) and
//!    decides, for every blob stored more than once, which copy to keep.
//! 2. *Sweep.* Packs condemned by an earlier run whose margin has passed on the store's clock
//!    are deleted, unless a snapshot published since needs a blob that only they hold: those
//!    are taken back.
//! 3. *Mark.* Packs no snapshot needs, packs no index lists (left over from interrupted
//!    operations), and packs shrunk by repacking are condemned with the store time of now.
//!    Repacking copies the used blob records of a pack into a new pack with the same salt, so
//!    it needs no content key and decrypts nothing.
//!
//! Publishing order keeps the repository valid at every instant: shrunk packs, then index
//! objects listing them, then (when packs leave) index objects without those packs, then the
//! new `condemned` generation (the race between two prunes is decided here, before anything is
//! deleted), then deletion of the superseded index objects, and last the packs.
//!
//! Memory: the index (about 60 bytes per blob), the set of used blobs (about 40 bytes per
//! used blob), and 12 bytes per pack; packs being repacked are held whole, at most
//! `connections` of them at a time.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use zaibei_format::{Condemned, CondemnedPack, Id, IndexFile, IndexPack, PackKind};

use crate::index::{IdMap, IdSet};
use crate::reach::Reachable;
use crate::repack::shrink_pack;
use crate::saver::{write_index, write_index_chunks};
use crate::{CONDEMNED, IndexedRepository, PACKS_PER_INDEX, RepoError, Result, names};

/// How much unused space prune may leave in packs that are still partly used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnused {
    /// A share of the repository's pack bytes, in percent.
    Percent(f64),
    /// A number of bytes.
    Bytes(u64),
}

impl MaxUnused {
    /// Parses `5%`, `0%`, `100M`, `2G`, `1048576`.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let t = text.trim();
        if let Some(p) = t.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a percentage"))?;
            if !(0.0..=100.0).contains(&v) {
                return Err(format!("{text:?}: a percentage lies between 0% and 100%"));
            }
            return Ok(MaxUnused::Percent(v));
        }
        let (digits, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is neither a percentage nor a size"))?;
        let shift = match unit.trim().to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KIB" => 10,
            "M" | "MIB" => 20,
            "G" | "GIB" => 30,
            "T" | "TIB" => 40,
            other => return Err(format!("unknown size unit {other:?} (use K, M, G or T)")),
        };
        n.checked_mul(1 << shift)
            .map(MaxUnused::Bytes)
            .ok_or_else(|| format!("{text:?} is too large"))
    }

    fn limit(self, total: u64) -> u64 {
        match self {
            MaxUnused::Percent(p) => (total as f64 * p / 100.0) as u64,
            MaxUnused::Bytes(b) => b,
        }
    }
}

/// Settings of a prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Unused space allowed to remain in partly used packs.
    pub max_unused: MaxUnused,
    /// At most this many bytes of packs are repacked in one run.
    pub max_repack: Option<u64>,
    /// How long a condemned pack stays readable before deletion (store clock). Zero deletes in
    /// the same run, which is safe only while no backup or copy writes to the repository.
    pub margin: Duration,
    /// Decide and report, change nothing.
    pub dry_run: bool,
    /// Packs read and written at a time.
    pub connections: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: MaxUnused::Percent(5.0),
            max_repack: None,
            margin: crate::DEFAULT_MARGIN,
            dry_run: false,
            connections: 4,
        }
    }
}

/// What a prune found and did (or, in a dry run, would do).
#[derive(Debug, Clone, Default)]
pub struct PruneReport {
    /// Snapshots walked.
    pub snapshots: usize,
    /// Packs the store held, and their bytes.
    pub packs: usize,
    /// Bytes of those packs.
    pub pack_bytes: u64,
    /// Blobs some snapshot needs.
    pub used_blobs: u64,
    /// Stored bytes of those blobs (one copy each).
    pub used_bytes: u64,
    /// Stored bytes of blobs no snapshot needs (or extra copies) in packs not condemned.
    pub unused_bytes: u64,
    /// Unused bytes left in partly used packs after this run.
    pub unused_bytes_after: u64,
    /// Packs newly condemned because no snapshot needs any of their blobs.
    pub unused_packs: usize,
    /// Packs newly condemned because no index lists them (left over from interrupted work).
    pub orphan_packs: usize,
    /// Packs shrunk by repacking (their originals are condemned).
    pub repacked_packs: usize,
    /// Bytes of the packs repacked.
    pub repacked_bytes_before: u64,
    /// Bytes of the packs written by repacking.
    pub repacked_bytes_after: u64,
    /// Condemned packs taken back because a snapshot needs them.
    pub taken_back: usize,
    /// Packs deleted.
    pub deleted_packs: usize,
    /// Bytes deleted.
    pub deleted_bytes: u64,
    /// Condemned packs still waiting for their margin to pass.
    pub waiting_packs: usize,
    /// Their bytes.
    pub waiting_bytes: u64,
    /// Store time (Unix seconds) when the first waiting pack may go.
    pub next_sweep: Option<u64>,
    /// Packs the index listed that the store no longer holds and no snapshot needs (dropped
    /// from the index).
    pub missing_dropped: usize,
    /// Index objects written.
    pub index_written: usize,
    /// Index objects deleted (superseded).
    pub index_deleted: usize,
    /// The store's time at the start (Unix seconds).
    pub store_time: u64,
    /// Generation of the `condemned` state published (0 in a dry run or when unchanged).
    pub generation: u64,
}

/// Progress of a prune: phase name, items done, items in total (0: unknown).
pub type PruneProgress<'a> = &'a (dyn Fn(&str, u64, u64) + Send + Sync);

/// What becomes of one pack of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Repack,
    Condemn,
    /// Condemned earlier, still inside its margin.
    Waiting,
    TakeBack,
    Delete,
    /// Missing from the store and not needed: dropped from the index.
    DropMissing,
}

/// Runs a prune; see the module docs.
pub async fn prune(
    repo: &IndexedRepository,
    opts: &PruneOptions,
    progress: PruneProgress<'_>,
) -> Result<PruneReport> {
    if let Some(p) = repo.index_problems().first() {
        return Err(RepoError::Refused(format!(
            "index object {} cannot be read ({}); prune would take the packs it lists for \
             unused. Run `zaibei repair index` first",
            p.name, p.error
        )));
    }
    let mut report = PruneReport::default();
    let now = if opts.dry_run {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    } else {
        repo.store_time().await?
    };
    report.store_time = now;
    let margin = opts.margin.as_secs();
    let state = repo.condemned_state().await?;
    let previously: IdMap<CondemnedPack> =
        state.condemned.packs.iter().map(|p| (p.id, *p)).collect();
    let stored: IdMap<u64> = repo
        .store()
        .list(names::DATA)
        .await?
        .into_iter()
        .filter_map(|o| Some((names::id_of(&o.name)?, o.size)))
        .collect();
    report.packs = stored.len();
    report.pack_bytes = stored.values().sum();

    let used = walk_snapshots(repo, &mut report, progress).await?;
    let index = repo.index();
    let packs = index.packs();
    let npacks = packs.len();

    // Every location of every used blob; the copy to keep is chosen below.
    let mut all_bytes = vec![0u64; npacks];
    let mut potential = vec![0u64; npacks];
    for kind in PackKind::ALL {
        for loc in index.all_locations(kind) {
            all_bytes[loc.pack] += loc.length;
            if used.contains(kind, loc.id) {
                potential[loc.pack] += loc.length;
            }
        }
    }
    let live =
        |p: usize| stored.contains_key(&packs[p].id) && !previously.contains_key(&packs[p].id);
    let preference = |p: usize| {
        let share = potential[p] as f64 / (packs[p].size.max(1)) as f64;
        (
            live(p) as u8,
            stored.contains_key(&packs[p].id) as u8,
            share,
        )
    };
    // For blobs stored more than once: the pack that keeps the copy.
    let mut chosen: [IdMap<usize>; 3] = Default::default();
    let mut used_bytes = vec![0u64; npacks];
    let mut used_count = vec![0u64; npacks];
    let mut found = 0u64;
    for kind in PackKind::ALL {
        let choice = &mut chosen[kind.slot()];
        for loc in index.all_locations(kind) {
            if !used.contains(kind, loc.id) {
                continue;
            }
            if !loc.duplicated {
                used_bytes[loc.pack] += loc.length;
                used_count[loc.pack] += 1;
                found += 1;
                continue;
            }
            match choice.get(loc.id) {
                Some(&p) if preference(p) >= preference(loc.pack) => {}
                _ => {
                    choice.insert(*loc.id, loc.pack);
                }
            }
        }
        for loc in index.all_locations(kind) {
            if loc.duplicated && choice.get(loc.id) == Some(&loc.pack) {
                used_bytes[loc.pack] += loc.length;
                used_count[loc.pack] += 1;
                found += 1;
            }
        }
    }
    report.used_blobs = found;
    report.used_bytes = used_bytes.iter().sum();
    let needed = used.data.len() as u64 + 2 * used.trees.len() as u64;
    if found != needed {
        return Err(RepoError::Refused(format!(
            "snapshots need {needed} blobs but the index locates only {found}; the repository \
             is damaged. Run `zaibei check` and repair it before pruning"
        )));
    }

    // The fate of every indexed pack.
    let mut fates = vec![Fate::Keep; npacks];
    let mut candidates = Vec::new();
    let mut live_bytes = 0u64;
    for (p, meta) in packs.iter().enumerate() {
        let present = stored.contains_key(&meta.id);
        let unused = all_bytes[p].saturating_sub(used_bytes[p]);
        fates[p] = if !present {
            if used_count[p] > 0 {
                return Err(RepoError::Refused(format!(
                    "pack {} is missing from the store but snapshots need {} of its blobs; run \
                     `zaibei check` to see what is affected",
                    meta.id, used_count[p]
                )));
            }
            Fate::DropMissing
        } else if let Some(c) = previously.get(&meta.id) {
            if used_count[p] > 0 {
                Fate::TakeBack
            } else if c.since.saturating_add(margin) <= now {
                Fate::Delete
            } else {
                Fate::Waiting
            }
        } else if used_count[p] == 0 {
            Fate::Condemn
        } else {
            live_bytes += meta.size;
            if unused > 0 {
                candidates.push(p);
                report.unused_bytes += unused;
            }
            Fate::Keep
        };
    }
    // Repack the packs with the largest unused share first, until what remains is allowed.
    candidates.sort_by(|&a, &b| {
        let share = |p: usize| {
            all_bytes[p].saturating_sub(used_bytes[p]) as f64 / packs[p].size.max(1) as f64
        };
        share(b)
            .total_cmp(&share(a))
            .then(packs[a].id.cmp(&packs[b].id))
    });
    let limit = opts.max_unused.limit(live_bytes);
    let mut remaining = report.unused_bytes;
    for p in candidates {
        if remaining <= limit {
            break;
        }
        let size = packs[p].size;
        if opts
            .max_repack
            .is_some_and(|m| report.repacked_bytes_before + size > m)
        {
            continue;
        }
        fates[p] = Fate::Repack;
        report.repacked_packs += 1;
        report.repacked_bytes_before += size;
        remaining -= all_bytes[p].saturating_sub(used_bytes[p]);
    }
    report.unused_bytes_after = remaining;

    // Packs no index lists.
    let mut orphans: Vec<(Id, u64)> = Vec::new();
    let mut orphan_deletes: Vec<(Id, u64)> = Vec::new();
    for (id, &size) in &stored {
        if index.pack(id).is_some() {
            continue;
        }
        match previously.get(id) {
            Some(c) if c.since.saturating_add(margin) <= now => orphan_deletes.push((*id, size)),
            Some(_) => {}
            None => orphans.push((*id, size)),
        }
    }
    orphans.sort();
    report.orphan_packs = orphans.len();

    // The next `condemned` generation.
    let mut next: Vec<CondemnedPack> = Vec::new();
    let mut deletes: Vec<(Id, u64)> = orphan_deletes;
    for (p, meta) in packs.iter().enumerate() {
        match fates[p] {
            Fate::Waiting => {
                if let Some(c) = previously.get(&meta.id) {
                    next.push(*c);
                }
            }
            Fate::Condemn | Fate::Repack => {
                if fates[p] == Fate::Condemn {
                    report.unused_packs += 1;
                }
                next.push(CondemnedPack {
                    id: meta.id,
                    kind: meta.kind,
                    size: meta.size,
                    since: now,
                });
            }
            Fate::Delete => deletes.push((meta.id, meta.size)),
            Fate::TakeBack => report.taken_back += 1,
            Fate::DropMissing => report.missing_dropped += 1,
            Fate::Keep => {}
        }
    }
    for (id, size) in &orphans {
        next.push(CondemnedPack {
            id: *id,
            kind: orphan_kind(repo, id).await,
            size: *size,
            since: now,
        });
    }
    for (id, c) in &previously {
        // Waiting orphans (condemned, not indexed, still stored) carry over.
        if index.pack(id).is_none()
            && stored.contains_key(id)
            && c.since.saturating_add(margin) > now
        {
            next.push(*c);
        }
    }
    if margin == 0 {
        // No margin: what this run condemns goes at once.
        deletes.extend(next.iter().map(|c| (c.id, c.size)));
        next.clear();
    }
    for c in &next {
        report.waiting_packs += 1;
        report.waiting_bytes += c.size;
        let due = c.since.saturating_add(margin);
        report.next_sweep = Some(report.next_sweep.map_or(due, |d: u64| d.min(due)));
    }
    report.deleted_packs = deletes.len();
    report.deleted_bytes = deletes.iter().map(|(_, s)| s).sum();
    if opts.dry_run {
        report.repacked_bytes_after = report.repacked_bytes_before.saturating_sub(unused_of(
            &fates,
            Fate::Repack,
            &all_bytes,
            &used_bytes,
        ));
        return Ok(report);
    }

    // 1. Shrunk packs, and index objects listing them. The blobs each keeps (used, and the
    // copy chosen) are gathered in one pass over the index.
    let repack: Vec<usize> = (0..npacks).filter(|&p| fates[p] == Fate::Repack).collect();
    let mut keep_sets: std::collections::HashMap<usize, IdSet> =
        repack.iter().map(|&p| (p, IdSet::default())).collect();
    for kind in PackKind::ALL {
        let slot = kind.slot();
        for loc in index.all_locations(kind) {
            if let Some(keep) = keep_sets.get_mut(&loc.pack)
                && used.contains(kind, loc.id)
                && (!loc.duplicated || chosen[slot].get(loc.id) == Some(&loc.pack))
            {
                keep.insert(*loc.id);
            }
        }
    }
    let mut written_index: Vec<Id> = Vec::new();
    let mut new_packs: Vec<IndexPack> = Vec::new();
    {
        let total = repack.len() as u64;
        let mut done = 0u64;
        let mut pending: Vec<IndexPack> = Vec::new();
        let mut results = futures::stream::iter(repack.iter().map(|&p| {
            let keep = keep_sets.remove(&p).unwrap_or_default();
            async move {
                let meta = &packs[p];
                let name = names::pack(&meta.id);
                let bytes = repo.get_verified(&name).await?;
                let keys = repo.keys().maintenance().clone();
                let suite = repo.suite();
                let expected = keep.len() as u64;
                let shrunk = tokio::task::spawn_blocking(move || {
                    shrink_pack(&keys, suite, &name, &bytes, |id| keep.contains(id))
                })
                .await
                .map_err(|e| RepoError::Internal(format!("repack task: {e}")))??;
                if shrunk.index.blobs.len() as u64 != expected {
                    return Err(RepoError::Refused(format!(
                        "pack {}: its header lists {} of the {expected} blobs the index places in \
                     it; run `zaibei check`",
                        meta.id,
                        shrunk.index.blobs.len()
                    )));
                }
                repo.store()
                    .put(&names::pack(&shrunk.id), shrunk.bytes.clone())
                    .await?;
                Ok::<_, RepoError>(shrunk.index)
            }
        }))
        .buffer_unordered(opts.connections.max(1));
        while let Some(r) = results.next().await {
            let entry = r?;
            report.repacked_bytes_after += entry.size;
            done += 1;
            progress("repack", done, total);
            new_packs.push(entry.clone());
            pending.push(entry);
            if pending.len() >= PACKS_PER_INDEX {
                written_index.push(write_index(repo, std::mem::take(&mut pending)).await?);
            }
        }
        if !pending.is_empty() {
            written_index.push(write_index(repo, pending).await?);
        }
    }

    // 2. When packs leave the index: index objects without them, superseding all loaded.
    let leaving: IdSet = (0..npacks)
        .filter(|&p| fates[p] == Fate::DropMissing)
        .map(|p| packs[p].id)
        .chain(
            deletes
                .iter()
                .map(|(id, _)| *id)
                .filter(|id| index.pack(id).is_some()),
        )
        .collect();
    let mut superseded: Vec<Id> = Vec::new();
    if !leaving.is_empty() {
        superseded = index.index_ids().to_vec();
        superseded.extend(written_index.iter().copied());
        let rewritten = rewrite_index(repo, &superseded, &leaving, new_packs).await?;
        written_index.extend(rewritten);
    }
    report.index_written = written_index.len();

    // 3. The next generation of `condemned`; losing the race stops before any deletion.
    let previous_ids: Vec<Id> = previously.keys().copied().collect::<Vec<_>>();
    let changed = next.len() != previous_ids.len()
        || next.iter().any(|c| !previously.contains_key(&c.id))
        || !deletes.is_empty();
    if changed {
        let body = Condemned {
            margin,
            packs: next,
        }
        .to_value();
        let head = crate::StateHead {
            generation: state.generation,
            id: state.id,
            object: None,
            newest_listed: state.newest_listed,
        };
        let published = repo.publish_state(CONDEMNED, &head, body).await?;
        report.generation = published.generation;
    }

    // 4. Superseded index objects, then the packs.
    for id in &superseded {
        match repo.store().delete(&names::index(id)).await {
            Ok(()) => report.index_deleted += 1,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(cache) = repo.metadata_cache() {
            cache.forget(&names::index(id));
        }
    }
    let total = deletes.len() as u64;
    let mut done = 0u64;
    let mut removals = futures::stream::iter(deletes.iter().map(|(id, _)| async move {
        match repo.store().delete(&names::pack(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(RepoError::from(e)),
        }
    }))
    .buffer_unordered(opts.connections.max(1));
    while let Some(r) = removals.next().await {
        r?;
        done += 1;
        progress("delete", done, total);
    }
    if let Some(cache) = repo.metadata_cache() {
        for (id, _) in &deletes {
            cache.forget_pack(id);
        }
    }
    if report.generation > 1 {
        // Readers and writers need only the newest generation.
        repo.delete_old_states(CONDEMNED, report.generation).await?;
    }
    Ok(report)
}

fn unused_of(fates: &[Fate], fate: Fate, all: &[u64], used: &[u64]) -> u64 {
    (0..fates.len())
        .filter(|&p| fates[p] == fate)
        .map(|p| all[p].saturating_sub(used[p]))
        .sum()
}

/// The kind of a pack no index lists, from its prefix (data when it cannot be read).
async fn orphan_kind(repo: &IndexedRepository, id: &Id) -> PackKind {
    match repo
        .store()
        .get_range(
            &names::pack(id),
            0..zaibei_format::pack::PACK_PREFIX_LEN as u64,
        )
        .await
    {
        Ok(b) => zaibei_format::pack::decode_pack_prefix(&b)
            .map(|(k, _)| k)
            .unwrap_or(PackKind::Data),
        Err(_) => PackKind::Data,
    }
}

/// Walks every snapshot through the reference blobs and collects the blobs they need.
async fn walk_snapshots(
    repo: &IndexedRepository,
    report: &mut PruneReport,
    progress: PruneProgress<'_>,
) -> Result<Reachable> {
    let list = repo.list_snapshots().await?;
    if let Some((name, e)) = list.damaged.first() {
        return Err(RepoError::Refused(format!(
            "snapshot {name} cannot be read ({e}); prune cannot know what it needs. Remove it \
             with `zaibei forget` or repair it before pruning"
        )));
    }
    report.snapshots = list.snapshots.len();
    let mut used = Reachable::default();
    let mut done = 0u64;
    used.extend_from(repo, list.snapshots.iter().map(|(_, s)| s.tree), || {
        done += 1;
        progress("trees", done, 0);
    })
    .await
    .map_err(|e| match e {
        RepoError::Refused(why) => RepoError::Refused(format!(
            "{why}; prune cannot know what the snapshots need. Run `zaibei check`"
        )),
        e => e,
    })?;
    Ok(used)
}

/// Writes index objects listing every pack of the index objects `old` except `leaving`, plus
/// `extra`; the last one supersedes `old`. Returns the ids written.
async fn rewrite_index(
    repo: &IndexedRepository,
    old: &[Id],
    leaving: &IdSet,
    extra: Vec<IndexPack>,
) -> Result<Vec<Id>> {
    let mut keep: BTreeMap<Id, IndexPack> = BTreeMap::new();
    for id in old {
        let name = names::index(id);
        let bytes = repo.get_verified(&name).await?;
        let file = IndexFile::open(repo.keys().maintenance(), &bytes)
            .map_err(|e| RepoError::format(&name, e))?;
        for p in file.packs {
            if !leaving.contains(&p.id) {
                keep.entry(p.id).or_insert(p);
            }
        }
    }
    for p in extra {
        keep.entry(p.id).or_insert(p);
    }
    write_index_chunks(repo, keep.into_values().collect(), old).await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn max_unused_parses_shares_and_sizes() {
        assert_eq!(MaxUnused::parse("5%").unwrap(), MaxUnused::Percent(5.0));
        assert_eq!(MaxUnused::parse("0%").unwrap(), MaxUnused::Percent(0.0));
        assert_eq!(
            MaxUnused::parse("100M").unwrap(),
            MaxUnused::Bytes(100 << 20)
        );
        assert_eq!(MaxUnused::parse("7").unwrap(), MaxUnused::Bytes(7));
        assert!(MaxUnused::parse("101%").is_err());
        assert!(MaxUnused::parse("5X").is_err());
        assert!(MaxUnused::parse("").is_err());
        assert_eq!(MaxUnused::Percent(10.0).limit(1000), 100);
    }
}
