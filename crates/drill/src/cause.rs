//! Why an entry failed: the repository is damaged, the store could not be reached, or the
//! repository holds the entry intact and the failure was local. Found by reading again what
//! the entry needs from the repository.

use zaibei_format::{Id, PackKind};
use zaibei_repo::{IndexedRepository, RepoError};

use crate::report::FailureCause;

/// Failures examined one by one; the rest are reported with [`FailureCause::Unknown`].
pub const MAX_EXAMINED: usize = 1000;

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

/// Finds the cause of a failure of an entry that needs `needs`.
pub(crate) async fn classify(repo: &IndexedRepository, needs: &Needs) -> FailureCause {
    match needs {
        Needs::Nothing => FailureCause::Local,
        Needs::Damaged => FailureCause::RepositoryDamage,
        Needs::Unexamined => FailureCause::Unknown,
        Needs::Tree(id) => match repo.load_tree(id).await {
            Ok(_) => FailureCause::Local,
            Err(e) => of_error(&e),
        },
        Needs::Blobs(ids) => {
            for id in ids {
                if let Err(e) = repo.read_blob(PackKind::Data, id).await {
                    return of_error(&e);
                }
            }
            FailureCause::Local
        }
    }
}
