//! Tests of the verification: a faithful restore passes, and every kind of difference
//! planted in a restored tree is found, at its path.

use std::fs;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zaibei_archive::progress::Counters;
use zaibei_archive::restore::{RestoreOptions, restore};

use super::*;
use crate::fixture::{FILES, Fixture};

async fn restored(f: &Fixture) -> PathBuf {
    let target = f.dir.path().join("restore");
    let opts = RestoreOptions {
        target: target.clone(),
        workers: 2,
        ..Default::default()
    };
    let out = restore(
        Arc::clone(&f.repo),
        f.first.snapshot.tree,
        opts,
        Arc::new(Counters::default()),
    )
    .await
    .unwrap();
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    target
}

async fn run(f: &Fixture, target: &Path, reported: Vec<(Vec<u8>, String)>) -> Verified {
    let repo = Arc::clone(&f.repo);
    let root = f.first.snapshot.tree;
    let target = target.to_path_buf();
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        verify_tree(
            &repo,
            &runtime,
            root,
            &target,
            &reported,
            2,
            &Counters::default(),
        )
    })
    .await
    .unwrap()
    .unwrap()
}

/// The snapshot path of `rel` below the source.
fn snap_path(f: &Fixture, rel: &str) -> Vec<u8> {
    f.source.join(rel).into_os_string().into_encoded_bytes()
}

/// Where `rel` below the source was restored.
fn in_target(f: &Fixture, target: &Path, rel: &str) -> PathBuf {
    target.join(f.source.strip_prefix("/").unwrap()).join(rel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faithful_restore_verifies_every_entry() {
    let f = Fixture::new().await;
    let target = restored(&f).await;
    // A file without read permission (as a snapshot may hold) is read all the same.
    let secret = in_target(&f, &target, "secret");
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();
    let v = run(&f, &target, Vec::new()).await;
    let problems: Vec<_> = v
        .problems
        .iter()
        .map(|p| {
            (
                String::from_utf8_lossy(&p.path).into_owned(),
                p.reason.clone(),
            )
        })
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(v.files_expected, FILES);
    assert_eq!(v.files_verified, FILES);
    let expected_bytes = (5 << 20) + 13 + 70_000 + "灾备演练\n".len() as u64 * 1000 + (8 << 20) + 9;
    assert_eq!(v.bytes_verified, expected_bytes);
    assert_eq!(v.others_verified, 2, "the symlink and the FIFO");
    // The read-only file was readable for the check and is left as it was restored.
    let mode = fs::symlink_metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planted_difference_is_found_at_its_path() {
    let f = Fixture::new().await;
    let target = restored(&f).await;
    let at = |rel: &str| in_target(&f, &target, rel);
    // One byte flipped in the middle of a file of several chunks.
    let big = fs::OpenOptions::new().write(true).open(at("big")).unwrap();
    let mut b = [0u8; 1];
    fs::File::open(at("big"))
        .unwrap()
        .read_exact_at(&mut b, 3 << 20)
        .unwrap();
    big.write_all_at(&[b[0] ^ 0x40], 3 << 20).unwrap();
    // Truncated.
    fs::OpenOptions::new()
        .write(true)
        .open(at("small"))
        .unwrap()
        .set_len(3)
        .unwrap();
    // A file replaced by a symlink to a file with the same contents.
    fs::copy(at("dir/text"), f.dir.path().join("copy")).unwrap();
    fs::remove_file(at("dir/text")).unwrap();
    std::os::unix::fs::symlink(f.dir.path().join("copy"), at("dir/text")).unwrap();
    // A symlink pointing elsewhere.
    fs::remove_file(at("link")).unwrap();
    std::os::unix::fs::symlink("elsewhere", at("link")).unwrap();
    // A directory gone.
    fs::remove_dir_all(at("dir/sub")).unwrap();
    // Data written into a hole.
    fs::OpenOptions::new()
        .write(true)
        .open(at("sparse"))
        .unwrap()
        .write_all_at(b"x", 1 << 20)
        .unwrap();
    // A FIFO replaced by a regular file.
    fs::remove_file(at("fifo")).unwrap();
    fs::write(at("fifo"), b"").unwrap();
    // A file the restore reported as failed is not checked again.
    let reported = vec![(snap_path(&f, "empty"), "pretend it failed".to_owned())];

    let v = run(&f, &target, reported).await;
    let mut found: Vec<(String, FailurePhase, String)> = v
        .problems
        .iter()
        .map(|p| {
            let rel = p
                .path
                .strip_prefix(snap_path(&f, "").as_slice())
                .map(|r| String::from_utf8_lossy(r).into_owned())
                .unwrap_or_else(|| String::from_utf8_lossy(&p.path).into_owned());
            (rel, p.phase, p.reason.clone())
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    let names: Vec<&str> = found.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "big", "dir/sub", "dir/text", "empty", "fifo", "link", "small", "sparse"
        ],
        "{found:#?}"
    );
    let reason = |name: &str| {
        found
            .iter()
            .find(|(p, _, _)| p == name)
            .map(|(_, phase, r)| (*phase, r.clone()))
            .unwrap()
    };
    assert!(reason("big").1.contains("contents differ"), "{found:#?}");
    assert!(reason("small").1.contains("size 3 bytes"), "{found:#?}");
    assert!(
        reason("dir/text").1.contains("missing or unreadable"),
        "{found:#?}"
    );
    assert!(reason("link").1.contains("points elsewhere"), "{found:#?}");
    assert!(
        reason("dir/sub").1.contains("directory missing"),
        "{found:#?}"
    );
    assert!(reason("sparse").1.contains("hole"), "{found:#?}");
    assert!(reason("fifo").1.contains("RegularFile"), "{found:#?}");
    assert_eq!(
        reason("empty"),
        (FailurePhase::Restore, "pretend it failed".to_owned())
    );
    assert!(
        found
            .iter()
            .filter(|(p, _, _)| p != "empty")
            .all(|(_, phase, _)| *phase == FailurePhase::Verify)
    );
    // Verified: the file nobody may read; dir/sub/deep was not reached.
    assert_eq!(v.files_expected, FILES - 1);
    assert_eq!(v.files_verified, 1);
}

/// Directories of the tree of the file-handle test, each holding one file.
const MANY_DIRS: u64 = 300;
/// Handles the verification may open beyond those open when it starts: far fewer than
/// [`MANY_DIRS`].
const FD_HEADROOM: u64 = 64;
/// Set in the child process that runs the file-handle test.
const FD_CHILD: &str = "ZAIBEI_DRILL_TEST_FD_CHILD";

fn open_fds() -> u64 {
    fs::read_dir("/proc/self/fd").unwrap().count() as u64
}

/// A tree with more directories than the process may open files verifies in full: the
/// verification does not keep a handle per directory. The file limit applies to the whole
/// process, so the test runs in a child process of its own.
#[test]
fn more_directories_than_the_file_limit_verify() {
    if std::env::var_os(FD_CHILD).is_none() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "verify::tests::more_directories_than_the_file_limit_verify",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(FD_CHILD, "1")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut f = Fixture::new().await;
        let many = f.dir.path().join("many");
        for i in 0..MANY_DIRS {
            let d = many.join(format!("d{i:03}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("f"), format!("file {i}\n")).unwrap();
        }
        let out = crate::fixture::backup_path(&f.repo, &many).await;
        f.reindex().await;
        let target = f.dir.path().join("restore-many");
        let opts = RestoreOptions {
            target: target.clone(),
            workers: 2,
            ..Default::default()
        };
        let restored = restore(
            Arc::clone(&f.repo),
            out.snapshot.tree,
            opts,
            Arc::new(Counters::default()),
        )
        .await
        .unwrap();
        assert!(restored.errors.is_empty(), "{:?}", restored.errors);

        let limit = open_fds() + FD_HEADROOM;
        assert!(
            limit < MANY_DIRS,
            "the test needs more directories than handles"
        );
        let before = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        rustix::process::setrlimit(
            rustix::process::Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(limit),
                maximum: before.maximum,
            },
        )
        .unwrap();
        let repo = Arc::clone(&f.repo);
        let root = out.snapshot.tree;
        let handle = tokio::runtime::Handle::current();
        let verified = tokio::task::spawn_blocking(move || {
            verify_tree(&repo, &handle, root, &target, &[], 2, &Counters::default())
        })
        .await
        .unwrap()
        .unwrap();
        let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, before);
        let problems: Vec<String> = verified
            .problems
            .iter()
            .map(|p| format!("{}: {}", String::from_utf8_lossy(&p.path), p.reason))
            .collect();
        assert!(problems.is_empty(), "{problems:#?}");
        assert_eq!(verified.files_expected, MANY_DIRS);
        assert_eq!(verified.files_verified, MANY_DIRS);
        assert!(verified.dirs_verified > MANY_DIRS);
    });
}
