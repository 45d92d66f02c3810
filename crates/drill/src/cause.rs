//! Why an entry failed: the repository is damaged, the store could not be reached, or the
//! repository holds the entry intact and the failure was local. Found by reading again what
//! the entry needs from the repository, within bounds: at most [`MAX_EXAMINED`] failures,
//! and at most [`MAX_REREAD_BYTES`] of stored file data in all. A file's blobs are read until
//! the first one that fails, and a blob read back intact once is not read again.

use std::collections::HashSet;

use zaibei_format::{Id, PackKind};
use zaibei_repo::{IndexedRepository, RepoError};

use crate::report::FailureCause;

/// Failures examined one by one; the rest are reported with [`FailureCause::Unknown`].
pub const MAX_EXAMINED: usize = 1000;

/// Stored bytes of file data read again to trace failures, at most, in one drill; a file
/// whose blobs would go past it is reported with [`FailureCause::Unknown`].
pub const MAX_REREAD_BYTES: u64 = 1 << 30;

/// What an entry needs from the repository.
#[derive(Debug, Clone)]
pub(crate) enum Needs {
    /// Nothing beyond its directory's tree, which was read: a failure is local.
    Nothing,
    /// These data blobs (a file).
    Blobs(Vec<Id>),
    /// This tree (a directory).
    Tree(Id),
    /// The snapshot's own metadata is malformed: damage.
    Damaged,
    /// Not known (a failure the restore reported where the verification did not look).
    Unexamined,
}

fn of_error(e: &RepoError) -> FailureCause {
    if e.is_store_unreachable() {
        FailureCause::StoreUnreachable
    } else if e.is_integrity() {
        FailureCause::RepositoryDamage
    } else {
        FailureCause::Unknown
    }
}

/// Traces failures to their cause, one after the other, within a budget of bytes to read.
pub(crate) struct Tracer<'a> {
    repo: &'a IndexedRepository,
    /// Stored bytes of data blobs that may still be read.
    budget: u64,
    /// Data blobs read back intact already.
    intact: HashSet<Id>,
    /// Stored bytes of data blobs read so far.
    pub bytes_read: u64,
    /// True once a failure was left untraced because the budget would not cover it.
    pub exhausted: bool,
}

impl<'a> Tracer<'a> {
    /// A tracer that reads at most `budget` stored bytes of file data.
    pub(crate) fn new(repo: &'a IndexedRepository, budget: u64) -> Self {
        Tracer {
            repo,
            budget,
            intact: HashSet::new(),
            bytes_read: 0,
            exhausted: false,
        }
    }

    /// Finds the cause of a failure of an entry that needs `needs`.
    pub(crate) async fn classify(&mut self, needs: &Needs) -> FailureCause {
        match needs {
            Needs::Nothing => FailureCause::Local,
            Needs::Damaged => FailureCause::RepositoryDamage,
            Needs::Unexamined => FailureCause::Unknown,
            Needs::Tree(id) => match self.repo.load_tree(id).await {
                Ok(_) => FailureCause::Local,
                Err(e) => of_error(&e),
            },
            Needs::Blobs(ids) => {
                for id in ids {
                    if self.intact.contains(id) {
                        continue;
                    }
                    let length = match self.repo.locate(PackKind::Data, id) {
                        Ok(loc) => loc.length,
                        Err(e) => return of_error(&e),
                    };
                    if length > self.budget {
                        self.exhausted = true;
                        return FailureCause::Unknown;
                    }
                    self.budget -= length;
                    self.bytes_read += length;
                    // The first blob that fails decides: no need to read the rest.
                    if let Err(e) = self.repo.read_blob(PackKind::Data, id).await {
                        return of_error(&e);
                    }
                    self.intact.insert(*id);
                }
                FailureCause::Local
            }
        }
    }
}
