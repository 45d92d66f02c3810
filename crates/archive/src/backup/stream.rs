//! Backing up a stream: standard input, or the output of a command (a database dump).
//!
//! With a command, the backup succeeds only if the command exits with status 0: a dump that
//! failed half way must never look like a good backup, so no snapshot is written otherwise.

use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;

use zaibei_format::{Node, NodeKind, Timestamp, Tree};
use zaibei_repo::{BlobSaver, IndexedRepository};

use super::files::{InPlace, READ_WINDOW_EXTRA_BYTES, Window};
use super::{BackupOptions, BackupOutcome, new_snapshot};
use crate::ArchiveError;
use crate::budget::WindowBudget;
use crate::chunker::Chunker;
use crate::progress::Counters;

/// A stream backup.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// Name of the file in the snapshot.
    pub filename: String,
    /// Command whose standard output is backed up (`None`: standard input).
    pub command: Option<Vec<std::ffi::OsString>>,
    /// Tags, host and time as for a directory backup.
    pub base: BackupOptions,
}

/// Backs up standard input or a command's output as one file.
pub async fn backup_stream(
    repo: Arc<IndexedRepository>,
    opts: StreamOptions,
    counters: Arc<Counters>,
) -> Result<BackupOutcome, ArchiveError> {
    let name = opts.filename.as_bytes().to_vec();
    zaibei_format::tree::check_name(&name)
        .map_err(|e| ArchiveError::Usage(format!("--stdin-filename: {e}")))?;
    let start = Timestamp::now();
    let chunker = Chunker::new(repo.suite(), &repo.chunker_seed()?, repo.config().chunker);
    let saver = BlobSaver::start(Arc::clone(&repo), opts.base.connections.max(1)).await?;
    let s2 = saver.clone();
    let c2 = Arc::clone(&counters);
    // The producer is a tokio child with kill_on_drop: if the backup is abandoned (Ctrl-C drops
    // this future), the command is killed rather than left running. Its output is read on a
    // blocking thread like any stream.
    let mut child = None;
    let reader: Box<dyn Read + Send> = match &opts.command {
        None => Box::new(std::io::stdin()),
        Some(argv) => {
            let (program, args) = argv.split_first().ok_or_else(|| {
                ArchiveError::Usage("--stdin-from-command needs a command".into())
            })?;
            let mut c = tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    ArchiveError::io("starting command", std::path::Path::new(program), e)
                })?;
            let stdout = c
                .stdout
                .take()
                .ok_or_else(|| ArchiveError::Internal("no stdout pipe".into()))?
                .into_owned_fd()
                .map_err(|e| {
                    ArchiveError::io("reading command output", std::path::Path::new(program), e)
                })?;
            child = Some(c);
            Box::new(std::fs::File::from(stdout))
        }
    };
    let read = tokio::task::spawn_blocking(move || store_stream(&chunker, &s2, &c2, reader));
    let mut stored = read
        .await
        .map_err(|e| ArchiveError::Internal(format!("stream reader: {e}")))?;
    if let (Some(mut c), Some(argv)) = (child, &opts.command) {
        let program =
            std::path::Path::new(argv.first().map_or("command".as_ref(), |p| p.as_os_str()));
        let status = c
            .wait()
            .await
            .map_err(|e| ArchiveError::io("waiting for command", program, e))?;
        if !status.success() {
            let command = argv
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            stored = Err(ArchiveError::CommandFailed {
                command,
                status: status.to_string(),
            });
        }
    }
    let (content, size) = match stored {
        Ok(v) => v,
        Err(e) => {
            // Flush what was written so the repository stays tidy; no snapshot refers to it.
            let _ = saver.finish().await;
            return Err(e);
        }
    };
    let now = Timestamp::now();
    let mut node = Node::new(name.clone(), NodeKind::File);
    node.mode = 0o600;
    node.uid = rustix::process::getuid().as_raw();
    node.gid = rustix::process::getgid().as_raw();
    node.mtime = now;
    node.atime = now;
    node.ctime = now;
    node.links = 1;
    node.size = size;
    node.content = content;
    let tree = Tree { nodes: vec![node] };
    let s3 = saver.clone();
    let root = tokio::task::spawn_blocking(move || s3.save_tree(&tree))
        .await
        .map_err(|e| ArchiveError::Internal(e.to_string()))??;
    let stats = saver.finish().await?;
    let summary = zaibei_format::SnapshotSummary {
        start,
        end: Timestamp::now(),
        files_new: 1,
        total_files: 1,
        total_bytes: size,
        bytes_read: size,
        data_blobs_added: stats.data_blobs,
        tree_blobs_added: stats.tree_blobs,
        bytes_added_raw: stats.bytes_raw,
        bytes_added_stored: stats.bytes_stored,
        ..Default::default()
    };
    let mut path = b"/".to_vec();
    path.extend_from_slice(&name);
    let snapshot = new_snapshot(&opts.base, root, vec![path], None, summary);
    let snapshot_id = repo.save_snapshot(&snapshot).await?;
    Ok(BackupOutcome {
        snapshot_id,
        snapshot,
        parent: None,
    })
}

fn store_stream(
    chunker: &Chunker,
    saver: &BlobSaver,
    counters: &Counters,
    reader: impl Read,
) -> Result<(Vec<zaibei_format::Id>, u64), ArchiveError> {
    let mut buf = Vec::new();
    // The stream is the only reader: its window may take the whole budget. Both are made
    // before the stream, so that its buffer shrinks before the budget goes back.
    let budget = WindowBudget::new(READ_WINDOW_EXTRA_BYTES as u64);
    let mut window = Window::new(&budget);
    let mut stream = chunker.stream(reader, &mut buf);
    let mut content = Vec::new();
    let mut size = 0u64;
    // The chunks are hashed together where they lie in the read buffer, each time before it
    // moves, and compressed and encrypted on the saver's sealer threads meanwhile.
    let mut kept = InPlace::default();
    loop {
        if stream.will_refill() {
            window.plan(&kept, &mut stream, None);
            kept.save(saver, counters, stream.buffer(), &mut content)?;
        }
        let Some(range) = stream
            .next_range()
            .map_err(|e| ArchiveError::io("reading", "<stream>".as_ref(), e))?
        else {
            break;
        };
        window.refilled();
        size += range.len() as u64;
        kept.push(range);
    }
    kept.save(saver, counters, stream.buffer(), &mut content)?;
    Ok((content, size))
}
