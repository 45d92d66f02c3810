//! Property test: random trees → backup → restore → identical, metadata included. The restore
//! is compared with the generated specification, not with zaibei's own metadata reading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use proptest::prelude::*;
use zaibei_crypto::Suite;

#[derive(Debug, Clone)]
enum Kind {
    File(Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>),
    Dir(Vec<Entry>),
    Symlink(Vec<u8>),
    Fifo,
}

#[derive(Debug, Clone)]
struct Entry {
    name: Vec<u8>,
    mode: u32,
    mtime: (i64, u32),
    atime: (i64, u32),
    kind: Kind,
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        any::<u8>().prop_filter("component", |b| *b != b'/' && *b != 0),
        1..30,
    )
    .prop_filter("not . or ..", |n| n != b"." && n != b"..")
}

fn time() -> impl Strategy<Value = (i64, u32)> {
    (-2_000_000_000i64..4_000_000_000, 0u32..1_000_000_000)
}

fn xattrs() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::btree_map(
        "[a-z]{1,8}",
        proptest::collection::vec(any::<u8>(), 0..40),
        0..3,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (format!("user.{k}").into_bytes(), v))
            .collect()
    })
}

fn entry() -> impl Strategy<Value = Entry> {
    let leaf = prop_oneof![
        4 => (proptest::collection::vec(any::<u8>(), 0..3000), xattrs()).prop_map(|(d, x)| Kind::File(d, x)),
        1 => name().prop_map(Kind::Symlink),
        1 => Just(Kind::Fifo),
    ];
    let leaf_entry = (name(), 0u32..0o10000, time(), time(), leaf).prop_map(
        |(name, mode, mtime, atime, kind)| Entry {
            name,
            mode,
            mtime,
            atime,
            kind,
        },
    );
    leaf_entry.prop_recursive(3, 40, 6, |inner| {
        (
            name(),
            0o700u32..0o10000,
            time(),
            time(),
            proptest::collection::vec(inner, 0..6),
        )
            .prop_map(|(name, mode, mtime, atime, children)| {
                let mut seen = std::collections::HashSet::new();
                let children = children
                    .into_iter()
                    .filter(|c| seen.insert(c.name.clone()))
                    .collect();
                Entry {
                    name,
                    mode: mode | 0o700,
                    mtime,
                    atime,
                    kind: Kind::Dir(children),
                }
            })
    })
}

fn set_times(path: &Path, e: &Entry) {
    let ts = |(s, n): (i64, u32)| rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: n as _,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts(e.atime),
        last_modification: ts(e.mtime),
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn create(dir: &Path, e: &Entry) {
    let path = dir.join(OsStr::from_bytes(&e.name));
    match &e.kind {
        Kind::File(data, xattrs) => {
            std::fs::write(&path, data).unwrap();
            for (k, v) in xattrs {
                rustix::fs::setxattr(&path, k.as_slice(), v, rustix::fs::XattrFlags::empty())
                    .unwrap();
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode)).unwrap();
        }
        Kind::Dir(children) => {
            std::fs::create_dir(&path).unwrap();
            for c in children {
                create(&path, c);
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode)).unwrap();
        }
        Kind::Symlink(target) => {
            std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).unwrap()
        }
        Kind::Fifo => {
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &path,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(e.mode),
                0,
            )
            .unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(e.mode)).unwrap();
        }
    }
    set_times(&path, e);
}

fn verify(dir: &Path, e: &Entry) -> Result<(), String> {
    let path = dir.join(OsStr::from_bytes(&e.name));
    let md =
        std::fs::symlink_metadata(&path).map_err(|err| format!("{}: {err}", path.display()))?;
    let what = path.display();
    let check = |ok: bool, msg: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("{what}: {msg}"))
        }
    };
    if !matches!(e.kind, Kind::Symlink(_)) {
        check(
            md.mode() & 0o7777 == e.mode,
            &format!("mode {:o} != {:o}", md.mode() & 0o7777, e.mode),
        )?;
    }
    check(
        (md.mtime(), md.mtime_nsec() as u32) == e.mtime,
        &format!("mtime {:?} != {:?}", (md.mtime(), md.mtime_nsec()), e.mtime),
    )?;
    check(
        (md.atime(), md.atime_nsec() as u32) == e.atime,
        &format!("atime {:?} != {:?}", (md.atime(), md.atime_nsec()), e.atime),
    )?;
    match &e.kind {
        Kind::File(data, xattrs) => {
            check(md.is_file(), "not a file")?;
            check(
                std::fs::read(&path).map_err(|e| e.to_string())? == *data,
                "contents differ",
            )?;
            for (k, v) in xattrs {
                let mut buf = vec![0u8; 256];
                let n = rustix::fs::lgetxattr(&path, k.as_slice(), &mut buf)
                    .map_err(|e| format!("{what}: xattr: {e}"))?;
                check(&buf[..n] == v.as_slice(), "xattr value differs")?;
            }
            let listed = rustix::fs::llistxattr_query(&path).map_err(|e| e.to_string())?;
            let expected: usize = xattrs.iter().map(|(k, _)| k.len() + 1).sum();
            check(listed == expected, "extra extended attributes")?;
        }
        Kind::Dir(children) => {
            check(md.is_dir(), "not a directory")?;
            check(
                std::fs::read_dir(&path).map_err(|e| e.to_string())?.count() == children.len(),
                "entry count differs",
            )?;
            for c in children {
                verify(&path, c)?;
            }
        }
        Kind::Symlink(target) => {
            check(
                std::fs::read_link(&path)
                    .map_err(|e| e.to_string())?
                    .as_os_str()
                    .as_bytes()
                    == target.as_slice(),
                "target differs",
            )?;
        }
        Kind::Fifo => check(md.file_type().is_fifo_type(), "not a FIFO")?,
    }
    Ok(())
}

trait FifoType {
    fn is_fifo_type(&self) -> bool;
}

impl FifoType for std::fs::FileType {
    fn is_fifo_type(&self) -> bool {
        std::os::unix::fs::FileTypeExt::is_fifo(self)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, .. ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(children in proptest::collection::vec(entry(), 1..8), intl in any::<bool>()) {
        let mut seen = std::collections::HashSet::new();
        let children: Vec<Entry> = children.into_iter().filter(|c| seen.insert(c.name.clone())).collect();
        let top = Entry { name: b"src".to_vec(), mode: 0o755, mtime: (1_000_000_000, 5), atime: (1_000_000_001, 6), kind: Kind::Dir(children) };
        let base = tempfile::tempdir().unwrap();
        create(base.path(), &top);
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let result = rt.block_on(async {
            let (store, repo) = common::new_repo(if intl { Suite::Intl } else { Suite::Gm }).await;
            let src = base.path().join("src");
            let out = common::backup_path(&repo, &src).await;
            assert_eq!(out.snapshot.summary.skipped_count, 0, "{:?}", out.snapshot.summary.skipped);
            common::assert_checks(&store).await;
            let repo = common::reopen(&store).await;
            let target = base.path().join("restored");
            let sub = base.path().as_os_str().as_bytes().to_vec();
            let r = common::restore_to(&repo, out.snapshot.tree, &sub, &target).await;
            assert!(r.errors.is_empty(), "{:?}", r.errors);
            verify(&target, &top)
        });
        prop_assert!(result.is_ok(), "{}", result.err().unwrap_or_default());
    }
}
