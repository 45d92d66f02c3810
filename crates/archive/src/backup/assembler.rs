//! The tree assembler: receives each directory's entries in post-order, waits for the entries
//! still being read, stores the tree and answers the parent directory with its id.

use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use zaibei_format::{Id, Node, NodeKind, PackKind, SnapshotSummary, Tree};

use super::Context;
use super::files::FileOutcome;
use crate::ArchiveError;
use crate::progress::Counters;

/// Whether a file read by a worker was new or changed (for the summary).
#[derive(Debug, Clone, Copy)]
pub(crate) enum FileState {
    /// Not in the parent snapshot.
    New,
    /// In the parent snapshot, but changed.
    Changed,
}

/// An entry of a directory, complete or still in progress.
pub(crate) enum Pending {
    /// Complete (unchanged file, symlink, device...).
    Ready(Node),
    /// A file being read by a worker.
    File {
        rx: Receiver<FileOutcome>,
        state: FileState,
    },
    /// A subdirectory whose tree the assembler stores first.
    Dir { node: Node, rx: Receiver<Id> },
}

/// One directory's entries.
pub(crate) struct TreeJob {
    /// The directory's path (for messages).
    pub path: Vec<u8>,
    /// Its entries, sorted by name.
    pub children: Vec<Pending>,
    /// The directory's tree in the parent snapshot, with its id.
    pub parent: Option<(Id, Arc<Tree>)>,
    /// Where the tree's id goes.
    pub reply: Sender<Id>,
}

pub(crate) fn run(
    ctx: &Context<'_>,
    jobs: Receiver<TreeJob>,
) -> Result<SnapshotSummary, ArchiveError> {
    let mut summary = SnapshotSummary::default();
    for job in jobs {
        let mut tree = Tree {
            nodes: Vec::with_capacity(job.children.len()),
        };
        for pending in job.children {
            match pending {
                Pending::Ready(node) => {
                    match node.kind {
                        NodeKind::File => {
                            summary.files_unmodified += 1;
                            summary.total_files += 1;
                            summary.total_bytes += node.size;
                            Counters::add(&ctx.counters.files, 1);
                            Counters::add(&ctx.counters.bytes_seen, node.size);
                        }
                        NodeKind::Dir => summary.dirs += 1,
                        _ => summary.others += 1,
                    }
                    tree.nodes.push(node);
                }
                Pending::File { rx, state } => match rx.recv() {
                    Ok(FileOutcome::Done(node)) => {
                        match state {
                            FileState::New => summary.files_new += 1,
                            FileState::Changed => summary.files_changed += 1,
                        }
                        summary.total_files += 1;
                        summary.total_bytes += node.size;
                        tree.nodes.push(*node);
                    }
                    Ok(FileOutcome::Skipped) => {}
                    Ok(FileOutcome::Fatal(e)) => return Err(e),
                    Err(_) => {
                        return Err(ArchiveError::Internal(
                            "a file worker stopped without answering".into(),
                        ));
                    }
                },
                Pending::Dir { mut node, rx } => {
                    let id = rx.recv().map_err(|_| {
                        ArchiveError::Internal(format!(
                            "subtree of {} missing",
                            String::from_utf8_lossy(&job.path)
                        ))
                    })?;
                    node.subtree = Some(id);
                    summary.dirs += 1;
                    tree.nodes.push(node);
                }
            }
        }
        tree.sort_and_check().map_err(|e| {
            ArchiveError::Internal(format!("{}: {e}", String::from_utf8_lossy(&job.path)))
        })?;
        let id = match job.parent {
            // Unchanged since the parent snapshot: its tree is reused without encoding and
            // hashing it again, once the saver confirms both of its blobs are present.
            Some((id, parent))
                if parent.nodes == tree.nodes
                    && ctx.saver.has_blob(PackKind::Tree, &id)
                    && ctx.saver.has_blob(PackKind::Refs, &id) =>
            {
                id
            }
            _ => ctx.saver.save_tree(&tree)?,
        };
        // The receiver is gone only when the walk already failed.
        let _ = job.reply.send(id);
    }
    Ok(summary)
}
