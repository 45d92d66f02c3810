//! Opening many stored blobs at once: a pack's key is derived once for consecutive blobs of that
//! pack, not once per blob, and
//! the ids of the decrypted plaintexts are checked together, so the `gm` suite hashes several
//! of them side by side (multi-buffer HMAC-SM3) instead of one stream after another.

use zaibei_crypto::{Aead, HashProgress};
use zaibei_format::{FormatError, Id, PackKind, blob};

use crate::index::BlobRef;
use crate::{IndexedRepository, RepoError, Result};

/// A plaintext authenticated by its tag whose id is not checked yet.
struct Unchecked {
    id: Id,
    pack: Id,
    plain: Vec<u8>,
    /// How far the hash of its id has got ([`BlobOpener::check_ready`]).
    progress: HashProgress,
}

/// Opens the stored bytes of blobs of one kind, in two steps: [`BlobOpener::add`] authenticates,
/// decrypts and decompresses one blob (the stored bytes can be dropped afterwards), and
/// [`BlobOpener::finish`] checks every id and hands back the plaintexts. Nothing leaves the
/// opener before its id is checked.
///
/// An opener can also be used in rounds ([`BlobOpener::check_ready`]): each round hands back
/// the blobs whose ids were checked side by side, and keeps the few (the longest) that would
/// otherwise be hashed one stream at a time, part hashed, to go on beside the next round's
/// blobs.
pub struct BlobOpener<'r> {
    repo: &'r IndexedRepository,
    kind: PackKind,
    /// The key of the pack last opened from (blobs of one read share their pack).
    aead: Option<(Id, Aead)>,
    pending: Vec<Unchecked>,
    pending_bytes: usize,
}

/// Blob error naming the object, as every read of a blob names it.
fn blob_error(kind: PackKind, id: &Id, pack: &Id, e: FormatError) -> RepoError {
    RepoError::format(format!("{} blob {id} in pack {pack}", kind.name()), e)
}

impl<'r> BlobOpener<'r> {
    /// An opener for blobs of `kind` read from `repo`.
    pub fn new(repo: &'r IndexedRepository, kind: PackKind) -> Self {
        BlobOpener {
            repo,
            kind,
            aead: None,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// Authenticates, decrypts and decompresses the stored bytes of blob `id`, which the index
    /// places at `loc`. A blob whose tag or payload is wrong is refused here, naming it.
    pub fn add(&mut self, id: &Id, loc: &BlobRef<'_>, stored: &[u8]) -> Result<()> {
        let pack = loc.pack.id;
        let aead = match &self.aead {
            Some((p, aead)) if *p == pack => aead,
            _ => {
                let aead = self
                    .repo
                    .keys
                    .pack_aead(self.kind, &loc.pack.salt)
                    .map_err(|e| blob_error(self.kind, id, &pack, e))?;
                &self.aead.insert((pack, aead)).1
            }
        };
        let plain = blob::open_blob(aead, self.kind, id, stored, loc.raw_length)
            .map_err(|e| blob_error(self.kind, id, &pack, e))?;
        self.pending_bytes += plain.len();
        self.pending.push(Unchecked {
            id: *id,
            pack,
            plain,
            progress: HashProgress::default(),
        });
        Ok(())
    }

    /// The kind of blobs this opener opens.
    pub fn kind(&self) -> PackKind {
        self.kind
    }

    /// Plaintext bytes added and not yet handed back.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// True while blob `id` was added and has not been handed back.
    pub fn holds(&self, id: &Id) -> bool {
        self.pending.iter().any(|u| u.id == *id)
    }

    /// Checks the id of every blob added (reference blobs have no id of their own to check)
    /// and returns each blob's plaintext, or the error naming it, in the order they were added.
    pub fn finish(mut self) -> Vec<(Id, Result<Vec<u8>>)> {
        self.check(true)
    }

    /// Checks the ids of the blobs added as far as they hash side by side, and returns those
    /// settled (plaintext, or the error naming the blob) in the order they were added. The
    /// few left over stay in the opener, part hashed, for the next call or
    /// [`BlobOpener::finish`] (in the `intl` suite none are left).
    pub fn check_ready(&mut self) -> Vec<(Id, Result<Vec<u8>>)> {
        self.check(false)
    }

    fn check(&mut self, finish_all: bool) -> Vec<(Id, Result<Vec<u8>>)> {
        if self.pending.is_empty() {
            return Vec::new();
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        if self.kind == PackKind::Refs {
            return pending.into_iter().map(|u| (u.id, Ok(u.plain))).collect();
        }
        const OPERATION: &str = "reading blobs";
        let Ok(content) = self.repo.keys.content(OPERATION) else {
            let kind = self.kind;
            return pending
                .into_iter()
                .map(|u| {
                    let e = FormatError::NeedsContentKey {
                        operation: OPERATION,
                    };
                    (u.id, Err(blob_error(kind, &u.id, &u.pack, e)))
                })
                .collect();
        };
        let mut progress: Vec<HashProgress> = pending.iter().map(|u| u.progress.clone()).collect();
        let actual = {
            let plaintexts: Vec<&[u8]> = pending.iter().map(|u| u.plain.as_slice()).collect();
            content.blob_ids_some(&plaintexts, &mut progress, finish_all)
        };
        let kind = self.kind;
        let mut settled = Vec::with_capacity(pending.len());
        for ((mut u, actual), progress) in pending.into_iter().zip(actual).zip(progress) {
            match actual {
                Some(actual) if actual == u.id => settled.push((u.id, Ok(u.plain))),
                Some(actual) => {
                    let e = FormatError::invalid("blob", format!("plaintext hashes to {actual}"));
                    settled.push((u.id, Err(blob_error(kind, &u.id, &u.pack, e))));
                }
                None => {
                    u.progress = progress;
                    self.pending_bytes += u.plain.len();
                    self.pending.push(u);
                }
            }
        }
        settled
    }
}
