//! `zaibei cat`: repository objects, decoded, as JSON (a data blob: its raw bytes).

use std::ffi::OsString;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use serde_json::{Value, json};
use zaibei_archive::snapshot_path::{Located, locate};
use zaibei_crypto::PasswordKdf;
use zaibei_format::pack::{
    PACK_PREFIX_LEN, PACK_TRAILER_LEN, decode_pack_header, decode_pack_prefix, decode_pack_trailer,
};
use zaibei_format::{Id, IndexFile, KeyFile, Node, PackKind, Snapshot, Tree};
use zaibei_repo::{IndexedRepository, RepoError, Repository, names};

use crate::output::{Out, hex_if_not_utf8, time};
use crate::repo::split_spec_os;
use crate::{Cli, exit};

/// Print a repository object, decoded, as JSON (a data blob: its raw bytes).
#[derive(Debug, Args)]
pub struct CatArgs {
    /// What to print.
    #[arg(value_enum)]
    pub kind: Kind,
    /// The object's id or a unique prefix of it. `snapshot` also takes `latest`; `tree` also
    /// takes `SNAPSHOT:PATH` (the tree of that directory); `key` defaults to the key in use.
    pub id: Option<OsString>,
}

/// Kinds of objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// The repository config (the sealed chunker seed shown by its length only).
    Config,
    /// A key object (its KDF and metadata, never the wrapped secret).
    Key,
    /// A snapshot.
    Snapshot,
    /// An index object.
    Index,
    /// A pack's header: the blobs it holds.
    Pack,
    /// A data blob's contents, raw, to standard output.
    Blob,
    /// A tree (directory listing) with every field of every node.
    Tree,
    /// The reference blob of a tree (readable with a maintenance-only key).
    Refs,
}

fn usage(msg: String) -> anyhow::Error {
    anyhow::Error::new(exit::WithCode(exit::USAGE, msg))
}

/// The single id among `candidates` that starts with `spec`.
fn unique(spec: &str, what: &str, candidates: impl Iterator<Item = Id>) -> Result<Id> {
    let spec = spec.to_ascii_lowercase();
    if spec.is_empty() || !spec.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(usage(format!("{spec:?} is not a {what} id (hex digits)")));
    }
    if let Ok(id) = spec.parse::<Id>() {
        return Ok(id);
    }
    let mut found = candidates.filter(|id| id.to_hex().starts_with(&spec));
    match (found.next(), found.next()) {
        (Some(id), None) => Ok(id),
        (None, _) => bail!("no {what} matches {spec:?}"),
        (Some(_), Some(_)) => Err(usage(format!(
            "{what} id prefix {spec:?} is ambiguous; give more digits"
        ))),
    }
}

/// The id of an object in `dir`, from an id or a unique prefix (listing the directory).
async fn resolve_listed(repo: &Repository, dir: &str, spec: &str, what: &str) -> Result<Id> {
    let listed = repo.store().list(dir).await?;
    let id = unique(
        spec,
        what,
        listed.iter().filter_map(|o| names::id_of(&o.name)),
    )?;
    if !listed.iter().any(|o| names::id_of(&o.name) == Some(id)) {
        bail!("no {what} {id} in the repository");
    }
    Ok(id)
}

/// An object's bytes, checked against the id in its name.
async fn get_verified(repo: &Repository, name: &str, id: &Id) -> Result<Vec<u8>> {
    let bytes = repo.store().get(name).await.map_err(RepoError::from)?;
    let actual = Id(repo.suite().hash(&bytes));
    if actual != *id {
        bail!(exit::WithCode(
            exit::DAMAGED,
            format!("{name} is damaged: its content hashes to {actual}, not to its name")
        ));
    }
    Ok(bytes.to_vec())
}

/// The id of an indexed blob of `kind`, from an id or a unique prefix.
fn resolve_blob(repo: &IndexedRepository, kind: PackKind, spec: &str) -> Result<Id> {
    let what = format!("{} blob", kind.name());
    let index = repo.index();
    let id = unique(spec, &what, index.blobs(kind).map(|(id, _)| *id))?;
    if !index.contains(kind, &id) {
        let hint = PackKind::ALL
            .into_iter()
            .find(|k| index.contains(*k, &id))
            .map(|k| format!(" (it is a {} blob: use `cat {}`)", k.name(), k.name()))
            .unwrap_or_default();
        bail!("no {what} {id} in the index{hint}");
    }
    Ok(id)
}

fn kdf_json(kdf: &PasswordKdf) -> Value {
    match *kdf {
        PasswordKdf::Pbkdf2HmacSm3 { iterations } => {
            json!({"alg": kdf.name(), "iterations": iterations})
        }
        PasswordKdf::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => json!({"alg": kdf.name(), "memory_kib": memory_kib, "iterations": iterations,
                    "parallelism": parallelism}),
    }
}

fn bytes_json(b: &[u8]) -> Value {
    match hex_if_not_utf8(b) {
        None => json!(crate::output::path(b)),
        Some(hex) => json!({"lossy": crate::output::path(b), "hex": hex}),
    }
}

fn snapshot_json(id: &Id, s: &Snapshot) -> Value {
    let m = &s.summary;
    json!({
        "id": id.to_hex(), "time": time(s.time), "tree": s.tree.to_hex(),
        "paths": s.paths.iter().map(|p| bytes_json(p)).collect::<Vec<_>>(),
        "hostname": s.hostname, "username": s.username, "uid": s.uid, "gid": s.gid,
        "tags": s.tags, "parent": s.parent.map(|p| p.to_hex()),
        "original": s.original.map(|p| p.to_hex()), "program": s.program,
        "excludes": s.excludes,
        "summary": {
            "start": time(m.start), "end": time(m.end), "files_new": m.files_new,
            "files_changed": m.files_changed, "files_unmodified": m.files_unmodified,
            "dirs": m.dirs, "others": m.others, "data_blobs_added": m.data_blobs_added,
            "tree_blobs_added": m.tree_blobs_added, "bytes_added_raw": m.bytes_added_raw,
            "bytes_added_stored": m.bytes_added_stored, "bytes_read": m.bytes_read,
            "total_files": m.total_files, "total_bytes": m.total_bytes,
            "skipped_count": m.skipped_count,
            "skipped": m.skipped.iter().map(|(p, e)| json!({"path": bytes_json(p), "reason": e}))
                .collect::<Vec<_>>(),
        },
    })
}

/// A node with every field (`cat tree`); fields that do not apply to its type are left out.
fn node_full(n: &Node) -> Value {
    let mut v = json!({
        "name": crate::output::path(&n.name), "name_hex": hex_if_not_utf8(&n.name),
        "type": n.kind.name(), "mode": n.mode, "uid": n.uid, "gid": n.gid, "user": n.user,
        "group": n.group, "mtime": time(n.mtime), "atime": time(n.atime),
        "ctime": time(n.ctime), "inode": n.inode, "device": n.device, "links": n.links,
        "size": n.size, "content": n.content.iter().map(Id::to_hex).collect::<Vec<_>>(),
        "extents": n.extents, "subtree": n.subtree.map(|s| s.to_hex()),
        "target": n.target.as_deref().map(bytes_json), "rdev": n.rdev,
        "xattrs": n.xattrs.iter()
            .map(|(k, v)| json!({"name": bytes_json(k), "value_hex": hex::encode(v)}))
            .collect::<Vec<_>>(),
    });
    if let Value::Object(m) = &mut v {
        for key in ["name_hex", "extents", "subtree", "target"] {
            if m.get(key).is_some_and(Value::is_null) {
                m.remove(key);
            }
        }
        if n.kind != zaibei_format::NodeKind::File {
            m.remove("content");
        }
    }
    v
}

/// The tree id named by `SNAPSHOT:PATH`, or by an id (prefix) of a tree blob.
async fn tree_id(repo: &IndexedRepository, spec: &OsString) -> Result<Id> {
    let text = spec.to_string_lossy();
    if !text.contains(':') {
        return resolve_blob(repo, PackKind::Tree, &text);
    }
    let (snap, path) = split_spec_os(spec)?;
    let (_, snapshot) = repo.find_snapshot(&snap).await?;
    match locate(repo, &snapshot.tree, &path).await? {
        Located::Dir(None, _) => Ok(snapshot.tree),
        Located::Dir(Some(node), _) => node.subtree.context("directory without subtree"),
        Located::Entry(_) => Err(usage(format!(
            "{} is not a directory",
            crate::output::path(&path)
        ))),
    }
}

async fn pack_json(repo: &IndexedRepository, id: &Id) -> Result<Value> {
    let name = names::pack(id);
    let store = repo.store();
    let size = match store.stat(&name).await {
        Ok(info) => info.size,
        Err(e) if e.is_not_found() => bail!("no pack {id} in the repository"),
        Err(e) => return Err(RepoError::from(e).into()),
    };
    let fmt = |e| RepoError::format(name.clone(), e);
    let min = (PACK_PREFIX_LEN + PACK_TRAILER_LEN) as u64;
    if size < min {
        bail!(exit::WithCode(
            exit::DAMAGED,
            format!("{name} is damaged: {size} bytes, shorter than an empty pack")
        ));
    }
    let prefix = store
        .get_range(&name, 0..PACK_PREFIX_LEN as u64)
        .await
        .map_err(RepoError::from)?;
    let (kind, salt) = decode_pack_prefix(&prefix).map_err(fmt)?;
    let trailer = store
        .get_range(&name, size - PACK_TRAILER_LEN as u64..size)
        .await
        .map_err(RepoError::from)?;
    let range = decode_pack_trailer(&trailer, size).map_err(fmt)?;
    let sealed = store
        .get_range(&name, range.clone())
        .await
        .map_err(RepoError::from)?;
    let blobs =
        decode_pack_header(repo.keys().maintenance(), &prefix, &sealed, size).map_err(fmt)?;
    Ok(json!({
        "id": id.to_hex(), "kind": kind.name(), "salt": hex::encode(salt), "size": size,
        "header_offset": range.start, "header_length": range.end - range.start,
        "indexed": repo.index().pack(id).is_some(),
        "blobs": blobs.iter().map(|b| json!({"id": b.id.to_hex(), "offset": b.offset,
            "length": b.length, "raw_length": b.raw_length})).collect::<Vec<_>>(),
    }))
}

pub async fn run(cli: &Cli, a: &CatArgs) -> Result<u8> {
    let spec = a.id.as_ref().map(|s| s.to_string_lossy().into_owned());
    let need = || {
        spec.clone().ok_or_else(|| {
            usage(format!(
                "cat {} needs an id",
                format!("{:?}", a.kind).to_lowercase()
            ))
        })
    };
    let mut out = Out::new();
    let value = match a.kind {
        Kind::Config | Kind::Key | Kind::Snapshot | Kind::Index => {
            let repo = crate::repo::open(cli).await?;
            match a.kind {
                Kind::Config => {
                    let c = repo.config();
                    json!({
                        "version": c.version, "id": c.id.to_hex(), "suite": c.suite.name(),
                        "created": time(c.created),
                        "chunker": {"min": c.chunker.min, "avg": c.chunker.avg, "max": c.chunker.max},
                        "zstd_level": c.zstd_level, "pack_size": c.pack_size,
                        "sealed_seed_length": c.sealed_seed.len(), "mac": c.mac.to_hex(),
                    })
                }
                Kind::Key => {
                    let id = match &spec {
                        Some(s) => resolve_listed(&repo, names::KEYS, s, "key").await?,
                        None => repo.key_id(),
                    };
                    let name = names::key(&id);
                    let bytes = get_verified(&repo, &name, &id).await?;
                    let k = KeyFile::decode(&bytes).map_err(|e| RepoError::format(name, e))?;
                    json!({
                        "id": id.to_hex(), "repo": k.repo.to_hex(), "suite": k.suite.name(),
                        "scope": k.scope.name(), "kdf": kdf_json(&k.kdf),
                        "salt": hex::encode(k.salt), "created": time(k.created), "host": k.host,
                        "user": k.user, "wrapped_length": k.wrapped.len(),
                        "current": id == repo.key_id(),
                    })
                }
                Kind::Snapshot => {
                    let (id, s) = repo.find_snapshot(&need()?).await?;
                    snapshot_json(&id, &s)
                }
                _ => {
                    let id = resolve_listed(&repo, names::INDEX, &need()?, "index").await?;
                    let name = names::index(&id);
                    let bytes = get_verified(&repo, &name, &id).await?;
                    let f = IndexFile::open(repo.keys().maintenance(), &bytes)
                        .map_err(|e| RepoError::format(name, e))?;
                    json!({
                        "id": id.to_hex(),
                        "supersedes": f.supersedes.iter().map(Id::to_hex).collect::<Vec<_>>(),
                        "packs": f.packs.iter().map(|p| json!({
                            "id": p.id.to_hex(), "kind": p.kind.name(), "salt": hex::encode(p.salt),
                            "size": p.size,
                            "blobs": p.blobs.iter().map(|b| json!({"id": b.id.to_hex(),
                                "offset": b.offset, "length": b.length,
                                "raw_length": b.raw_length})).collect::<Vec<_>>(),
                        })).collect::<Vec<_>>(),
                    })
                }
            }
        }
        Kind::Pack | Kind::Blob | Kind::Tree | Kind::Refs => {
            let repo = crate::repo::open_indexed(cli).await?;
            match a.kind {
                Kind::Pack => {
                    let s = need()?;
                    let id = if s.len() == 64 {
                        unique(&s, "pack", std::iter::empty())?
                    } else {
                        let listed = repo.store().list(names::DATA).await?;
                        unique(
                            &s,
                            "pack",
                            listed.iter().filter_map(|o| names::id_of(&o.name)),
                        )?
                    };
                    pack_json(&repo, &id).await?
                }
                Kind::Blob => {
                    crate::repo::require_content(&repo, "cat blob")?;
                    let id = resolve_blob(&repo, PackKind::Data, &need()?)?;
                    out.bytes(&repo.read_blob(PackKind::Data, &id).await?)?;
                    out.flush()?;
                    return Ok(exit::OK);
                }
                Kind::Tree => {
                    crate::repo::require_content(&repo, "cat tree")?;
                    let Some(raw) = &a.id else {
                        return Err(usage("cat tree needs an id or SNAPSHOT:PATH".into()));
                    };
                    let id = tree_id(&repo, raw).await?;
                    let tree: std::sync::Arc<Tree> = repo.load_tree(&id).await?;
                    json!({"id": id.to_hex(),
                           "nodes": tree.nodes.iter().map(node_full).collect::<Vec<_>>()})
                }
                _ => {
                    let id = resolve_blob(&repo, PackKind::Refs, &need()?)?;
                    let r = repo.load_refs(&id).await?;
                    json!({"id": id.to_hex(),
                           "data": r.data.iter().map(Id::to_hex).collect::<Vec<_>>(),
                           "trees": r.trees.iter().map(Id::to_hex).collect::<Vec<_>>()})
                }
            }
        }
    };
    out.json_pretty(&value)?;
    out.flush()?;
    Ok(exit::OK)
}
