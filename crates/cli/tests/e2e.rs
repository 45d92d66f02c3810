//! End-to-end tests of the `zaibei` binary: real backups and restores of generated trees
//! with every kind of entry, checked with tools that share no code with zaibei (rsync,
//! getfattr, getfacl, stat, du, and the Python walker `scripts/e2e/treecmp.py`), plus the
//! exit codes and messages of damaged repositories and bad input.
//!
//! They run as root and fail, never skip, when a tool is missing: run them through
//! `scripts/test`, which installs what they need. The real-tree test is in
//! `e2e_real_tree.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use e2e_support::*;
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps};

/// A generated tree backed up into a fresh repository.
struct Fixture {
    env: Env,
    src: PathBuf,
    info: TreeInfo,
    /// The source's stat dump, taken right after building it, before anything read it.
    src_stat: Vec<Vec<u8>>,
    /// The first backup's summary.
    backup: serde_json::Value,
}

impl Fixture {
    fn new() -> Fixture {
        let env = Env::init();
        let src = env.path("src");
        fs::create_dir(&src).unwrap();
        let info = build_tree(&src);
        let src_stat = stat_dump(&src);
        let backup = timed("backup of the generated tree", || env.backup(&[&src]));
        assert_eq!(num(&backup, "files_new"), info.file_names, "{backup}");
        // zaibei reads with O_NOATIME and leaves directories and links alone.
        assert_same(
            "stat dumps of the source before and after the backup",
            &src_stat,
            &stat_dump(&src),
        );
        Fixture {
            env,
            src,
            info,
            src_stat,
            backup,
        }
    }

    /// Restores the latest snapshot into `target`; the restored copy of the source.
    fn restore(&self, target: &Path, extra: &[&str]) -> (PathBuf, serde_json::Value) {
        let s = self.env.restore("latest", target, extra);
        (restored(target, &self.src), s)
    }

    /// Every comparison with independent tools. Reads file contents (rsync), so the
    /// restored tree's stat dump is taken first.
    fn assert_restored(&self, dst: &Path) {
        assert_metadata_matches(&self.src_stat, &self.src, dst);
        assert_sparse(dst);
        assert_rsync_clean(&self.src, dst);
    }
}

// ---------------------------------------------------------------------------------------
// (a) Every kind of entry, compared with rsync, getfattr, getfacl, stat and du.
// ---------------------------------------------------------------------------------------

#[test]
fn every_kind_of_entry_round_trips() {
    let fx = Fixture::new();
    let target = fx.env.path("restore");
    let (dst, s) = timed("restore of the generated tree", || fx.restore(&target, &[]));
    assert_eq!(num(&s, "files_restored"), fx.info.file_inodes, "{s}");
    fx.assert_restored(&dst);

    // The repository is sound, every blob included.
    fx.env.ok(&[&"check", &"--read-data"]);

    // A restore of the source directory itself puts its contents, and its own metadata,
    // into the target.
    let sub = fx.env.path("restore-sub");
    let s = fx
        .env
        .restore(&format!("latest:{}", fx.src.display()), &sub, &[]);
    assert_eq!(num(&s, "files_restored"), fx.info.file_inodes, "{s}");
    fx.assert_restored(&sub);

    // An unchanged tree is not read again.
    let second = fx.env.backup(&[&fx.src]);
    assert_eq!(num(&second, "bytes_read"), 0, "{second}");
    assert_eq!(
        num(&second, "files_unmodified"),
        fx.info.file_names,
        "{second}"
    );
    assert_eq!(num(&second, "files_new") + num(&second, "files_changed"), 0);
    assert_eq!(
        second["parent"], fx.backup["snapshot_id"],
        "the second backup should use the first as its parent"
    );
}

// ---------------------------------------------------------------------------------------
// (e) Verify, resume, repair.
// ---------------------------------------------------------------------------------------

#[test]
fn restore_verifies_resumes_and_repairs() {
    let fx = Fixture::new();
    let target = fx.env.path("restore");
    let (dst, s) = fx.restore(&target, &["--verify"]);
    assert_eq!(num(&s, "files_verified"), fx.info.file_inodes, "{s}");
    fx.assert_restored(&dst);

    // Restoring again over a complete restore writes nothing, and puts back the access
    // times that rsync --checksum just changed by reading.
    let (_, s) = fx.restore(&target, &[]);
    assert_eq!(num(&s, "files_restored"), 0, "{s}");
    assert_eq!(num(&s, "bytes_restored"), 0, "{s}");
    assert_eq!(num(&s, "files_unchanged"), fx.info.file_inodes, "{s}");
    fx.assert_restored(&dst);

    // One file deleted, one overwritten in place (same size, same times): exactly those
    // two are written again.
    let deleted = &fx.info.plain_files[0];
    let corrupted = &fx.info.plain_files[1];
    fs::remove_file(dst.join(deleted)).unwrap();
    let meta = fs::metadata(dst.join(corrupted)).unwrap();
    let (atime, mtime) = (
        ts(meta.atime(), meta.atime_nsec()),
        ts(meta.mtime(), meta.mtime_nsec()),
    );
    let f = fs::OpenOptions::new()
        .write(true)
        .open(dst.join(corrupted))
        .unwrap();
    f.write_all_at(b"CORRUPTED!", 1000).unwrap();
    drop(f);
    set_times(&dst.join(corrupted), atime, mtime);
    let (_, s) = fx.restore(&target, &[]);
    assert_eq!(num(&s, "files_restored"), 2, "{s}");
    assert_eq!(num(&s, "files_unchanged"), fx.info.file_inodes - 2, "{s}");
    // (Reading the files changes their access times: compare the stat dumps first.)
    fx.assert_restored(&dst);
    assert_eq!(read(&dst, deleted), read(&fx.src, deleted));
    assert_eq!(read(&dst, corrupted), read(&fx.src, corrupted));
}

/// A resumed restore over a target that someone changed: symlinks planted where a file
/// and a directory were must not be followed (nothing outside the target changes), and the
/// result is exactly the snapshot again: modes, xattrs, ACLs and hard links put back.
#[test]
fn resume_over_a_tampered_target_is_safe_and_exact() {
    let fx = Fixture::new();
    let target = fx.env.path("restore");
    let (dst, _) = fx.restore(&target, &[]);
    let outside = fx.env.path("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("victim"), b"must stay as it is\n").unwrap();

    // A file and a directory replaced by symlinks to the outside.
    fs::remove_file(dst.join("owned-1234")).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), dst.join("owned-1234")).unwrap();
    fs::remove_dir_all(dst.join("setgid-dir")).unwrap();
    std::os::unix::fs::symlink(&outside, dst.join("setgid-dir")).unwrap();
    // A hard link broken into a copy, a mode, an xattr and an ACL changed.
    fs::remove_file(dst.join("d1/hl1")).unwrap();
    fs::copy(dst.join("small"), dst.join("d1/hl1")).unwrap();
    fs::set_permissions(dst.join("random-300k"), fs::Permissions::from_mode(0o777)).unwrap();
    bash(
        &dst,
        "setfattr -x user.binary small && setfattr -n user.extra -v 1 text-2m \
         && setfacl -b d1 && setfacl -m u:999:rwx empty",
    );

    let (_, s) = fx.restore(&target, &[]);
    assert_eq!(
        fs::read(outside.join("victim")).unwrap(),
        b"must stay as it is\n",
        "restore wrote through a planted symlink: {s}"
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        1,
        "restore created entries through a planted directory symlink: {s}"
    );
    // The copy that replaced a hard link stays in the target only if it is linked again;
    // everything the snapshot has must match exactly.
    assert_metadata_matches(&fx.src_stat, &fx.src, &dst);
    assert_rsync_clean(&fx.src, &dst);
}

/// Bytes written into a hole of a restored sparse file are damage like any other: a
/// resumed restore must notice them and restore the file.
#[test]
fn resume_repairs_data_written_into_a_hole() {
    let fx = Fixture::new();
    let target = fx.env.path("restore");
    let (dst, _) = fx.restore(&target, &[]);
    let sparse = dst.join(&fx.info.sparse);
    let f = fs::OpenOptions::new().write(true).open(&sparse).unwrap();
    f.write_all_at(b"JUNK IN A HOLE", 50_000_000).unwrap();
    drop(f);
    let (_, s) = fx.restore(&target, &[]);
    assert_eq!(
        num(&s, "files_restored"),
        1,
        "the sparse file with junk in a hole was taken as unchanged: {s}"
    );
    assert_eq!(
        read(&dst, &fx.info.sparse),
        read(&fx.src, &fx.info.sparse),
        "the restored sparse file differs from the source after a resumed restore"
    );
}

// ---------------------------------------------------------------------------------------
// (b) Deeper than PATH_MAX, compared with the fd-based Python walker.
// ---------------------------------------------------------------------------------------

/// Levels of 200-byte directory names: 50 × 201 bytes is past PATH_MAX (4096) twice over
/// and past 8192.
const DEEP_LEVELS: usize = 50;

fn deep_name(level: usize) -> String {
    format!("{level:03}-{}", "d".repeat(196))
}

/// Builds the deep chain below `root` with directory handles only; returns the length of
/// the longest path in bytes.
fn build_deep_tree(root: &Path) -> usize {
    let dir_flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let file_flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC;
    let mut fds = vec![rustix::fs::open(root, dir_flags, Mode::empty()).unwrap()];
    let mut len = root.as_os_str().len();
    for level in 0..DEEP_LEVELS {
        let name = deep_name(level);
        let parent = fds.last().unwrap();
        rustix::fs::mkdirat(parent, &name, Mode::from_raw_mode(0o750)).unwrap();
        // Some company on the way down: a file and a symlink every tenth level.
        if level % 10 == 0 {
            let fd = rustix::fs::openat(
                parent,
                format!("file-{level}"),
                file_flags,
                Mode::from_raw_mode(0o640),
            )
            .unwrap();
            rustix::io::write(&fd, &pseudo_random(level * 1000 + 1, level as u64)).unwrap();
            rustix::fs::symlinkat(&name, parent, format!("link-{level}")).unwrap();
        }
        let fd = rustix::fs::openat(parent, &name, dir_flags, Mode::empty()).unwrap();
        fds.push(fd);
        len += 1 + name.len();
    }
    let bottom = fds.last().unwrap();
    let fd = rustix::fs::openat(
        bottom,
        "at-the-bottom",
        file_flags,
        Mode::from_raw_mode(0o604),
    )
    .unwrap();
    let data = pseudo_random(3 << 20, 99);
    let mut done = 0;
    while done < data.len() {
        done += rustix::io::write(&fd, &data[done..]).unwrap();
    }
    len += "/at-the-bottom".len();
    // Times bottom-up, through the parent's handle.
    for (level, parent) in fds.iter().enumerate().rev() {
        let l = level as i64;
        let name = if level == DEEP_LEVELS {
            "at-the-bottom".to_owned()
        } else {
            deep_name(level)
        };
        let times = Timestamps {
            last_access: ts(FUTURE_ATIME + l, 0),
            last_modification: ts(1_000_000_000 + l * 86_400, l * 1_000_001),
        };
        rustix::fs::utimensat(parent, &name, &times, AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }
    len
}

#[test]
fn deeper_than_path_max_round_trips() {
    let env = Env::init();
    let src = env.path("deep");
    fs::create_dir(&src).unwrap();
    let longest = build_deep_tree(&src);
    assert!(longest > 8192, "the deep tree is only {longest} bytes deep");
    note(&format!(
        "deep tree: {DEEP_LEVELS} levels, longest path {longest} bytes"
    ));

    let b = env.backup(&[&src]);
    assert_eq!(num(&b, "files_new"), 6, "{b}");
    let target = env.path("restore");
    let s = env.restore("latest", &target, &["--verify"]);
    assert_eq!(num(&s, "files_verified"), 6, "{s}");
    let report = assert_treecmp_clean(&src, &restored(&target, &src), false);
    note(&format!("deep tree: {report}"));
    env.ok(&[&"check", &"--read-data"]);

    // A subtree restore from deep inside, whose snapshot path is itself longer than
    // PATH_MAX, puts that directory's contents into the target.
    let inner = (0..=DEEP_LEVELS / 2).fold(src.clone(), |p, l| p.join(deep_name(l)));
    assert!(inner.as_os_str().len() > 4096);
    let sub = env.path("sub");
    let s = env.restore(&format!("latest:{}", inner.display()), &sub, &[]);
    assert_eq!(num(&s, "files_restored"), 3, "{s}");
    let report = assert_treecmp_clean(&inner, &sub, false);
    note(&format!("deep subtree: {report}"));
}

// ---------------------------------------------------------------------------------------
// (d) Exit codes and messages of bad input and damaged repositories.
// ---------------------------------------------------------------------------------------

/// A repository with one small backup.
fn small_backup() -> (Env, PathBuf) {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("a.txt"), b"first file\n").unwrap();
    fs::write(src.join("sub/b.bin"), pseudo_random(200_000, 1)).unwrap();
    env.backup(&[&src]);
    (env, src)
}

#[test]
fn wrong_password_exits_12() {
    let (mut env, _) = small_backup();
    env.password = "not the password".into();
    let out = env.expect(code::WRONG_PASSWORD, &[&"snapshots"]);
    let text = all_output(&out);
    assert!(text.contains("wrong password"), "{}", describe(&out));
}

#[test]
fn missing_repository_exits_10() {
    let mut env = Env::init();
    let missing = env.path("no-such-repository");
    env.repo = missing.clone();
    let out = env.expect(code::NO_REPOSITORY, &[&"snapshots"]);
    assert!(
        all_output(&out).contains("no-such-repository"),
        "the message should name the location\n{}",
        describe(&out)
    );
    env.expect(code::NO_REPOSITORY, &[&"check"]);
    assert!(
        !missing.exists(),
        "reading commands must not create a repository"
    );
}

#[test]
fn newer_config_version_exits_13() {
    let (env, _) = small_backup();
    let config = env.repo.join("config");
    let mut bytes = fs::read(&config).unwrap();
    assert_eq!(&bytes[..7], b"ZAIBEIC", "config starts with its magic");
    bytes[7] = 2;
    fs::write(&config, &bytes).unwrap();
    let out = env.expect(code::UNSUPPORTED_VERSION, &[&"snapshots"]);
    assert!(
        all_output(&out).contains("upgrade"),
        "the message should tell to upgrade\n{}",
        describe(&out)
    );
}

/// The largest file among `paths`.
fn largest(paths: &[PathBuf]) -> PathBuf {
    paths
        .iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .expect("no objects")
        .clone()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn flipped_byte_in_pack_is_found_by_read_data() {
    let (env, _) = small_backup();
    env.ok(&[&"check", &"--read-data"]);
    let pack = largest(&env.objects("data"));
    let mut bytes = fs::read(&pack).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    fs::write(&pack, &bytes).unwrap();
    let out = env.expect(code::DAMAGED, &[&"check", &"--read-data"]);
    assert!(
        all_output(&out).contains(&file_name(&pack)),
        "check should name the damaged pack {}\n{}",
        pack.display(),
        describe(&out)
    );
}

#[test]
fn deleted_pack_fails_check_and_restore_is_partial() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    let small: Vec<(&str, Vec<u8>)> = vec![
        ("a.txt", b"first file\n".to_vec()),
        ("sub/b.bin", pseudo_random(100_000, 2)),
        ("sub/c.txt", b"third\n".to_vec()),
    ];
    for (name, data) in &small {
        fs::write(src.join(name), data).unwrap();
    }
    env.backup(&[&src]);
    let before = env.objects("data");
    // The second backup adds only the big file's data: its packs are new.
    fs::write(src.join("big.bin"), pseudo_random(6 << 20, 3)).unwrap();
    env.backup(&[&src]);
    let new: Vec<PathBuf> = env
        .objects("data")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    let pack = largest(&new);
    fs::remove_file(&pack).unwrap();

    let out = env.expect(code::DAMAGED, &[&"check"]);
    assert!(
        all_output(&out).contains(&file_name(&pack)),
        "check should name the missing pack {}\n{}",
        pack.display(),
        describe(&out)
    );

    let target = env.path("restore");
    let out = env.expect(
        code::PARTIAL,
        &[&"--json", &"restore", &"latest", &"--target", &target],
    );
    let s = summary(&out);
    let errors = s["errors"].as_array().expect("errors list");
    assert!(
        errors
            .iter()
            .any(|e| e[0].as_str().unwrap_or("").ends_with("/big.bin")),
        "restore should name big.bin as not restored: {s}"
    );
    let dst = restored(&target, &src);
    for (name, data) in &small {
        assert_eq!(
            &fs::read(dst.join(name)).unwrap(),
            data,
            "{name} should be restored although big.bin is not"
        );
    }
}

/// When a hard-linked file's data is lost, every one of its names is reported as not
/// restored: the empty placeholders left for the others must not pass for restored files.
#[test]
fn partial_restore_names_every_link_of_a_lost_file() {
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(src.join("one")).unwrap();
    fs::create_dir_all(src.join("two")).unwrap();
    fs::write(src.join("kept.txt"), b"restorable\n").unwrap();
    env.backup(&[&src]);
    let before = env.objects("data");
    fs::write(src.join("one/lost.bin"), pseudo_random(6 << 20, 5)).unwrap();
    fs::hard_link(src.join("one/lost.bin"), src.join("two/link-a")).unwrap();
    fs::hard_link(src.join("one/lost.bin"), src.join("link-b")).unwrap();
    env.backup(&[&src]);
    let new: Vec<PathBuf> = env
        .objects("data")
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    fs::remove_file(largest(&new)).unwrap();

    let target = env.path("restore");
    let out = env.expect(
        code::PARTIAL,
        &[&"--json", &"restore", &"latest", &"--target", &target],
    );
    let s = summary(&out);
    let errors: Vec<&str> = s["errors"]
        .as_array()
        .expect("errors list")
        .iter()
        .filter_map(|e| e[0].as_str())
        .collect();
    for name in ["/one/lost.bin", "/two/link-a", "/link-b"] {
        assert!(
            errors.iter().any(|e| e.ends_with(name)),
            "{name} (a link to the lost file) is not reported as not restored: {s}"
        );
    }
    assert_eq!(
        fs::read(restored(&target, &src).join("kept.txt")).unwrap(),
        b"restorable\n"
    );
}

#[test]
fn truncated_index_is_reported_and_commands_still_run() {
    let (env, src) = small_backup();
    let first = env.objects("index");
    fs::write(src.join("later.txt"), b"second backup\n").unwrap();
    env.backup(&[&src]);
    let second: Vec<PathBuf> = env
        .objects("index")
        .into_iter()
        .filter(|p| !first.contains(p))
        .collect();
    assert!(
        !second.is_empty(),
        "the second backup wrote no index object"
    );
    let index = &second[0];
    let len = fs::metadata(index).unwrap().len();
    let f = fs::OpenOptions::new().write(true).open(index).unwrap();
    f.set_len(len / 2).unwrap();
    drop(f);

    // Listing still works; the first snapshot, whose index is intact, still restores.
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 2);
    let target = env.path("restore");
    env.restore(&ids[0], &target, &[]);
    assert_eq!(
        fs::read(restored(&target, &src).join("a.txt")).unwrap(),
        b"first file\n"
    );

    let out = env.expect(code::DAMAGED, &[&"check"]);
    assert!(
        all_output(&out).contains(&file_name(index)),
        "check should name the truncated index {}\n{}",
        index.display(),
        describe(&out)
    );

    // A new backup still works, and stores what the damaged index no longer vouches for.
    env.backup(&[&src]);
    let target = env.path("restore-latest");
    env.restore("latest", &target, &[]);
    assert_eq!(
        fs::read(restored(&target, &src).join("later.txt")).unwrap(),
        b"second backup\n"
    );
}

#[test]
fn unreadable_file_is_skipped_with_exit_3() {
    // Everything below /tmp (world-searchable), so that user nobody reaches it wherever
    // the checkout is; the binary is copied there for the same reason.
    let dir = tempfile::Builder::new()
        .prefix("zaibei-e2e-nobody-")
        .tempdir()
        .unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let mut env = Env::init_in(dir);
    let bin = env.path("zaibei");
    fs::copy(&env.bin, &bin).unwrap();
    env.bin = bin;
    let src = env.path("src");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("readable.txt"), b"anyone may read this\n").unwrap();
    fs::write(src.join("sub/also-readable"), b"and this\n").unwrap();
    fs::write(src.join("secret"), b"root only\n").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    bash(
        env.dir.path(),
        "chown -R nobody:nogroup repo && chmod -R a+rX src && chmod 000 src/secret",
    );

    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&env.bin)
        .args(["--json", "-r"])
        .arg(&env.repo)
        .arg("backup")
        .arg(&src)
        .env("ZAIBEI_PASSWORD", &env.password)
        .env("HOME", env.dir.path())
        .env_remove("ZAIBEI_REPOSITORY")
        .env_remove("ZAIBEI_PASSWORD_FILE")
        .current_dir(env.dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code::PARTIAL), "{}", describe(&out));
    let s = summary(&out);
    assert_eq!(num(&s, "skipped"), 1, "{s}");
    let skipped = s["skipped_paths"][0][0].as_str().unwrap_or("");
    assert!(skipped.ends_with("/src/secret"), "skipped paths: {s}");

    let ids = env.snapshot_ids();
    assert_eq!(
        ids.len(),
        1,
        "the partial backup should still write its snapshot"
    );
    let target = env.path("restore");
    env.restore("latest", &target, &[]);
    let dst = restored(&target, &src);
    assert_eq!(
        fs::read(dst.join("readable.txt")).unwrap(),
        b"anyone may read this\n"
    );
    assert_eq!(
        fs::read(dst.join("sub/also-readable")).unwrap(),
        b"and this\n"
    );
    assert!(!dst.join("secret").exists());
}

#[test]
fn failing_stdin_command_writes_no_snapshot() {
    let (env, _) = small_backup();
    let before = env.snapshot_ids();
    let out = env.run(&[
        &"backup",
        &"--stdin-from-command",
        &"--",
        &"sh",
        &"-c",
        &"echo x; exit 3",
    ]);
    assert!(
        !out.status.success(),
        "a failing command must fail the backup\n{}",
        describe(&out)
    );
    assert_eq!(env.snapshot_ids(), before, "no snapshot may be written");
}

#[test]
fn stdin_backup_restores_the_same_bytes() {
    let env = Env::init();
    // Larger than the 16 MiB read buffer of the default chunker (8 MiB chunks at most), so the
    // chunks are hashed in place several times before the buffer moves.
    let data = pseudo_random(40 << 20, 11);
    let mut child = env
        .command()
        .args(["--json", "backup", "--stdin", "--stdin-filename", "db.sql"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feed = data.clone();
    let writer = std::thread::spawn(move || stdin.write_all(&feed));
    let out = child.wait_with_output().unwrap();
    let written = writer.join().unwrap();
    // The exit status first: a backup that failed early also breaks the pipe.
    assert_eq!(out.status.code(), Some(code::OK), "{}", describe(&out));
    written.unwrap();
    assert_eq!(num(&summary(&out), "bytes_read"), data.len() as u64);

    let target = env.path("restore");
    env.restore("latest", &target, &[]);
    assert!(
        fs::read(target.join("db.sql")).unwrap() == data,
        "restored db.sql differs from what went in"
    );
}

#[test]
fn usage_errors_exit_2() {
    let env = Env::init();
    env.expect(code::USAGE, &[&"backup"]);
    env.expect(code::USAGE, &[&"no-such-command"]);
    let out = Command::new(&env.bin)
        .arg("snapshots")
        .env_remove("ZAIBEI_REPOSITORY")
        .env("ZAIBEI_PASSWORD", &env.password)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code::USAGE), "{}", describe(&out));
}

/// `init` creates the repository directory (and its parents) for a relative location as
/// it does for an absolute one.
#[test]
fn init_at_a_relative_location() {
    let dir = scratch();
    require_tools();
    let out = Command::new(env!("CARGO_BIN_EXE_zaibei"))
        .args(["-r", "new-repo", "init", "--insecure-test-kdf"])
        .env("ZAIBEI_PASSWORD", PASSWORD)
        .env_remove("ZAIBEI_REPOSITORY")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(code::OK), "{}", describe(&out));
    assert!(dir.path().join("new-repo/config").is_file());
}

/// The binary re-executes itself once with glibc's mmap threshold fixed (`malloc_tuning.rs`),
/// under the name it was called by; a threshold the user set, or `ZAIBEI_MALLOC_TUNING=off`,
/// leaves the allocator as it is.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[test]
fn the_allocator_runs_with_a_fixed_mmap_threshold() {
    let dir = scratch();
    let run = |bin: &Path, args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env_remove("GLIBC_TUNABLES")
            .env_remove("ZAIBEI_MALLOC_TUNED")
            .env_remove("ZAIBEI_MALLOC_TUNING")
            .env_remove("ZAIBEI_LOG")
            .env_remove("MALLOC_MMAP_THRESHOLD_")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    };
    let bin = Path::new(env!("CARGO_BIN_EXE_zaibei"));
    let missing = dir.path().join("no-repo");
    let missing = missing.to_str().unwrap();
    let args = ["-vv", "-r", missing, "snapshots"];
    let tuned = "re-executed with GLIBC_TUNABLES=glibc.malloc.mmap_threshold=1048576";

    let out = run(bin, &args, &[]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(tuned),
        "{}",
        describe(&out)
    );
    let out = run(
        bin,
        &args,
        &[("GLIBC_TUNABLES", "glibc.malloc.arena_max=4")],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "GLIBC_TUNABLES=glibc.malloc.arena_max=4:glibc.malloc.mmap_threshold=1048576"
        ),
        "{}",
        describe(&out)
    );
    for env in [
        ("ZAIBEI_MALLOC_TUNING", "off"),
        ("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=262144"),
        ("MALLOC_MMAP_THRESHOLD_", "262144"),
    ] {
        let out = run(bin, &args, &[env]);
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("re-executed"),
            "{env:?}: {}",
            describe(&out)
        );
    }

    // Started through the dynamic loader, the binary is not re-executed (`/proc/self/exe` is
    // the loader then), and runs as it would otherwise.
    let normal = run(bin, &args, &[]);
    let loader = ["/lib64/ld-linux-x86-64.so.2", "/lib/ld-linux-aarch64.so.1"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    if cfg!(target_arch = "x86_64") {
        assert!(loader.is_some(), "no dynamic loader found");
    }
    if let Some(loader) = loader {
        let mut through: Vec<&str> = vec![bin.to_str().unwrap()];
        through.extend(args);
        let out = run(loader, &through, &[]);
        assert_eq!(
            out.status.code(),
            normal.status.code(),
            "{}",
            describe(&out)
        );
        assert!(
            !String::from_utf8_lossy(&out.stderr).contains("re-executed"),
            "{}",
            describe(&out)
        );
    }

    // The re-executed binary keeps the name it was called by.
    let link = dir.path().join("zb-renamed");
    std::os::unix::fs::symlink(bin, &link).unwrap();
    let out = run(&link, &["--help"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Usage: zb-renamed"),
        "{}",
        describe(&out)
    );
}

// ---------------------------------------------------------------------------------------
// Interruption and concurrency.
// ---------------------------------------------------------------------------------------

/// Ctrl-C during a backup: exit 130, no snapshot, a repository that checks clean and takes
/// the next backup.
#[test]
fn interrupted_backup_leaves_a_usable_repository() {
    use rustix::process::{Pid, Signal, kill_process};
    let (env, src) = small_backup();
    let before = env.snapshot_ids();
    let started = env.path("producer-started");
    let pid_file = env.path("producer-pid");
    // A producer that writes some data, then blocks without writing: only zaibei can stop it
    // (it must not be left running when the backup is abandoned).
    let script = format!(
        "echo $$ > {}; touch {}; head -c 3000000 /dev/zero; exec sleep 60",
        pid_file.display(),
        started.display()
    );
    let mut child = env
        .command()
        .args(["backup", "--stdin-from-command", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !started.exists() && start.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    kill_process(Pid::from_child(&child), Signal::INT).unwrap();
    let status = child.wait().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(130), "{}", describe(&out));
    assert_eq!(
        env.snapshot_ids(),
        before,
        "an interrupted backup wrote a snapshot"
    );
    let pid: i32 = fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let alive = || {
        fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            stat.rsplit(')')
                .next()
                .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
        })
    };
    let start = std::time::Instant::now();
    while alive() && start.elapsed().as_secs() < 5 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !alive(),
        "the producer command (pid {pid}) outlived the interrupted backup"
    );
    env.ok(&[&"check", &"--read-data"]);
    env.backup(&[&src]);
    assert_eq!(env.snapshot_ids().len(), before.len() + 1);
}

/// Two backups into one repository at the same time both succeed; the repository checks
/// clean (duplicates are only a warning) and both snapshots restore exactly.
#[test]
fn concurrent_backups_share_a_repository() {
    let env = Env::init();
    let a = env.path("a");
    let b = env.path("b");
    for (dir, seed) in [(&a, 1u64), (&b, 2)] {
        fs::create_dir(dir).unwrap();
        for i in 0..40u64 {
            // Half the files are common to both trees, so both backups race to store them.
            let data = if i % 2 == 0 {
                pseudo_random(50_000 + i as usize * 1000, i)
            } else {
                pseudo_random(30_000, seed * 1000 + i)
            };
            fs::write(dir.join(format!("f{i:02}")), data).unwrap();
        }
        fs::write(dir.join("big"), pseudo_random(3 << 20, 77)).unwrap();
    }
    let spawn = |dir: &Path| {
        env.command()
            .args(["--json", "backup"])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&a), spawn(&b));
    for out in [
        ca.wait_with_output().unwrap(),
        cb.wait_with_output().unwrap(),
    ] {
        assert_eq!(out.status.code(), Some(code::OK), "{}", describe(&out));
    }
    assert_eq!(env.snapshot_ids().len(), 2);
    env.ok(&[&"check", &"--read-data"]);
    let target = env.path("restore");
    for id in env.snapshot_ids() {
        env.restore(&id, &target, &[]);
    }
    for dir in [&a, &b] {
        assert_rsync_clean(dir, &restored(&target, dir));
    }
}
