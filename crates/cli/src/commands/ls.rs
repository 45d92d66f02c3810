//! `zaibei ls`, and the helpers the other reading commands share: safe time formatting,
//! `ls -l` style modes, nodes as JSON, and a standard output that never panics.

use std::ffi::{OsStr, OsString};
use std::io::{BufWriter, StdoutLock, Write};
use std::os::unix::ffi::OsStrExt;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_archive::snapshot_path::{Located, locate};
use zaibei_archive::tree_walk::{TreeWalker, normalize};
use zaibei_format::{Node, NodeKind, Timestamp};

use crate::{Cli, exit};

/// List the entries of a snapshot.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// Snapshot id (or unique prefix, or `latest`), optionally with a path: `ID:/home/a`.
    /// Every entry below the path is listed, recursively.
    pub snapshot: OsString,
    /// Long listing: type and permissions, owner, group, size, modification time.
    #[arg(short, long)]
    pub long: bool,
}

/// Splits `SNAPSHOT[:PATH]` (the path may be any bytes): the snapshot and the path in the form
/// [`normalize`] gives (empty for the root).
pub fn split_spec_os(spec: &OsStr) -> Result<(String, Vec<u8>)> {
    let b = spec.as_bytes();
    let (snap, path) = match b.iter().position(|&c| c == b':') {
        Some(i) => (&b[..i], &b[i + 1..]),
        None => (b, &b""[..]),
    };
    let Ok(snap) = std::str::from_utf8(snap) else {
        bail!(exit::WithCode(
            exit::USAGE,
            format!("{:?} is not a snapshot id", String::from_utf8_lossy(snap))
        ));
    };
    Ok((snap.to_owned(), normalize(path)))
}

/// Fails with a clear message when the repository was opened with a maintenance-only key,
/// which cannot read trees or file data.
pub fn require_content(repo: &zaibei_repo::Repository, command: &str) -> Result<()> {
    if !repo.keys().has_content() {
        bail!(exit::WithCode(
            exit::ERROR,
            format!(
                "{command} reads trees and file data, which needs a full key; the repository was opened with a maintenance-only key"
            )
        ));
    }
    Ok(())
}

/// Standard output, buffered; write errors (a closed pipe) are errors, never panics.
pub struct Out(BufWriter<StdoutLock<'static>>);

impl Out {
    /// Locks standard output.
    pub fn new() -> Self {
        Out(BufWriter::with_capacity(
            64 * 1024,
            std::io::stdout().lock(),
        ))
    }

    /// Writes one line.
    pub fn line(&mut self, s: &str) -> Result<()> {
        writeln!(self.0, "{s}").context("writing to standard output")
    }

    /// Writes one JSON object on one line.
    pub fn json<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer(&mut self.0, value).context("writing JSON output")?;
        self.line("")
    }

    /// Writes pretty JSON.
    pub fn json_pretty<T: Serialize>(&mut self, value: &T) -> Result<()> {
        serde_json::to_writer_pretty(&mut self.0, value).context("writing JSON output")?;
        self.line("")
    }

    /// Writes raw bytes.
    pub fn bytes(&mut self, b: &[u8]) -> Result<()> {
        self.0.write_all(b).context("writing to standard output")
    }

    /// Flushes.
    pub fn flush(&mut self) -> Result<()> {
        self.0.flush().context("writing to standard output")
    }
}

/// A timestamp as RFC 3339 in UTC with nanoseconds, for any value (years before 1970 or after
/// 9999 included).
pub fn time(t: Timestamp) -> String {
    let (date, clock) = civil(t.secs);
    format!("{date}T{clock}.{:09}Z", t.nanos.min(999_999_999))
}

/// A timestamp as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn time_short(t: Timestamp) -> String {
    let (date, clock) = civil(t.secs);
    format!("{date} {clock}")
}

/// Date and time of day of a count of seconds since 1970 (days-from-civil, inverted).
fn civil(secs: i64) -> (String, String) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = if (0..=9999).contains(&year) {
        format!("{year:04}")
    } else {
        format!("{year:+}")
    };
    (
        format!("{year}-{month:02}-{day:02}"),
        format!("{:02}:{:02}:{:02}", sod / 3600, sod / 60 % 60, sod % 60),
    )
}

/// `drwxr-xr-x`: the type letter and permissions, setuid, setgid and sticky bits included.
pub fn mode_string(kind: NodeKind, mode: u32) -> String {
    let t = match kind {
        NodeKind::File => '-',
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
    };
    let mut s = String::with_capacity(10);
    s.push(t);
    for (shift, special, set, unset) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S')]
        .into_iter()
        .chain([(0, 0o1000, 't', 'T')])
    {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, bits & 1 != 0) {
            (true, true) => set,
            (true, false) => unset,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// The hex form of bytes that are not valid UTF-8 (`None` when they are).
pub fn hex_if_not_utf8(b: &[u8]) -> Option<String> {
    std::str::from_utf8(b).is_err().then(|| hex::encode(b))
}

/// A node as scripts see it (`ls --json`, `find --json`).
#[derive(Serialize)]
pub struct NodeJson {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_hex: Option<String>,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: u32,
    permissions: String,
    uid: u32,
    gid: u32,
    user: Option<String>,
    group: Option<String>,
    size: u64,
    mtime: String,
    atime: String,
    ctime: String,
    inode: u64,
    links: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target_hex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subtree: Option<String>,
    xattrs: Vec<String>,
    content_blobs: usize,
    sparse: bool,
}

impl NodeJson {
    /// The node at `path`.
    pub fn new(path: &[u8], n: &Node) -> Self {
        let device = matches!(n.kind, NodeKind::CharDevice | NodeKind::BlockDevice);
        NodeJson {
            path: crate::output::path(path),
            path_hex: hex_if_not_utf8(path),
            kind: n.kind.name(),
            mode: n.mode,
            permissions: mode_string(n.kind, n.mode),
            uid: n.uid,
            gid: n.gid,
            user: n.user.clone(),
            group: n.group.clone(),
            size: n.size,
            mtime: time(n.mtime),
            atime: time(n.atime),
            ctime: time(n.ctime),
            inode: n.inode,
            links: n.links,
            target: n.target.as_deref().map(crate::output::path),
            target_hex: n.target.as_deref().and_then(hex_if_not_utf8),
            rdev: device.then_some(n.rdev),
            subtree: n.subtree.map(|s| s.to_hex()),
            xattrs: n
                .xattrs
                .iter()
                .map(|(k, _)| crate::output::path(k))
                .collect(),
            content_blobs: n.content.len(),
            sparse: n.extents.is_some(),
        }
    }
}

/// One `ls -l` line.
pub fn long_line(path: &[u8], n: &Node) -> String {
    let owner = n.user.clone().unwrap_or_else(|| n.uid.to_string());
    let group = n.group.clone().unwrap_or_else(|| n.gid.to_string());
    let size = match n.kind {
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            format!(
                "{},{}",
                rustix::fs::major(n.rdev),
                rustix::fs::minor(n.rdev)
            )
        }
        _ => n.size.to_string(),
    };
    let mut line = format!(
        "{} {owner:<8} {group:<8} {size:>10} {} {}",
        mode_string(n.kind, n.mode),
        time_short(n.mtime),
        crate::output::path(path)
    );
    if let Some(t) = &n.target {
        line.push_str(" -> ");
        line.push_str(&crate::output::path(t));
    }
    line
}

fn print(out: &mut Out, json: bool, long: bool, path: &[u8], n: &Node) -> Result<()> {
    if json {
        out.json(&NodeJson::new(path, n))
    } else if long {
        out.line(&long_line(path, n))
    } else {
        out.line(&crate::output::path(path))
    }
}

pub async fn run(cli: &Cli, a: &LsArgs) -> Result<u8> {
    let (spec, prefix) = split_spec_os(&a.snapshot)?;
    let repo = crate::repo::open_indexed(cli).await?;
    require_content(&repo, "ls")?;
    let (_, snapshot) = repo.find_snapshot(&spec).await?;
    let mut out = Out::new();
    let tree = match locate(&repo, &snapshot.tree, &prefix).await? {
        Located::Entry(node) => {
            print(&mut out, cli.json, a.long, &prefix, &node)?;
            out.flush()?;
            return Ok(exit::OK);
        }
        Located::Dir(_, tree) => tree,
    };
    let mut walk = TreeWalker::new(&repo, tree, prefix);
    let mut damaged = 0usize;
    loop {
        match walk.next().await {
            Ok(Some(e)) => print(&mut out, cli.json, a.long, &e.path, e.node())?,
            Ok(None) => break,
            Err(e) => {
                out.flush()?;
                eprintln!("error: {e}");
                damaged += 1;
            }
        }
    }
    out.flush()?;
    if damaged > 0 {
        eprintln!("zaibei: {damaged} directories could not be read");
        return Ok(exit::DAMAGED);
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_1970_and_after_9999_do_not_panic() {
        let t = |secs, nanos| time(Timestamp { secs, nanos });
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(t(-1, 5), "1969-12-31T23:59:59.000000005Z");
        assert_eq!(t(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
        assert_eq!(t(253_402_300_800, 0), "+10000-01-01T00:00:00.000000000Z");
        let _ = t(i64::MIN, 0);
        let _ = t(i64::MAX, 999_999_999);
    }

    #[test]
    fn mode_strings() {
        assert_eq!(mode_string(NodeKind::Dir, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(NodeKind::File, 0o2644), "-rw-r-Sr--");
        assert_eq!(mode_string(NodeKind::Dir, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(NodeKind::Dir, 0o1776), "drwxrwxrwT");
        assert_eq!(mode_string(NodeKind::Symlink, 0o777), "lrwxrwxrwx");
    }
}
