//! Restore never writes outside its target: hostile trees are refused, planted symlinks are
//! replaced, never followed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::symlink;

use common::*;
use zaibei_crypto::Suite;
use zaibei_format::{Node, NodeKind, Tree};

fn file(name: &[u8], content: Vec<zaibei_format::Id>, size: u64) -> Node {
    let mut n = Node::new(name.to_vec(), NodeKind::File);
    n.mode = 0o644;
    n.content = content;
    n.size = size;
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_and_nothing_escapes() {
    let (store, repo) = new_repo(Suite::Gm).await;
    let blob = store_data(&repo, b"owned".to_vec()).await;
    let bad_names: [&[u8]; 6] = [b"..", b"../escape", b"a/b", b"/etc", b".", b"x\0y"];
    for bad in bad_names {
        // The hostile tree below a good directory, beside a good file.
        let hostile = Tree {
            nodes: vec![file(bad, vec![blob], 5)],
        };
        let hostile_id = store_tree(&repo, vec![hostile.clone()]).await[0];
        let mut d = Node::new(b"d".to_vec(), NodeKind::Dir);
        d.mode = 0o755;
        d.subtree = Some(hostile_id);
        let root = Tree {
            nodes: vec![d, file(b"good", vec![blob], 5)],
        };
        let root_id = store_tree(&repo, vec![root]).await[0];
        let repo = reopen(&store).await;

        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("target");
        let out = restore_to(&repo, root_id, b"/", &target).await;
        assert_eq!(
            out.errors.len(),
            1,
            "hostile name {bad:?}: {:?}",
            out.errors
        );
        assert_eq!(out.errors[0].0, b"/d".to_vec());
        assert_eq!(std::fs::read(target.join("good")).unwrap(), b"owned");
        let beside: Vec<_> = std::fs::read_dir(base.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            beside,
            vec![std::ffi::OsString::from("target")],
            "wrote outside the target for {bad:?}"
        );

        // The hostile tree as the root: the restore is refused with an error naming the tree.
        let err = zaibei_archive::restore::restore(
            std::sync::Arc::clone(&repo),
            hostile_id,
            zaibei_archive::restore::RestoreOptions {
                target: base.path().join("t2"),
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains(&hostile_id.to_hex()), "{err}");
    }
    // Duplicate names.
    let tree = Tree {
        nodes: vec![file(b"same", vec![blob], 5), file(b"same", vec![blob], 5)],
    };
    let id = store_tree(&repo, vec![tree]).await[0];
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let opts = zaibei_archive::restore::RestoreOptions {
        target: t.path().to_path_buf(),
        ..Default::default()
    };
    let err = zaibei_archive::restore::restore(repo, id, opts, Default::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("duplicated"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_in_the_snapshot_or_planted_in_the_target_are_never_followed() {
    let (store, repo) = new_repo(Suite::Intl).await;
    let blob = store_data(&repo, b"payload".to_vec()).await;
    // Snapshot: dir "sub" with file "f"; file "victim"; symlink "abs" -> /etc/passwd and
    // a file named "through" that must not be written through a planted link.
    let sub = Tree {
        nodes: vec![file(b"f", vec![blob], 7)],
    };
    let sub_id = store_tree(&repo, vec![sub]).await[0];
    let mut dir = Node::new(b"sub".to_vec(), NodeKind::Dir);
    dir.mode = 0o755;
    dir.subtree = Some(sub_id);
    let mut link = Node::new(b"abs".to_vec(), NodeKind::Symlink);
    link.target = Some(b"/etc/passwd".to_vec());
    link.size = 11;
    let root = Tree {
        nodes: vec![link, dir, file(b"through", vec![blob], 7)],
    };
    let root_id = store_tree(&repo, vec![root]).await[0];
    let repo = reopen(&store).await;

    let base = tempfile::tempdir().unwrap();
    let outside = base.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("keep"), b"untouched").unwrap();
    let target = base.path().join("target");
    std::fs::create_dir(&target).unwrap();
    // Planted: target/sub -> outside (a directory symlink), target/through -> outside/keep.
    symlink(&outside, target.join("sub")).unwrap();
    symlink(outside.join("keep"), target.join("through")).unwrap();

    let out = restore_to(&repo, root_id, b"/", &target).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"untouched");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        1,
        "something was written outside"
    );
    assert!(
        std::fs::symlink_metadata(target.join("sub"))
            .unwrap()
            .is_dir()
    );
    assert_eq!(std::fs::read(target.join("sub/f")).unwrap(), b"payload");
    assert!(
        std::fs::symlink_metadata(target.join("through"))
            .unwrap()
            .is_file()
    );
    assert_eq!(
        std::fs::read_link(target.join("abs")).unwrap(),
        std::path::Path::new("/etc/passwd")
    );
    // Restoring again over the restored tree (resume) changes nothing and writes nothing.
    let again = restore_to(&repo, root_id, b"/", &target).await;
    assert!(again.errors.is_empty(), "{:?}", again.errors);
    assert_eq!(again.files_written, 0);
    assert_eq!(again.files_unchanged, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_rewrites_only_what_differs() {
    let (store, repo) = new_repo(Suite::Gm).await;
    let src = tempfile::tempdir().unwrap();
    for i in 0..20 {
        std::fs::write(
            src.path().join(format!("f{i}")),
            vec![i as u8; 1000 + i * 997],
        )
        .unwrap();
    }
    let out = backup_path(&repo, src.path()).await;
    assert_checks(&store).await;
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let sub = src.path().as_os_str().as_encoded_bytes().to_vec();
    let first = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert_eq!(first.files_written, 20);
    std::fs::remove_file(t.path().join("f3")).unwrap();
    std::fs::write(t.path().join("f7"), b"corrupted").unwrap();
    std::fs::write(t.path().join("f9"), vec![0u8; 1000 + 9 * 997]).unwrap();
    let second = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert!(second.errors.is_empty(), "{:?}", second.errors);
    assert_eq!((second.files_written, second.files_unchanged), (3, 17));
    for i in 0..20 {
        assert_eq!(
            std::fs::read(t.path().join(format!("f{i}"))).unwrap(),
            vec![i as u8; 1000 + i * 997]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_notices_data_written_into_a_hole() {
    use std::os::unix::fs::FileExt;
    let (store, repo) = new_repo(Suite::Gm).await;
    let src = tempfile::tempdir().unwrap();
    let sparse = src.path().join("sparse");
    let f = std::fs::File::create(&sparse).unwrap();
    f.set_len(8 << 20).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", (8 << 20) - 4).unwrap();
    drop(f);
    let out = backup_path(&repo, src.path()).await;
    assert_checks(&store).await;
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let sub = src.path().as_os_str().as_encoded_bytes().to_vec();
    restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    let restored = t.path().join("sparse");
    let blocks = |p: &std::path::Path| {
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(p).unwrap())
    };
    let sparse_blocks = blocks(&restored);
    assert!(
        sparse_blocks < 64,
        "restore did not keep the file sparse: {sparse_blocks} blocks"
    );
    // Zeros written into the hole: same bytes, different allocation.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&restored)
        .unwrap()
        .write_all_at(&vec![0u8; 1 << 20], 1 << 20)
        .unwrap();
    assert!(blocks(&restored) > sparse_blocks);
    let again = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert_eq!(again.files_written, 1, "the filled hole went unnoticed");
    assert_eq!(blocks(&restored), sparse_blocks);
}

/// Pseudo-random bytes (incompressible, so every chunk is distinct).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Small files go through the batch, a 5 MiB file is hashed in place at its end, a 20 MiB file
/// (more than the 16 MiB read buffer) in place before each refill, a 3 MiB file joins the
/// batch again: every file comes back byte for byte, so every content lists its chunks in
/// order, whichever way they were hashed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_hashed_in_the_batch_and_in_place_come_back_in_order() {
    let (store, repo) = new_repo(Suite::Gm).await;
    let src = tempfile::tempdir().unwrap();
    let files = [
        ("a", 10_000),
        ("b", 5 << 20),
        ("c", 20 << 20),
        ("d", 3 << 20),
        ("e", 7_000),
    ];
    for (i, (name, len)) in files.iter().enumerate() {
        std::fs::write(src.path().join(name), noise(i as u64 + 11, *len)).unwrap();
    }
    let out = backup_path(&repo, src.path()).await;
    assert_eq!(out.snapshot.summary.files_new, files.len() as u64);
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let sub = src.path().as_os_str().as_encoded_bytes().to_vec();
    let restored = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    for (i, (name, len)) in files.iter().enumerate() {
        assert!(
            std::fs::read(t.path().join(name)).unwrap() == noise(i as u64 + 11, *len),
            "{name} differs"
        );
    }
    assert_checks(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_file_is_fetched_and_checked_a_group_of_blobs_at_a_time() {
    use std::os::unix::fs::FileExt;
    let (store, repo) = new_repo(Suite::Gm).await;
    let src = tempfile::tempdir().unwrap();
    // 20 MiB of pseudo-random bytes: about twenty blobs, more than one group of each kind
    // (fetched ahead and checked together, 4 MiB at a time).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..20 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    std::fs::write(src.path().join("big"), &data).unwrap();
    let out = backup_path(&repo, src.path()).await;
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let sub = src.path().as_os_str().as_encoded_bytes().to_vec();
    let first = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert!(first.errors.is_empty(), "{:?}", first.errors);
    assert_eq!((first.files_written, first.files_verified), (1, 1));
    assert!(std::fs::read(t.path().join("big")).unwrap() == data);

    // One byte wrong in the first group, then one in the last: each time the check notices
    // and the file is written again.
    for offset in [3u64, (20 << 20) - 5] {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(t.path().join("big"))
            .unwrap();
        f.write_all_at(&[data[offset as usize] ^ 0x80], offset)
            .unwrap();
        drop(f);
        let again = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
        assert!(again.errors.is_empty(), "{:?}", again.errors);
        assert_eq!((again.files_written, again.files_unchanged), (1, 0));
        assert!(std::fs::read(t.path().join("big")).unwrap() == data);
    }
    let last = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert_eq!((last.files_written, last.files_unchanged), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_and_modes_come_out_as_in_the_snapshot_whatever_creation_gave() {
    use std::os::unix::fs::MetadataExt;
    let (store, repo) = new_repo(Suite::Gm).await;
    let blob = store_data(&repo, b"owned".to_vec()).await;
    let (uid, gid) = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let root_user = uid == 0;
    // Modes creation gets right under the usual umask, modes it cannot (write bits for others,
    // setuid, setgid, sticky, none at all), and, as root, owners other than the creator's.
    let cases: Vec<(&[u8], u32, u32, u32)> = vec![
        (b"a-plain", 0o644, uid, gid),
        (b"b-exec", 0o755, uid, gid),
        (b"c-shared", 0o666, uid, gid),
        (b"d-setuid", 0o4755, uid, gid),
        (b"e-sticky", 0o1640, uid, gid),
        (b"f-none", 0o000, uid, gid),
        (
            b"g-other",
            0o640,
            if root_user { 4321 } else { uid },
            if root_user { 8765 } else { gid },
        ),
        (
            b"h-other-setgid",
            0o2750,
            if root_user { 4321 } else { uid },
            if root_user { 8765 } else { gid },
        ),
    ];
    let nodes = cases
        .iter()
        .map(|(name, mode, u, g)| {
            let mut n = file(name, vec![blob], 5);
            n.mode = *mode;
            n.uid = *u;
            n.gid = *g;
            n
        })
        .collect();
    let root_id = store_tree(&repo, vec![Tree { nodes }]).await[0];
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let out = restore_to(&repo, root_id, b"/", t.path()).await;
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    assert_eq!(out.files_written, cases.len() as u64);
    for (name, mode, u, g) in &cases {
        let path = t.path().join(std::str::from_utf8(name).unwrap());
        let md = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(md.mode() & 0o7777, *mode, "mode of {path:?}");
        assert_eq!((md.uid(), md.gid()), (*u, *g), "owner of {path:?}");
        // Without read permission only root reads it back.
        if root_user || mode & 0o400 != 0 {
            assert_eq!(std::fs::read(&path).unwrap(), b"owned");
        }
    }
}

/// Batches of small files with a few larger ones among them: the larger blobs' ids are left
/// part hashed from one batch to the next, and their files wait for them. Every file comes
/// back byte for byte, and a file sharing its content with one that waits does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_whose_blobs_are_checked_over_several_batches_come_back_whole() {
    let (store, repo) = new_repo(Suite::Gm).await;
    let src = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..120u64 {
        let len = match i % 10 {
            0 => 900_000,
            5 => 700_000,
            _ => 2_000 + (i as usize * 997) % 30_000,
        };
        files.push((format!("f{i:03}"), i + 1, len));
    }
    // The same content as a file that waits, under another name.
    files.push(("same-as-f000".into(), 1, 900_000));
    // Many copies of one larger content: a blob already held or checked is not fetched again,
    // and its files do not wait for ever.
    for i in 0..300 {
        files.push((format!("z-copy{i:03}"), 7777, 600_000));
    }
    for (name, seed, len) in &files {
        std::fs::write(src.path().join(name), noise(*seed, *len)).unwrap();
    }
    let out = backup_path(&repo, src.path()).await;
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let sub = src.path().as_os_str().as_encoded_bytes().to_vec();
    let restored = restore_to(&repo, out.snapshot.tree, &sub, t.path()).await;
    assert!(restored.errors.is_empty(), "{:?}", restored.errors);
    assert_eq!(restored.files_written, files.len() as u64);
    for (name, seed, len) in &files {
        assert!(
            std::fs::read(t.path().join(name)).unwrap() == noise(*seed, *len),
            "{name} differs"
        );
    }
}

/// Blobs of a few hundred KiB to 1.5 MiB, stored together; the one at `lying` is stored under
/// the id of other bytes, as a damaged or forged repository could have it.
async fn store_blobs(
    repo: &std::sync::Arc<zaibei_repo::IndexedRepository>,
    count: usize,
    lying: usize,
) -> Vec<(zaibei_format::Id, Vec<u8>)> {
    let saver = zaibei_repo::BlobSaver::start(std::sync::Arc::clone(repo), 1)
        .await
        .unwrap();
    let s2 = saver.clone();
    let blobs = tokio::task::spawn_blocking(move || {
        (0..count)
            .map(|i| {
                let data = noise(
                    0x9e37_79b9_7f4a_7c15 ^ ((i as u64) << 8),
                    200_000 + (i * 389_017) % 1_300_000,
                );
                let id = if i == lying {
                    s2.blob_id(b"other bytes").unwrap()
                } else {
                    s2.blob_id(&data).unwrap()
                };
                s2.save_blob(zaibei_format::PackKind::Data, id, &data)
                    .unwrap();
                (id, data)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    saver.finish().await.unwrap();
    blobs
}

/// Large files are fetched a window at a time, and the last blobs of a window are checked
/// beside the next window's. A file that uses some blobs several times, near each other and
/// far apart, comes back byte for byte; a file with a blob whose bytes do not hash to its id
/// is reported, naming that blob, and nothing of it is kept as good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_come_back_whole_across_windows_and_a_lying_blob_is_named() {
    let (store, repo) = new_repo(Suite::Gm).await;
    let blobs = store_blobs(&repo, 41, 40).await;
    let lying_id = blobs[40].0;
    // Sixty-one blobs (about 50 MiB): every good blob, some twice in a row, some again
    // much later.
    let mut order: Vec<usize> = (0..60).map(|k| (k * 7 + k / 9) % 40).collect();
    order.insert(5, order[4]);
    let mut repeats = file(b"repeats", vec![], 0);
    let mut expected = Vec::new();
    for &i in &order {
        repeats.content.push(blobs[i].0);
        expected.extend_from_slice(&blobs[i].1);
    }
    repeats.size = expected.len() as u64;
    // Twenty good blobs with the lying one among them.
    let mut lying = file(b"lying", vec![], 0);
    for i in (0..20).chain([40]).chain(20..25) {
        lying.content.push(blobs[i].0);
        lying.size += blobs[i].1.len() as u64;
    }
    let root_id = store_tree(
        &repo,
        vec![Tree {
            nodes: vec![lying, repeats],
        }],
    )
    .await[0];
    let repo = reopen(&store).await;
    let t = tempfile::tempdir().unwrap();
    let out = restore_to(&repo, root_id, b"/", t.path()).await;
    assert!(
        std::fs::read(t.path().join("repeats")).unwrap() == expected,
        "the file with repeated blobs differs"
    );
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
    let (path, reason) = &out.errors[0];
    assert_eq!(path, b"/lying");
    assert!(
        reason.contains(&lying_id.to_string()),
        "the error names the blob: {reason}"
    );
}
