//! A local cache of a repository's metadata: index objects, snapshots, and packs of tree and
//! reference blobs.
//!
//! Every cached object is named by the hash of its bytes (as in the repository), so the cache
//! needs no trust: an object read from it is hashed and compared with its name before use
//! (packs once per process), and one that does not match is deleted and fetched again. The
//! cache is an optimisation only: any failure to read or write it is logged and the store is
//! used instead. Objects are written to a temporary name and renamed, so a crash leaves no
//! partial object under a final name.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use bytes::Bytes;
use zaibei_crypto::Suite;
use zaibei_format::Id;

use crate::names;

/// Marks a directory as a cache for backup tools (<https://bford.info/cachedir/>).
const CACHEDIR_TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This directory is a cache of zaibei repository metadata; it can be deleted at any time.\n";

/// The cache of one repository, in `<base>/<repository id>/`.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    suite: Suite,
    /// Packs whose cached bytes were verified in this process.
    verified: Mutex<HashSet<Id>>,
}

impl Cache {
    /// Opens (creating if needed) the cache of repository `repo_id` under `base`.
    pub fn open(base: &Path, repo_id: &Id, suite: Suite) -> io::Result<Cache> {
        fs::create_dir_all(base)?;
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            write_atomic(&tag, CACHEDIR_TAG.as_bytes())?;
        }
        let dir = base.join(repo_id.to_string());
        fs::create_dir_all(&dir)?;
        Ok(Cache {
            dir,
            suite,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The directory of this repository's cache.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Names of objects the cache keeps (index objects and snapshots; packs are added
    /// explicitly by kind).
    pub fn keeps(name: &str) -> bool {
        name.starts_with("index/") || name.starts_with("snapshots/")
    }

    /// The cached bytes of `name`, if present and intact.
    pub fn get(&self, name: &str) -> Option<Bytes> {
        let id = names::id_of(name)?;
        let path = self.path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!("cache: reading {}: {e}", path.display());
                return None;
            }
        };
        if Id(self.suite.hash(&bytes)) != id {
            tracing::warn!("cache: {} is damaged; fetching it again", path.display());
            let _ = fs::remove_file(&path);
            return None;
        }
        Some(Bytes::from(bytes))
    }

    /// Stores `bytes` as `name` (errors are logged, never returned).
    pub fn put(&self, name: &str, bytes: &[u8]) {
        let path = self.path(name);
        if let Err(e) = path
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| write_atomic(&path, bytes))
        {
            tracing::warn!("cache: writing {}: {e}", path.display());
        }
    }

    /// Reads `range` of the cached pack `id`, verifying the whole pack the first time it is
    /// used in this process. `None` when it is not cached (or was damaged and is now gone).
    pub fn read_pack_range(&self, id: &Id, offset: u64, length: u64) -> Option<Vec<u8>> {
        let name = names::pack(id);
        let path = self.path(&name);
        let verified = self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id);
        if !verified {
            self.get(&name)?;
            self.verified
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(*id);
        }
        let file = File::open(&path).ok()?;
        // The index is authenticated, but a length beyond any pack is still refused.
        if length > 1 << 30 {
            return None;
        }
        let mut buf = vec![0u8; usize::try_from(length).ok()?];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Some(buf),
            Err(e) => {
                tracing::warn!("cache: reading {}: {e}", path.display());
                None
            }
        }
    }

    /// Stores a pack that has been checked against its id.
    pub fn put_pack(&self, id: &Id, bytes: &[u8]) {
        self.put(&names::pack(id), bytes);
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(*id);
    }

    /// Drops the cached copy of `name` (an object the repository no longer has).
    pub fn forget(&self, name: &str) {
        let _ = fs::remove_file(self.path(name));
    }

    /// Drops a cached pack whose contents turned out not to open (e.g. damaged on disk after
    /// it was verified), so the next read goes to the store.
    pub fn forget_pack(&self, id: &Id) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let _ = fs::remove_file(self.path(&names::pack(id)));
    }

    /// Removes cached objects under `dir` (`index`, `snapshots`, `data`) that are not in
    /// `keep`: objects the repository no longer has (or, for packs, no longer needs cached).
    pub fn retain(&self, dir: &str, keep: &HashSet<String>) {
        let root = self.path(dir);
        let mut stack = vec![root];
        while let Some(d) = stack.pop() {
            let Ok(entries) = fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.dir) else {
                    continue;
                };
                let rel = rel.to_string_lossy();
                if !keep.contains(rel.as_ref()) {
                    tracing::debug!("cache: dropping {rel}");
                    let _ = fs::remove_file(&path);
                }
            }
        }
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut rnd = [0u8; 8];
    getrandom::fill(&mut rnd).map_err(|e| io::Error::other(e.to_string()))?;
    let tmp = dir.join(format!(".tmp-{}", hex_lower(&rnd)));
    let res = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn objects_round_trip_and_damage_is_detected() {
        let tmp = tempfile::tempdir().unwrap();
        let suite = Suite::Gm;
        let cache = Cache::open(tmp.path(), &Id([7; 32]), suite).unwrap();
        let bytes = b"index object bytes".to_vec();
        let name = names::index(&Id(suite.hash(&bytes)));
        assert!(cache.get(&name).is_none());
        cache.put(&name, &bytes);
        assert_eq!(cache.get(&name).unwrap(), bytes);
        fs::write(cache.dir().join(&name), b"tampered").unwrap();
        assert!(cache.get(&name).is_none());
        assert!(!cache.dir().join(&name).exists(), "damaged entry removed");
        assert!(tmp.path().join("CACHEDIR.TAG").exists());
    }

    #[test]
    fn packs_are_verified_before_ranges_are_served() {
        let tmp = tempfile::tempdir().unwrap();
        let suite = Suite::Intl;
        let cache = Cache::open(tmp.path(), &Id([1; 32]), suite).unwrap();
        let pack = (0..=255u8).collect::<Vec<_>>();
        let id = Id(suite.hash(&pack));
        assert!(cache.read_pack_range(&id, 0, 4).is_none());
        cache.put(&names::pack(&id), &pack);
        assert_eq!(cache.read_pack_range(&id, 10, 3).unwrap(), vec![10, 11, 12]);

        let other = vec![9u8; 100];
        let other_id = Id(suite.hash(&other));
        fs::create_dir_all(cache.dir().join(names::pack(&other_id)).parent().unwrap()).unwrap();
        fs::write(cache.dir().join(names::pack(&other_id)), vec![8u8; 100]).unwrap();
        assert!(
            cache.read_pack_range(&other_id, 0, 4).is_none(),
            "unverified pack used"
        );
    }

    #[test]
    fn retain_drops_what_the_repository_no_longer_has() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path(), &Id([2; 32]), Suite::Gm).unwrap();
        cache.put("snapshots/aa", b"1");
        cache.put("snapshots/bb", b"2");
        let keep: HashSet<String> = ["snapshots/aa".to_owned()].into();
        cache.retain("snapshots", &keep);
        assert!(cache.dir().join("snapshots/aa").exists());
        assert!(!cache.dir().join("snapshots/bb").exists());
    }
}
