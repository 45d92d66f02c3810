//! `zaibei dump`: a file's contents, or a directory as a tar archive, on standard output.

use std::ffi::{OsStr, OsString};
use std::io::{BufWriter, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use tokio::runtime::Handle;
use zaibei_archive::snapshot_path::{Located, locate};
use zaibei_archive::tree_walk::{TreeWalker, normalize};
use zaibei_format::{Id, Node, NodeKind, PackKind, Tree};
use zaibei_repo::IndexedRepository;

use crate::{Cli, exit};

/// Write a file of a snapshot to standard output, or a directory as an archive.
#[derive(Debug, Args)]
pub struct DumpArgs {
    /// Snapshot id (or unique prefix, or `latest`).
    pub snapshot: String,
    /// Path inside the snapshot (`/home/a/notes.txt`, or a directory).
    pub path: OsString,
    /// Archive format for directories. Entries are named relative to the directory.
    #[arg(long = "archive", value_enum, default_value_t = Format::Tar)]
    pub format: Format,
}

/// Archive formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// POSIX tar with GNU extensions for long names.
    Tar,
}

pub async fn run(cli: &Cli, a: &DumpArgs) -> Result<u8> {
    let repo = crate::repo::open_indexed(cli).await?;
    crate::repo::require_content(&repo, "dump")?;
    let (_, snapshot) = repo.find_snapshot(&a.snapshot).await?;
    let path = normalize(a.path.as_bytes());
    let located = locate(&repo, &snapshot.tree, &path).await?;
    if matches!(located, Located::Dir(..)) && std::io::stdout().is_terminal() {
        bail!(exit::WithCode(
            exit::USAGE,
            "refusing to write a tar archive to a terminal; redirect standard output".into()
        ));
    }
    let rt = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
        let code = match located {
            Located::Entry(node) if node.kind == NodeKind::File => {
                let mut reader = FileReader::new(&repo, &rt, &node, &path);
                let copied = std::io::copy(&mut reader, &mut out);
                if let Some(e) = reader.failure.take() {
                    return Err(e);
                }
                copied.context("writing to standard output")?;
                exit::OK
            }
            Located::Entry(node) => bail!(exit::WithCode(
                exit::USAGE,
                format!(
                    "{} is a {}; dump writes files and directories",
                    crate::output::path(&path),
                    node.kind.name()
                )
            )),
            Located::Dir(_, tree) => write_tar(&repo, &rt, tree, path, &mut out)?,
        };
        out.flush().context("writing to standard output")?;
        Ok(code)
    })
    .await
    .context("the dump task failed")?
}

/// Writes the entries below a directory as a tar archive; returns the exit code.
fn write_tar(
    repo: &IndexedRepository,
    rt: &Handle,
    tree: std::sync::Arc<Tree>,
    prefix: Vec<u8>,
    out: &mut dyn Write,
) -> Result<u8> {
    let mut builder = tar::Builder::new(out);
    let mut walk = TreeWalker::new(repo, tree, prefix.clone());
    let mut code = exit::OK;
    loop {
        let entry = match rt.block_on(walk.next()) {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                eprintln!("error: {e}");
                code = exit::DAMAGED;
                continue;
            }
        };
        let rel = entry
            .path
            .get(prefix.len() + 1..)
            .context("walk produced a path outside the directory")?;
        let rel_path = Path::new(OsStr::from_bytes(rel));
        let node = entry.node();
        let mut h = header(node);
        let written = match node.kind {
            NodeKind::File => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(node.size);
                let mut reader = FileReader::new(repo, rt, node, &entry.path);
                let r = builder.append_data(&mut h, rel_path, &mut reader);
                if let Some(e) = reader.failure.take() {
                    return Err(e);
                }
                r
            }
            NodeKind::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                builder.append_data(&mut h, rel_path, std::io::empty())
            }
            NodeKind::Symlink => {
                h.set_entry_type(tar::EntryType::Symlink);
                let target = node.target.as_deref().unwrap_or_default();
                builder.append_link(&mut h, rel_path, Path::new(OsStr::from_bytes(target)))
            }
            NodeKind::Fifo => {
                h.set_entry_type(tar::EntryType::Fifo);
                builder.append_data(&mut h, rel_path, std::io::empty())
            }
            NodeKind::CharDevice | NodeKind::BlockDevice => {
                h.set_entry_type(if node.kind == NodeKind::CharDevice {
                    tar::EntryType::Char
                } else {
                    tar::EntryType::Block
                });
                h.set_device_major(rustix::fs::major(node.rdev))
                    .and_then(|()| h.set_device_minor(rustix::fs::minor(node.rdev)))
                    .and_then(|()| builder.append_data(&mut h, rel_path, std::io::empty()))
            }
            NodeKind::Socket => {
                eprintln!(
                    "skipped {}: tar cannot hold sockets",
                    crate::output::path(&entry.path)
                );
                code = code.max(exit::PARTIAL);
                continue;
            }
        };
        written.with_context(|| {
            format!(
                "writing {} to the archive",
                crate::output::path(&entry.path)
            )
        })?;
    }
    builder.finish().context("writing to standard output")?;
    Ok(code)
}

/// A tar header with a node's metadata (no type, size or path yet).
fn header(node: &Node) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(node.mode);
    h.set_uid(u64::from(node.uid));
    h.set_gid(u64::from(node.gid));
    h.set_mtime(u64::try_from(node.mtime.secs).unwrap_or(0));
    h.set_size(0);
    // Names too long for the header are left out; the numeric ids are there.
    if let Some(u) = &node.user {
        let _ = h.set_username(u);
    }
    if let Some(g) = &node.group {
        let _ = h.set_groupname(g);
    }
    h
}

/// The contents of a file, blob by blob, holes as zeros: exactly `node.size` bytes, or an error.
struct FileReader<'a> {
    repo: &'a IndexedRepository,
    rt: &'a Handle,
    node: &'a Node,
    path: &'a [u8],
    /// Data extents: `(offset, length)`; everything else is a hole.
    extents: Vec<(u64, u64)>,
    ext: usize,
    pos: u64,
    blobs: std::slice::Iter<'a, Id>,
    buf: Vec<u8>,
    buf_pos: usize,
    /// The error behind the last failed read (the `io::Error` only carries its text).
    failure: Option<anyhow::Error>,
}

impl<'a> FileReader<'a> {
    fn new(repo: &'a IndexedRepository, rt: &'a Handle, node: &'a Node, path: &'a [u8]) -> Self {
        let extents = match &node.extents {
            Some(e) => e.clone(),
            None if node.size > 0 => vec![(0, node.size)],
            None => Vec::new(),
        };
        FileReader {
            repo,
            rt,
            node,
            path,
            extents,
            ext: 0,
            pos: 0,
            blobs: node.content.iter(),
            buf: Vec::new(),
            buf_pos: 0,
            failure: None,
        }
    }

    fn damaged(&self, what: &str) -> anyhow::Error {
        anyhow::Error::new(exit::WithCode(
            exit::DAMAGED,
            format!(
                "{} in the snapshot is damaged: {what}",
                crate::output::path(self.path)
            ),
        ))
    }

    /// Makes sure `buf` holds unread bytes.
    fn next_blob(&mut self) -> Result<()> {
        while self.buf_pos >= self.buf.len() {
            let Some(id) = self.blobs.next() else {
                return Err(self.damaged("its data blobs end before its data extents do"));
            };
            self.buf = self
                .rt
                .block_on(self.repo.read_blob(PackKind::Data, id))
                .with_context(|| format!("reading {}", crate::output::path(self.path)))?;
            self.buf_pos = 0;
        }
        Ok(())
    }

    fn fill(&mut self, out: &mut [u8]) -> Result<usize> {
        let size = self.node.size;
        if self.pos >= size || out.is_empty() {
            if self.pos >= size && (self.buf_pos < self.buf.len() || self.blobs.len() > 0) {
                return Err(self.damaged("its data blobs hold more bytes than its data extents"));
            }
            return Ok(0);
        }
        while self
            .extents
            .get(self.ext)
            .is_some_and(|&(o, l)| self.pos >= o.saturating_add(l))
        {
            self.ext += 1;
        }
        let want = (out.len() as u64).min(size - self.pos);
        let n = match self.extents.get(self.ext) {
            Some(&(off, len)) if self.pos >= off => {
                self.next_blob()?;
                let avail = (self.buf.len() - self.buf_pos) as u64;
                let n = want.min(off + len - self.pos).min(avail) as usize;
                out[..n].copy_from_slice(&self.buf[self.buf_pos..self.buf_pos + n]);
                self.buf_pos += n;
                n
            }
            Some(&(off, _)) => {
                let n = want.min(off - self.pos) as usize;
                out[..n].fill(0);
                n
            }
            None => {
                let n = want as usize;
                out[..n].fill(0);
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        self.fill(out).map_err(|e| {
            let err = std::io::Error::other(crate::exit::describe(&e));
            self.failure = Some(e);
            err
        })
    }
}
