//! End-to-end test on a real tree of tens of thousands of files that every Debian machine
//! has (`/usr/share`, topped up from `/usr/include` and `/usr/lib` where it is small):
//! backup, restore, `rsync --checksum` finds no difference, and an unchanged second backup
//! reads nothing. A test binary of its own so that it does not share the CPUs with the
//! other end-to-end tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use e2e_support::*;

/// At least this many regular files.
const MIN_FILES: u64 = 20_000;

/// Trees tried in order until together they hold [`MIN_FILES`] regular files.
const CANDIDATES: &[&str] = &["/usr/share", "/usr/include", "/usr/lib"];

/// Regular-file names below `root`, and the bytes of their distinct inodes, not following
/// symlinks.
fn count(root: &Path, inodes: &mut HashSet<(u64, u64)>) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            } else if meta.is_file() {
                files += 1;
                if inodes.insert((meta.dev(), meta.ino())) {
                    bytes += meta.len();
                }
            }
        }
    }
    (files, bytes)
}

#[test]
fn real_system_tree_round_trips() {
    require_tools();
    round_trip(&Env::init(), "fs");
    // The same on object storage: the S3 server scripts/test started (Garage).
    let target = zaibei_testkit::S3Target::from_env().unwrap_or_else(|e| panic!("{e}"));
    let location = target.location(&zaibei_testkit::S3Target::unique_prefix("real-tree"), None);
    let scratch_cache = scratch();
    let mut vars = s3_vars(&target);
    vars.push((
        "ZAIBEI_CACHE_DIR".into(),
        Some(scratch_cache.path().to_str().unwrap().to_owned()),
    ));
    round_trip(&Env::init_at(&location, vars, Vec::new()), "s3");
}

/// Backs up the real tree into `env`'s repository, restores it, compares, re-backs it up.
fn round_trip(env: &Env, store: &str) {
    let mut sources: Vec<PathBuf> = Vec::new();
    let (mut files, mut bytes) = (0, 0);
    let mut inodes = HashSet::new();
    for c in CANDIDATES {
        if files >= MIN_FILES {
            break;
        }
        let p = PathBuf::from(c);
        if p.is_dir() {
            let (f, b) = count(&p, &mut inodes);
            files += f;
            bytes += b;
            sources.push(p);
        }
    }
    note(&format!(
        "real tree: {sources:?}, {files} regular files, {} MiB",
        bytes >> 20
    ));
    assert!(
        files >= MIN_FILES,
        "{CANDIDATES:?} hold only {files} regular files; this test needs {MIN_FILES}"
    );

    let paths: Vec<&Path> = sources.iter().map(PathBuf::as_path).collect();
    let first = timed(&format!("real tree on {store}: first backup"), || {
        env.backup(&paths)
    });
    assert_eq!(num(&first, "files_new"), files, "{first}");

    let target = env.path("restore");
    let s = timed(&format!("real tree on {store}: restore"), || {
        env.restore("latest", &target, &[])
    });
    assert_eq!(num(&s, "bytes_restored"), bytes, "{s}");
    timed(
        &format!("real tree on {store}: rsync --checksum comparison"),
        || {
            for src in &sources {
                assert_rsync_clean(src, &restored(&target, src));
            }
        },
    );

    let second = timed(
        &format!("real tree on {store}: unchanged second backup"),
        || env.backup(&paths),
    );
    assert_eq!(num(&second, "bytes_read"), 0, "{second}");
    assert_eq!(num(&second, "files_unmodified"), files, "{second}");
    if store == "s3" {
        // With the metadata cache, the re-backup downloads no index object and no tree pack.
        let down = second["storage"]["bytes_down"].as_u64().unwrap();
        assert!(
            down < 64 << 10,
            "unchanged re-backup downloaded {down} bytes: {second}"
        );
    }
    timed(&format!("real tree on {store}: check"), || {
        env.ok(&[&"check"])
    });
}
