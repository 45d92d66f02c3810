//! Verification of a restored tree against its snapshot, independent of the restore engine.
//!
//! The snapshot's trees are walked again and every entry is looked up in the scratch
//! directory below directory handles opened with `O_NOFOLLOW`: directories must be
//! directories, symlinks must have the snapshot's target, devices, FIFOs and sockets the
//! right type (and device number), and regular files the right size and contents — every
//! data blob is read back from the file (at its extents, for sparse files) and its keyed hash
//! compared with the blob id; bytes outside the extents must read as zero. Ownership, modes,
//! times and extended attributes are not compared. Files are checked by worker threads,
//! which keep only counts and the failures (path and data blob ids) and drop each file's job
//! as soon as it is checked; a directory's handle is closed once its entries are checked,
//! so the handles open at once are bounded by the depth of the tree plus the files queued
//! for the workers, however many directories the snapshot holds.
//!
//! Entries the restore already reported are not checked again: they are failures, and their
//! cause is found later ([`crate::cause`]).

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{Mode, OFlags};
use zaibei_archive::progress::Counters;
use zaibei_format::{Id, Node, NodeKind, Tree};
use zaibei_repo::IndexedRepository;

use crate::DrillError;
use crate::cause::Needs;
use crate::compare::{self, check_other, errno_text, grant_access};
use crate::report::FailurePhase;

/// An entry that failed, before its cause is known.
#[derive(Debug)]
pub(crate) struct Problem {
    /// Its path in the snapshot.
    pub path: Vec<u8>,
    /// Where it failed.
    pub phase: FailurePhase,
    /// Why.
    pub reason: String,
    /// What to read from the repository to tell damage from a local failure.
    pub needs: Needs,
}

/// What a verification found.
#[derive(Debug, Default)]
pub(crate) struct Verified {
    pub files_expected: u64,
    pub files_verified: u64,
    pub bytes_verified: u64,
    pub dirs_verified: u64,
    pub others_verified: u64,
    pub problems: Vec<Problem>,
}

/// A file for a worker.
struct FileJob {
    dir: Arc<OwnedFd>,
    node: Node,
    path: Vec<u8>,
}

/// What one worker found.
#[derive(Default)]
struct WorkerResult {
    files_verified: u64,
    bytes_verified: u64,
    problems: Vec<Problem>,
}

/// A directory still to walk.
struct DirJob {
    parent: Arc<OwnedFd>,
    node: Node,
    path: Vec<u8>,
}

/// Verifies the scratch directory `target` against the tree `root`. `restore_failures` are
/// the entries the restore reported (path and reason).
pub(crate) fn verify_tree(
    repo: &IndexedRepository,
    runtime: &tokio::runtime::Handle,
    root: Id,
    target: &Path,
    restore_failures: &[(Vec<u8>, String)],
    workers: usize,
    counters: &Counters,
) -> Result<Verified, DrillError> {
    let reported: HashMap<&[u8], &str> = restore_failures
        .iter()
        .map(|(p, r)| (p.as_slice(), r.as_str()))
        .collect();
    let root_fd = rustix::fs::open(
        target,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| DrillError::io("opening scratch directory", target, e.into()))?;
    let root_tree = runtime.block_on(repo.load_tree(&root))?;
    let content = repo
        .keys()
        .content("verifying a drill")
        .map_err(|e| DrillError::Repo(zaibei_repo::RepoError::format("drill", e)))?;

    let (tx, rx) = crossbeam_channel::bounded::<FileJob>(workers.max(1) * 8);
    std::thread::scope(|scope| -> Result<Verified, DrillError> {
        let mut handles = Vec::new();
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("zaibei-verify-{i}"))
                .spawn_scoped(scope, move || {
                    let mut found = WorkerResult::default();
                    while let Ok(job) = rx.recv() {
                        let FileJob { dir, node, path } = job;
                        let result = compare::verify_file(repo, content, &dir, &node);
                        // The directory's handle goes now, not at the end of the walk.
                        drop(dir);
                        match result {
                            Ok(bytes) => {
                                Counters::add(&counters.files, 1);
                                Counters::add(&counters.bytes, bytes);
                                Counters::add(&counters.bytes_seen, bytes);
                                found.files_verified += 1;
                                found.bytes_verified += bytes;
                            }
                            Err(reason) => {
                                Counters::add(&counters.errors, 1);
                                found.problems.push(Problem {
                                    path,
                                    phase: FailurePhase::Verify,
                                    reason,
                                    needs: Needs::Blobs(node.content),
                                });
                            }
                        }
                    }
                    found
                })
                .map_err(|e| DrillError::Internal(format!("starting a verify worker: {e}")))?;
            handles.push(handle);
        }
        drop(rx);
        let mut walk = Walk {
            repo,
            runtime,
            reported: &reported,
            tx,
            out: Verified::default(),
            dirs: Vec::new(),
            counters,
        };
        walk.directory(&Arc::new(root_fd), b"", &root_tree);
        walk.run();
        let Walk { mut out, tx, .. } = walk;
        drop(tx);
        for h in handles {
            let found = h
                .join()
                .map_err(|_| DrillError::Internal("a verify worker panicked".into()))?;
            out.files_verified += found.files_verified;
            out.bytes_verified += found.bytes_verified;
            out.problems.extend(found.problems);
        }
        Ok(out)
    })
}

struct Walk<'a> {
    repo: &'a IndexedRepository,
    runtime: &'a tokio::runtime::Handle,
    reported: &'a HashMap<&'a [u8], &'a str>,
    tx: crossbeam_channel::Sender<FileJob>,
    out: Verified,
    dirs: Vec<DirJob>,
    counters: &'a Counters,
}

impl Walk<'_> {
    fn problem(&mut self, path: Vec<u8>, reason: String, needs: Needs) {
        let (phase, reason) = match self.reported.get(path.as_slice()) {
            Some(r) => (FailurePhase::Restore, (*r).to_owned()),
            None => (FailurePhase::Verify, reason),
        };
        Counters::add(&self.counters.errors, 1);
        self.out.problems.push(Problem {
            path,
            phase,
            reason,
            needs,
        });
    }

    /// Walks the directories queued so far, depth first.
    fn run(&mut self) {
        while let Some(job) = self.dirs.pop() {
            let Some(sub) = job.node.subtree else {
                self.problem(job.path, "directory without subtree".into(), Needs::Damaged);
                continue;
            };
            let tree = match self.runtime.block_on(self.repo.load_tree(&sub)) {
                Ok(t) => t,
                Err(e) => {
                    self.problem(
                        job.path,
                        format!("cannot read its tree: {e}"),
                        Needs::Tree(sub),
                    );
                    continue;
                }
            };
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let name = job.node.name.as_slice();
            let opened =
                rustix::fs::openat(&*job.parent, name, flags, Mode::empty()).or_else(|e| {
                    if e == rustix::io::Errno::ACCESS && grant_access(&job.parent, name, 0o500) {
                        rustix::fs::openat(&*job.parent, name, flags, Mode::empty())
                    } else {
                        Err(e)
                    }
                });
            let fd = match opened {
                Ok(fd) => fd,
                Err(e) => {
                    self.problem(
                        job.path,
                        errno_text("restored directory missing or unreadable", e),
                        Needs::Tree(sub),
                    );
                    continue;
                }
            };
            if let Some(reason) = self.reported.get(job.path.as_slice()) {
                // Its metadata failed, say: a failure, but its entries are still checked.
                self.problem(job.path.clone(), (*reason).to_owned(), Needs::Tree(sub));
            } else {
                self.out.dirs_verified += 1;
                Counters::add(&self.counters.dirs, 1);
            }
            self.directory(&Arc::new(fd), &job.path, &tree);
        }
    }

    /// Checks the entries of one directory (open as `dir`); queues files and subdirectories.
    fn directory(&mut self, dir: &Arc<OwnedFd>, path: &[u8], tree: &Tree) {
        // Reverse, so that the stack pops subdirectories in name order.
        for node in tree.nodes.iter().rev() {
            let mut child = path.to_vec();
            child.push(b'/');
            child.extend_from_slice(&node.name);
            match node.kind {
                NodeKind::Dir => self.dirs.push(DirJob {
                    parent: Arc::clone(dir),
                    node: node.clone(),
                    path: child,
                }),
                NodeKind::File => {
                    self.out.files_expected += 1;
                    if let Some(reason) = self.reported.get(child.as_slice()) {
                        let reason = (*reason).to_owned();
                        self.problem(child, reason, Needs::Blobs(node.content.clone()));
                    } else {
                        let job = FileJob {
                            dir: Arc::clone(dir),
                            node: node.clone(),
                            path: child,
                        };
                        if let Err(e) = self.tx.send(job) {
                            let job = e.into_inner();
                            self.problem(
                                job.path,
                                "the verify workers stopped".into(),
                                Needs::Nothing,
                            );
                        }
                    }
                }
                _ => {
                    let result = if self.reported.contains_key(child.as_slice()) {
                        Err(String::new())
                    } else {
                        check_other(dir.as_fd(), node)
                    };
                    match result {
                        Ok(()) => self.out.others_verified += 1,
                        // Symlink targets and device numbers live in the tree, which was read.
                        Err(reason) => self.problem(child, reason, Needs::Nothing),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
