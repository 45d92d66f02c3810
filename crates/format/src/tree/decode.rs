//! Decoding a tree body in one pass over its bytes, without building CBOR values first.
//!
//! A backup compares every directory with its tree in the parent snapshot, so trees are decoded
//! far more often than any other object. This decoder accepts exactly the bodies that the
//! generic path (`cbor::decode`, then the fields one by one) accepts, and decodes them to the
//! same tree (see [`crate::reader`]). Only the error reported first may differ when a body
//! breaks several rules. The format's property tests compare both paths on edited, broken and
//! arbitrary bodies.

use crate::cbor::Head;
use crate::magic::TREE_VERSION;
use crate::reader::FieldReader;
use crate::{FormatError, Id, Timestamp};

use super::{Node, NodeKind, WHAT, check_name};

/// Nesting of a node's map inside the body: body map, `nodes` array, node map.
const NODE_DEPTH: usize = 2;

/// Decodes and validates a tree body into its nodes.
pub(super) fn decode(body: &[u8]) -> Result<Vec<Node>, FormatError> {
    let mut r = FieldReader::new(WHAT, body);
    let entries = r.map()?;
    let mut version = None;
    let mut nodes = None;
    let mut prev_key = None;
    for _ in 0..entries {
        match r.key(1, &mut prev_key)? {
            Some("v") => version = Some(r.uint("v")?),
            Some("nodes") => {
                // "v" sorts before "nodes", so the version is known here.
                r.version(version, TREE_VERSION)?;
                nodes = Some(node_list(&mut r)?);
            }
            _ => r.skip(1)?,
        }
    }
    r.finish()?;
    r.version(version, TREE_VERSION)?;
    nodes.ok_or_else(|| r.missing("nodes"))
}

fn node_list(r: &mut FieldReader<'_>) -> Result<Vec<Node>, FormatError> {
    let count = r.array("nodes")?;
    // A node holds at least twelve keyed fields: more than 48 bytes.
    let mut nodes: Vec<Node> = r.vec_for(count, 48);
    for _ in 0..count {
        let node = node(r)?;
        if let Some(prev) = nodes.last()
            && prev.name >= node.name
        {
            return Err(FormatError::invalid(
                WHAT,
                format!(
                    "entry {:?} is duplicated or out of order",
                    String::from_utf8_lossy(&node.name)
                ),
            ));
        }
        nodes.push(node);
    }
    Ok(nodes)
}

/// A key of at most seven bytes as one integer (its length in the top byte), so that a node's
/// keys are told apart by one integer comparison each rather than a string comparison per
/// field; longer keys (none of a node's) give 0.
const fn key_word(key: &str) -> u64 {
    let b = key.as_bytes();
    if b.len() > 7 {
        return 0;
    }
    let mut word = (b.len() as u64) << 56;
    let mut i = 0;
    while i < b.len() {
        word |= (b[i] as u64) << (8 * i);
        i += 1;
    }
    word
}

const NAME: u64 = key_word("name");
const TYPE: u64 = key_word("type");
const MODE: u64 = key_word("mode");
const UID: u64 = key_word("uid");
const GID: u64 = key_word("gid");
const USER: u64 = key_word("user");
const GROUP: u64 = key_word("group");
const MTIME: u64 = key_word("mtime");
const ATIME: u64 = key_word("atime");
const CTIME: u64 = key_word("ctime");
const INO: u64 = key_word("ino");
const DEV: u64 = key_word("dev");
const NLINK: u64 = key_word("nlink");
const SIZE: u64 = key_word("size");
const RDEV: u64 = key_word("rdev");
const CONTENT: u64 = key_word("content");
const EXTENTS: u64 = key_word("extents");
const SUBTREE: u64 = key_word("subtree");
const TARGET: u64 = key_word("target");
const XATTRS: u64 = key_word("xattrs");

/// The fields of one node as they are read; checked for presence once the map is read.
#[derive(Default)]
struct Fields<'a> {
    name: Option<&'a [u8]>,
    kind: Option<NodeKind>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    user: Option<String>,
    group: Option<String>,
    mtime: Option<Timestamp>,
    atime: Option<Timestamp>,
    ctime: Option<Timestamp>,
    inode: Option<u64>,
    device: Option<u64>,
    links: Option<u64>,
    size: Option<u64>,
    content: Option<Vec<Id>>,
    extents: Option<Vec<(u64, u64)>>,
    subtree: Option<Id>,
    target: Option<&'a [u8]>,
    /// `rdev` sorts before `type`: an unsigned integer, or the kind of item found instead,
    /// which is an error only for devices.
    rdev: Option<Result<u64, &'static str>>,
    xattrs: Xattrs,
}

fn node(r: &mut FieldReader<'_>) -> Result<Node, FormatError> {
    let entries = r.map()?;
    let depth = NODE_DEPTH + 1;
    let mut f = Fields::default();
    let mut prev_key = None;
    for _ in 0..entries {
        let Some(key) = r.key(depth, &mut prev_key)? else {
            r.skip(depth)?;
            continue;
        };
        // Keys sort by length first: "type" comes after the three-letter keys, "mode", "name"
        // and "rdev", and before every field whose meaning depends on the kind.
        let file = f.kind == Some(NodeKind::File);
        match key_word(key) {
            NAME => f.name = Some(r.bytes("name")?),
            TYPE => f.kind = Some(kind(r)?),
            MODE => f.mode = Some(mode(r)?),
            UID => f.uid = Some(r.u32("uid")?),
            GID => f.gid = Some(r.u32("gid")?),
            USER => f.user = Some(r.text("user")?.to_owned()),
            GROUP => f.group = Some(r.text("group")?.to_owned()),
            MTIME => f.mtime = Some(time(r, "mtime")?),
            ATIME => f.atime = Some(time(r, "atime")?),
            CTIME => f.ctime = Some(time(r, "ctime")?),
            INO => f.inode = Some(r.uint("ino")?),
            DEV => f.device = Some(r.uint("dev")?),
            NLINK => f.links = Some(r.uint("nlink")?),
            SIZE => f.size = Some(r.uint("size")?),
            RDEV => f.rdev = Some(rdev(r, depth)?),
            CONTENT if file => f.content = Some(r.ids("content")?),
            // Extents are checked against "size", which sorts before them; without it the
            // node is refused below.
            EXTENTS if file => match f.size {
                Some(size) => f.extents = Some(extents(r, size)?),
                None => r.skip(depth)?,
            },
            SUBTREE if f.kind == Some(NodeKind::Dir) => f.subtree = Some(r.id("subtree")?),
            TARGET if f.kind == Some(NodeKind::Symlink) => f.target = Some(r.bytes("target")?),
            XATTRS => f.xattrs = xattrs(r)?,
            _ => r.skip(depth)?,
        }
    }
    f.finish(r)
}

impl Fields<'_> {
    /// The node, once every required field is known to be present (checked in the order the
    /// format lists them).
    fn finish(self, r: &FieldReader<'_>) -> Result<Node, FormatError> {
        let need = |field| r.missing(field);
        let name = self.name.ok_or_else(|| need("name"))?;
        check_name(name)?;
        let kind = self.kind.ok_or_else(|| need("type"))?;
        let mut node = Node {
            mode: self.mode.ok_or_else(|| need("mode"))?,
            uid: self.uid.ok_or_else(|| need("uid"))?,
            gid: self.gid.ok_or_else(|| need("gid"))?,
            user: self.user,
            group: self.group,
            mtime: self.mtime.ok_or_else(|| need("mtime"))?,
            atime: self.atime.ok_or_else(|| need("atime"))?,
            ctime: self.ctime.ok_or_else(|| need("ctime"))?,
            inode: self.inode.ok_or_else(|| need("ino"))?,
            device: self.device.ok_or_else(|| need("dev"))?,
            links: self.links.ok_or_else(|| need("nlink"))?,
            size: self.size.ok_or_else(|| need("size"))?,
            xattrs: self.xattrs,
            ..Node::new(name.to_vec(), kind)
        };
        match kind {
            NodeKind::File => {
                node.content = self.content.ok_or_else(|| need("content"))?;
                node.extents = self.extents;
            }
            NodeKind::Dir => node.subtree = Some(self.subtree.ok_or_else(|| need("subtree"))?),
            NodeKind::Symlink => {
                node.target = Some(self.target.ok_or_else(|| need("target"))?.to_vec());
            }
            NodeKind::CharDevice | NodeKind::BlockDevice => {
                node.rdev = match self.rdev {
                    None => return Err(need("rdev")),
                    Some(Ok(rdev)) => rdev,
                    Some(Err(found)) => {
                        return Err(FormatError::field(
                            WHAT,
                            "rdev",
                            format!("expected unsigned integer, found {found}"),
                        ));
                    }
                };
            }
            NodeKind::Fifo | NodeKind::Socket => {}
        }
        Ok(node)
    }
}

fn mode(r: &mut FieldReader<'_>) -> Result<u32, FormatError> {
    let mode = r.u32("mode")?;
    if mode & !0o7777 != 0 {
        return Err(FormatError::field(
            WHAT,
            "mode",
            format!("{mode:o} has bits outside 0o7777"),
        ));
    }
    Ok(mode)
}

fn kind(r: &mut FieldReader<'_>) -> Result<NodeKind, FormatError> {
    let name = r.text("type")?;
    NodeKind::from_name(name)
        .ok_or_else(|| FormatError::field(WHAT, "type", format!("unknown entry type {name:?}")))
}

fn time(r: &mut FieldReader<'_>, field: &'static str) -> Result<Timestamp, FormatError> {
    let bad = || FormatError::field(WHAT, field, "expected [seconds, nanoseconds below 1e9]");
    if !matches!(r.head()?, Head::Array(2)) {
        return Err(bad());
    }
    let secs = match r.head()? {
        Head::Uint(n) => i64::try_from(n).ok(),
        Head::Nint(n) => i64::try_from(n).ok().map(|n| -1 - n),
        _ => None,
    };
    let nanos = match r.head()? {
        Head::Uint(n) => u32::try_from(n).ok(),
        _ => None,
    };
    secs.zip(nanos)
        .and_then(|(s, n)| Timestamp::new(s, n))
        .ok_or_else(bad)
}

/// `rdev` before the kind is known: a wrong item is remembered, not yet an error.
fn rdev(r: &mut FieldReader<'_>, depth: usize) -> Result<Result<u64, &'static str>, FormatError> {
    let mut ahead = r.ahead();
    if let Ok(Head::Uint(n)) = ahead.read_head() {
        r.advance_to(ahead);
        return Ok(Ok(n));
    }
    let found = r.ahead().read_head().map(|h| h.kind()).unwrap_or("item");
    r.skip(depth)?;
    Ok(Err(found))
}

fn extents(r: &mut FieldReader<'_>, size: u64) -> Result<Vec<(u64, u64)>, FormatError> {
    let problem = |p: &str| FormatError::field(WHAT, "extents", p);
    let count = match r.head()? {
        Head::Array(n) => n,
        _ => return Err(problem("not an array")),
    };
    let mut out = r.vec_for(count, 3);
    let mut end_prev = 0u64;
    for _ in 0..count {
        match r.head()? {
            Head::Array(2) => {}
            Head::Array(_) => return Err(problem("entry is not [offset, length]")),
            _ => return Err(problem("entry is not an array")),
        }
        let (o, l) = (r.uint("extents")?, r.uint("extents")?);
        let end = o
            .checked_add(l)
            .filter(|&e| e <= size && l > 0 && o >= end_prev)
            .ok_or_else(|| {
                problem("extents must be non-empty, ascending, disjoint and inside the file")
            })?;
        end_prev = end;
        out.push((o, l));
    }
    Ok(out)
}

/// Extended attributes: (name, value) pairs.
type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

fn xattrs(r: &mut FieldReader<'_>) -> Result<Xattrs, FormatError> {
    let problem = |p: &str| FormatError::field(WHAT, "xattrs", p);
    let count = r.array("xattrs")?;
    let mut out: Xattrs = r.vec_for(count, 3);
    for _ in 0..count {
        match r.head()? {
            Head::Array(2) => {}
            Head::Array(_) => return Err(problem("entry is not a pair")),
            _ => return Err(problem("entry is not an array")),
        }
        let (Head::Bytes(k), Head::Bytes(v)) = (r.head()?, r.head()?) else {
            return Err(problem("entry is not a pair of byte strings"));
        };
        if k.is_empty() || k.contains(&0) || out.last().is_some_and(|(p, _)| p.as_slice() >= k) {
            return Err(problem(
                "names must be non-empty, without NUL, sorted and unique",
            ));
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}
