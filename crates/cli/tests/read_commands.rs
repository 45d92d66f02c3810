//! The reading commands (ls, find, dump, diff, cat, stats) against a real repository made by
//! the real binary: two snapshots of a small tree with a sparse file, a symlink, a
//! subdirectory and a non-UTF-8 name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const SPARSE_SIZE: u64 = 3 << 20;

struct Env {
    _dir: tempfile::TempDir,
    repo: PathBuf,
    src: PathBuf,
    /// `src` as the snapshots show it.
    s: String,
}

impl Env {
    fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        Command::new(env!("CARGO_BIN_EXE_zaibei"))
            .args(args)
            .env("ZAIBEI_REPOSITORY", &self.repo)
            .env("ZAIBEI_PASSWORD", "test password")
            .env_remove("ZAIBEI_PASSWORD_FILE")
            .env_remove("ZAIBEI_LOG")
            .output()
            .unwrap()
    }

    /// Runs and expects success; returns standard output.
    fn ok<I, S>(&self, args: I) -> Vec<u8>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<OsString> = args
            .into_iter()
            .map(|a| a.as_ref().to_os_string())
            .collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "zaibei {args:?} failed ({:?}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    fn text(&self, args: &[&str]) -> String {
        String::from_utf8(self.ok(args)).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_slice(&self.ok(args)).unwrap()
    }
}

fn bad_name() -> OsString {
    OsString::from_vec(b"bad\xff".to_vec())
}

fn sparse_bytes() -> Vec<u8> {
    let mut v = vec![0u8; SPARSE_SIZE as usize];
    v[1 << 20..(1 << 20) + 3].copy_from_slice(b"XYZ");
    v
}

/// Two snapshots: the first of the initial tree, the second after changes.
fn setup() -> (Env, String) {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.txt"), "hello\n").unwrap();
    std::fs::write(src.join("sub/b.txt"), "world").unwrap();
    std::fs::write(src.join(bad_name()), "bad").unwrap();
    std::fs::write(src.join("t"), "a file, later a directory").unwrap();
    std::os::unix::fs::symlink("a.txt", src.join("link")).unwrap();
    let f = std::fs::File::create(src.join("sparse")).unwrap();
    f.set_len(SPARSE_SIZE).unwrap();
    f.write_all_at(b"XYZ", 1 << 20).unwrap();
    drop(f);
    let src = std::fs::canonicalize(&src).unwrap();
    let env = Env {
        repo: dir.path().join("repo"),
        s: src.to_str().unwrap().to_owned(),
        src,
        _dir: dir,
    };
    env.ok(["init", "--insecure-test-kdf", "-q"]);
    env.ok([OsStr::new("backup"), OsStr::new("-q"), env.src.as_os_str()]);
    let first = env.json(&["snapshots", "--json"])[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::write(env.src.join("a.txt"), "changed!\n").unwrap();
    std::fs::remove_file(env.src.join("sub/b.txt")).unwrap();
    std::fs::create_dir(env.src.join("new")).unwrap();
    std::fs::write(env.src.join("new/c.txt"), "c\n").unwrap();
    std::fs::remove_file(env.src.join("t")).unwrap();
    std::fs::create_dir(env.src.join("t")).unwrap();
    env.ok([OsStr::new("backup"), OsStr::new("-q"), env.src.as_os_str()]);
    (env, first)
}

#[test]
fn read_commands() {
    let (env, first) = setup();
    let s = env.s.clone();
    let short = &first[..8];
    let latest = env.json(&["snapshots", "--json"])[1]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // ls: every entry below the path, recursively, in order.
    let listed = env.text(&["ls", &format!("latest:{s}")]);
    let expected: Vec<String> = [
        "/a.txt",
        "/bad\u{FFFD}",
        "/link",
        "/new",
        "/new/c.txt",
        "/sparse",
        "/sub",
        "/t",
    ]
    .iter()
    .map(|p| format!("{s}{p}"))
    .collect();
    assert_eq!(listed.lines().collect::<Vec<_>>(), expected);
    let whole = env.text(&["ls", short]);
    assert!(whole.lines().any(|l| l == format!("{s}/sub/b.txt")));
    assert!(whole.lines().any(|l| l == s));
    let long = env.text(&["ls", "-l", &format!("latest:{s}")]);
    let link = long.lines().find(|l| l.contains("/link")).unwrap();
    assert!(
        link.starts_with("lrwxrwxrwx") && link.ends_with("-> a.txt"),
        "{link}"
    );
    assert!(
        long.lines()
            .any(|l| l.starts_with("drwx") && l.ends_with("/new"))
    );
    let nodes: Vec<Value> = env
        .text(&["ls", "--json", &format!("latest:{s}")])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(nodes.len(), expected.len());
    let by_path = |p: &str| {
        nodes
            .iter()
            .find(|n| n["path"] == format!("{s}{p}"))
            .unwrap()
    };
    assert_eq!(by_path("/sparse")["size"], SPARSE_SIZE);
    assert_eq!(by_path("/sparse")["type"], "file");
    assert_eq!(by_path("/link")["type"], "symlink");
    assert_eq!(by_path("/link")["target"], "a.txt");
    assert_eq!(by_path("/a.txt")["content_blobs"], 1);
    assert_eq!(by_path("/new")["type"], "dir");
    let bad = by_path("/bad\u{FFFD}");
    assert!(bad["path_hex"].as_str().unwrap().ends_with("626164ff"));
    for key in [
        "mode", "uid", "gid", "mtime", "atime", "ctime", "inode", "links",
    ] {
        assert!(!bad[key].is_null(), "{key} missing");
    }

    // find: names (all snapshots, one, case-insensitive) and paths.
    let found = env.text(&["find", "*.txt"]);
    let mut lines: Vec<&str> = found.lines().collect();
    lines.sort();
    let mut want = vec![
        format!("{short} {s}/a.txt"),
        format!("{short} {s}/sub/b.txt"),
        format!("{} {s}/a.txt", &latest[..8]),
        format!("{} {s}/new/c.txt", &latest[..8]),
    ];
    want.sort();
    assert_eq!(lines, want);
    assert_eq!(
        env.text(&["find", "-i", "B.TXT", "--snapshot", short]),
        format!("{short} {s}/sub/b.txt\n")
    );
    assert_eq!(
        env.text(&[
            "find",
            "*.txt",
            "--snapshot",
            "latest",
            "--path-match",
            "**/new/*"
        ]),
        format!("{} {s}/new/c.txt\n", &latest[..8])
    );
    assert_eq!(env.text(&["find", "--path-match", "*.txt"]), "");
    let m: Value =
        serde_json::from_slice(&env.ok(["find", "--json", "-s", "latest", "c.txt"])).unwrap();
    assert_eq!(m["snapshot"], latest.as_str());
    assert_eq!(m["path"], format!("{s}/new/c.txt"));

    // dump: files byte for byte (holes as zeros), then a directory as tar.
    assert_eq!(env.ok(["dump", short, &format!("{s}/a.txt")]), b"hello\n");
    assert_eq!(
        env.ok(["dump", "latest", &format!("{s}/a.txt")]),
        b"changed!\n"
    );
    assert!(env.ok(["dump", "latest", &format!("{s}/sparse")]) == sparse_bytes());
    let mut bad_path = env.s.clone().into_bytes();
    bad_path.extend_from_slice(b"/bad\xff");
    let bad_arg = OsString::from_vec(bad_path);
    assert_eq!(
        env.ok([OsStr::new("dump"), OsStr::new("latest"), &bad_arg]),
        b"bad"
    );
    let missing = env.run(["dump", "latest", &format!("{s}/nope")]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("is not in the snapshot"));
    let tar = env.ok(["dump", "latest", &s]);
    let out = tempfile::tempdir().unwrap();
    tar::Archive::new(tar.as_slice())
        .unpack(out.path())
        .unwrap();
    let o = out.path();
    assert_eq!(std::fs::read(o.join("a.txt")).unwrap(), b"changed!\n");
    assert_eq!(std::fs::read(o.join("new/c.txt")).unwrap(), b"c\n");
    assert_eq!(std::fs::read(o.join(bad_name())).unwrap(), b"bad");
    assert!(std::fs::read(o.join("sparse")).unwrap() == sparse_bytes());
    assert_eq!(
        std::fs::read_link(o.join("link")).unwrap(),
        Path::new("a.txt")
    );
    assert!(o.join("t").is_dir() && !o.join("sub/b.txt").exists());

    // diff: exact lines, then with metadata, then as JSON.
    let d = env.text(&["diff", short, "latest"]);
    let want = format!(
        "M    {s}/a.txt\n+    {s}/new/\n+    {s}/new/c.txt\n-    {s}/sub/b.txt\nT    {s}/t/\n\n\
         2 added, 1 removed, 1 modified, 1 type changed\n"
    );
    assert_eq!(d, want);
    let dm = env.text(&["diff", "--metadata", short, "latest"]);
    assert!(dm.lines().any(|l| l == format!("U    {s}/")), "{dm}");
    let changes: Vec<Value> = env
        .text(&["diff", "--json", short, "latest"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let summary = changes.last().unwrap();
    assert_eq!(summary["message_type"], "summary");
    assert_eq!(
        (summary["added"].as_u64(), summary["removed"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(changes[0]["modifier"], "M");
    assert_eq!(changes[0]["what"], serde_json::json!(["size", "content"]));

    // cat: every kind of object.
    let config = env.json(&["cat", "config"]);
    assert_eq!(config["suite"], "gm");
    assert!(config["chunker"]["avg"].as_u64().unwrap() > 0);
    assert!(config["sealed_seed_length"].as_u64().unwrap() > 0);
    assert!(config.get("seed").is_none() && config.get("sealed_seed").is_none());
    let key = env.json(&["cat", "key"]);
    assert_eq!(key["scope"], "full");
    assert_eq!(key["current"], true);
    assert!(key["kdf"]["alg"].is_string());
    assert!(key.get("wrapped").is_none());
    let key_id = key["id"].as_str().unwrap();
    assert_eq!(env.json(&["cat", "key", &key_id[..6]])["id"], key_id);
    let snap = env.json(&["cat", "snapshot", "latest"]);
    assert_eq!(snap["id"], latest.as_str());
    assert_eq!(snap["paths"][0], s.as_str());
    assert_eq!(snap["parent"], first.as_str());
    let tree_id = snap["tree"].as_str().unwrap().to_owned();
    let root = env.json(&["cat", "tree", &tree_id[..10]]);
    assert_eq!(root["id"], tree_id.as_str());
    assert_eq!(root["nodes"][0]["type"], "dir");
    let dir = env.json(&["cat", "tree", &format!("latest:{s}")]);
    let nodes = dir["nodes"].as_array().unwrap();
    let bad = nodes.iter().find(|n| n["name"] == "bad\u{FFFD}").unwrap();
    assert_eq!(bad["name_hex"], "626164ff");
    let a = nodes.iter().find(|n| n["name"] == "a.txt").unwrap();
    assert!(a.get("name_hex").is_none());
    let blob = a["content"][0].as_str().unwrap();
    assert_eq!(env.ok(["cat", "blob", blob]), b"changed!\n");
    assert_eq!(env.ok(["cat", "blob", &blob[..12]]), b"changed!\n");
    let refs = env.json(&["cat", "refs", &tree_id]);
    assert_eq!(refs["trees"].as_array().unwrap().len(), 1);
    let index_name = std::fs::read_dir(env.repo.join("index"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let index = env.json(&["cat", "index", index_name.to_str().unwrap()]);
    let pack = index["packs"][0]["id"].as_str().unwrap().to_owned();
    assert!(!index["packs"][0]["blobs"].as_array().unwrap().is_empty());
    let header = env.json(&["cat", "pack", &pack[..10]]);
    assert_eq!(header["id"], pack.as_str());
    assert_eq!(header["indexed"], true);
    assert_eq!(header["blobs"], index["packs"][0]["blobs"]);
    let nothing = env.run(["cat", "snapshot"]);
    assert_eq!(nothing.status.code(), Some(2));

    // stats: both modes.
    let depth = env.src.components().count() as u64 - 1;
    let st = env.json(&["stats", "--json", "latest"]);
    assert_eq!(st["mode"], "restore-size");
    assert_eq!(st["restore"]["files"], 4);
    assert_eq!(st["restore"]["dirs"], depth + 3); // sub, new, t
    assert_eq!(st["restore"]["others"], 1);
    assert_eq!(st["restore"]["size"], 9 + 3 + 2 + SPARSE_SIZE);
    let all = env.json(&["stats", "--json"]);
    assert_eq!(all["snapshots"], 2);
    assert_eq!(all["restore"]["files"], 4 + 5);
    let raw = env.json(&["stats", "--json", "--mode", "raw-data"]);
    let r = &raw["raw"];
    assert!(r["blobs"].as_u64().unwrap() >= 6, "{raw}");
    assert!(r["raw_size"].as_u64().unwrap() > 0);
    assert!(r["stored_size"].as_u64().unwrap() > 0);
    assert!(r["dedup_ratio"].as_f64().unwrap() > 1.0);
    assert_eq!(r["missing_blobs"], 0);
    let repo = &raw["repository"];
    assert_eq!(repo["snapshots"], 2);
    assert!(repo["packs"].as_u64().unwrap() >= 3);
    assert!(repo["data_blobs"].as_u64().unwrap() >= r["blobs"].as_u64().unwrap());
    let text = env.text(&["stats", "--mode", "raw-data"]);
    assert!(
        text.contains("Deduplication:") && text.contains("Packs:"),
        "{text}"
    );
}

/// Flips one byte inside every blob of every pack of `kind`.
fn corrupt_packs(env: &Env, kind: &str) {
    for entry in std::fs::read_dir(env.repo.join("index")).unwrap() {
        let name = entry.unwrap().file_name();
        let index = env.json(&["cat", "index", name.to_str().unwrap()]);
        for p in index["packs"].as_array().unwrap() {
            if p["kind"] != kind {
                continue;
            }
            let id = p["id"].as_str().unwrap();
            let path = env.repo.join("data").join(&id[..2]).join(id);
            let mut perms = std::fs::metadata(&path).unwrap().permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&path, perms).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            for b in p["blobs"].as_array().unwrap() {
                let (offset, length) =
                    (b["offset"].as_u64().unwrap(), b["length"].as_u64().unwrap());
                bytes[(offset + length / 2) as usize] ^= 0x55;
            }
            std::fs::write(&path, bytes).unwrap();
        }
    }
}

#[test]
fn damaged_objects_are_named() {
    let (env, _) = setup();
    let s = env.s.clone();
    corrupt_packs(&env, "data");
    let out = env.run(["dump", "latest", &format!("{s}/a.txt")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("data blob") && err.contains("a.txt"), "{err}");
    // Listing needs no file data.
    env.ok(["ls", "latest"]);
    corrupt_packs(&env, "tree");
    let out = env.run(["ls", "latest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("tree blob"), "{err}");
}
