//! Helpers shared by the end-to-end tests (`e2e.rs`, `e2e_real_tree.rs`): the [`Env`] that
//! runs the real `zaibei` binary against a fresh repository, the generated source tree with
//! every kind of entry, and comparisons made with tools independent of zaibei (rsync,
//! getfattr, getfacl, stat, du, and `scripts/e2e/treecmp.py`).
//!
//! Cargo also builds this file as a test target of its own; it holds no tests.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use rustix::fs::{AtFlags, CWD, FileType, Mode, Timespec, Timestamps, XattrFlags};
use serde_json::Value;
use tempfile::TempDir;

/// The password of every test repository.
pub const PASSWORD: &str = "e2e password: 灾备 ✓";

/// The tools the end-to-end tests compare with; `scripts/test` installs them.
pub const TOOLS: &[&str] = &[
    "rsync", "getfattr", "setfattr", "getfacl", "setfacl", "python3", "stat", "du", "find",
    "xargs", "setpriv", "sh", "bash",
];

/// The independent tree walker shipped with the tests.
pub const TREECMP: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/e2e/treecmp.py");

/// Exit codes of `zaibei` (README, "Exit codes").
pub mod code {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other error.
    pub const ERROR: i32 = 1;
    /// Wrong usage.
    pub const USAGE: i32 = 2;
    /// Some entries could not be backed up or restored.
    pub const PARTIAL: i32 = 3;
    /// The repository is damaged.
    pub const DAMAGED: i32 = 4;
    /// No repository at the location.
    pub const NO_REPOSITORY: i32 = 10;
    /// Wrong password.
    pub const WRONG_PASSWORD: i32 = 12;
    /// The repository's format is newer than this zaibei.
    pub const UNSUPPORTED_VERSION: i32 = 13;
}

/// Writes a line to the real standard error, past the test harness's capture, so that
/// timings show in `scripts/test` output.
pub fn note(msg: &str) {
    let _ = writeln!(std::io::stderr(), "[e2e] {msg}");
}

/// Runs `f` and notes how long it took.
pub fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let v = f();
    note(&format!("{what}: {:.1}s", start.elapsed().as_secs_f64()));
    v
}

/// Fails (never skips) when a tool the tests need is not installed.
pub fn require_tools() {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .collect();
    assert!(
        missing.is_empty(),
        "the end-to-end tests need {missing:?}; run them through scripts/test, which installs them"
    );
    assert!(
        rustix::process::geteuid().is_root(),
        "the end-to-end tests must run as root (devices, ownership, trusted xattrs)"
    );
}

/// A fresh scratch directory below Cargo's per-target temporary directory (a real disk,
/// unlike a tmpfs /tmp on some machines).
pub fn scratch() -> TempDir {
    tempfile::Builder::new()
        .prefix("e2e-")
        .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
        .unwrap()
}

/// Exit code, standard output and standard error of a command, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Standard output and standard error together, lossily decoded.
pub fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The `"message_type":"summary"` line of a `--json` run.
pub fn summary(out: &Output) -> Value {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["message_type"] == "summary")
        .unwrap_or_else(|| panic!("no JSON summary line in the output\n{}", describe(out)))
}

/// A JSON number field of a summary.
pub fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("summary has no number {field:?}: {v}"))
}

/// A test repository and the `zaibei` binary that works on it.
pub struct Env {
    /// Scratch directory holding the repository and anything else the test makes.
    pub dir: TempDir,
    /// The repository (`dir/repo`).
    pub repo: PathBuf,
    /// Its password, given to every run through `ZAIBEI_PASSWORD`.
    pub password: String,
    /// The binary under test.
    pub bin: PathBuf,
    /// Environment of every run beyond the password: `(name, Some(value))` sets a variable,
    /// `(name, None)` removes an inherited one. Empty for [`Env::init`]; [`Env::init_at`]
    /// uses it for object storage credentials and the metadata cache.
    pub extra_env: Vec<(String, Option<String>)>,
    /// Global options given right after `-r REPO` in every run (e.g. `--retries 12`).
    pub extra_args: Vec<String>,
}

impl Env {
    /// A scratch directory with a new repository (cheap KDF) in it.
    pub fn init() -> Env {
        Env::init_in(scratch())
    }

    /// A new repository in `dir/repo`.
    pub fn init_in(dir: TempDir) -> Env {
        Env::init_in_with(dir, &[])
    }

    /// A new repository in `dir/repo`, made with `init --insecure-test-kdf INIT_ARGS...`.
    pub fn init_in_with(dir: TempDir, init_args: &[&str]) -> Env {
        require_tools();
        let env = Env {
            repo: dir.path().join("repo"),
            dir,
            password: PASSWORD.to_owned(),
            bin: PathBuf::from(env!("CARGO_BIN_EXE_zaibei")),
            extra_env: Vec::new(),
            extra_args: Vec::new(),
        };
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"init", &"--insecure-test-kdf"];
        for a in init_args {
            args.push(a);
        }
        env.ok(&args);
        env
    }

    /// A new repository (cheap KDF) at `location`, any location `-r` takes (e.g.
    /// `s3:http://HOST:PORT/BUCKET/PREFIX`), run with `extra_env` (see [`Env::extra_env`])
    /// and the global options `extra_args`; a fresh scratch directory for everything else.
    /// [`Env::objects`] only works for local repositories.
    pub fn init_at(
        location: &str,
        extra_env: Vec<(String, Option<String>)>,
        extra_args: Vec<String>,
    ) -> Env {
        require_tools();
        let env = Env {
            repo: PathBuf::from(location),
            dir: scratch(),
            password: PASSWORD.to_owned(),
            bin: PathBuf::from(env!("CARGO_BIN_EXE_zaibei")),
            extra_env,
            extra_args,
        };
        env.ok(&[&"init", &"--insecure-test-kdf"]);
        env
    }

    /// A path inside the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `zaibei -r REPO` with the password in the environment and nothing inherited that
    /// could point it elsewhere.
    pub fn command(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env_remove("ZAIBEI_REPOSITORY")
            .env_remove("ZAIBEI_PASSWORD_FILE")
            .env_remove("ZAIBEI_LOG")
            .env("ZAIBEI_PASSWORD", &self.password)
            .arg("-r")
            .arg(&self.repo)
            .args(&self.extra_args)
            .stdin(Stdio::null());
        for (name, value) in &self.extra_env {
            match value {
                Some(v) => c.env(name, v),
                None => c.env_remove(name),
            };
        }
        c
    }

    /// Runs `zaibei -r REPO ARGS...`.
    pub fn run(&self, args: &[&dyn AsRef<OsStr>]) -> Output {
        let mut c = self.command();
        for a in args {
            c.arg(a.as_ref());
        }
        c.output().expect("starting zaibei")
    }

    /// Runs `zaibei -r REPO ARGS...` with the time zone `TZ`.
    pub fn run_with_tz(&self, tz: &str, args: &[&dyn AsRef<OsStr>]) -> Output {
        let mut c = self.command();
        c.env("TZ", tz);
        for a in args {
            c.arg(a.as_ref());
        }
        c.output().expect("starting zaibei")
    }

    /// Runs and asserts the exit code.
    pub fn expect(&self, code: i32, args: &[&dyn AsRef<OsStr>]) -> Output {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "zaibei {:?} should exit with {code}\n{}",
            args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
            describe(&out)
        );
        out
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&dyn AsRef<OsStr>]) -> Output {
        self.expect(code::OK, args)
    }

    /// `backup --json PATHS...`, asserting success; the summary.
    pub fn backup(&self, paths: &[&Path]) -> Value {
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![&"--json", &"backup"];
        for p in paths {
            args.push(p);
        }
        let s = summary(&self.ok(&args));
        assert_eq!(num(&s, "skipped"), 0, "backup skipped entries: {s}");
        s
    }

    /// `restore --json SPEC --target TARGET EXTRA...`, asserting success; the summary.
    pub fn restore(&self, spec: &str, target: &Path, extra: &[&str]) -> Value {
        let mut args: Vec<&dyn AsRef<OsStr>> =
            vec![&"--json", &"restore", &spec, &"--target", &target];
        for e in extra {
            args.push(e);
        }
        let s = summary(&self.ok(&args));
        assert_eq!(s["errors"], Value::Array(Vec::new()), "restore errors: {s}");
        s
    }

    /// Ids of the snapshots, oldest first, from `snapshots --json`.
    pub fn snapshot_ids(&self) -> Vec<String> {
        let out = self.ok(&[&"--json", &"snapshots"]);
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("snapshots --json is not JSON: {e}\n{}", describe(&out)));
        v.as_array()
            .expect("snapshots --json gives an array")
            .iter()
            .map(|s| s["id"].as_str().expect("snapshot id").to_owned())
            .collect()
    }

    /// The stored objects of one kind (`data`, `index`, `snapshots`, `keys`), by file name.
    pub fn objects(&self, kind: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk_files(&self.repo.join(kind), &mut out);
        out.sort();
        out
    }
}

fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let t = e.file_type().unwrap();
        if t.is_dir() {
            walk_files(&e.path(), out);
        } else if t.is_file() {
            out.push(e.path());
        }
    }
}

/// Where `restore latest --target TARGET` puts the snapshot path `source`.
pub fn restored(target: &Path, source: &Path) -> PathBuf {
    assert!(source.is_absolute());
    target.join(source.strip_prefix("/").unwrap())
}

// ---------------------------------------------------------------------------------------
// Independent tools.
// ---------------------------------------------------------------------------------------

/// Runs a bash script (with `-euo pipefail`) in `cwd`; standard output, asserting success.
pub fn bash(cwd: &Path, script: &str) -> Vec<u8> {
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", script])
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .expect("starting bash");
    assert!(
        out.status.success(),
        "`{script}` in {} failed\n{}",
        cwd.display(),
        describe(&out)
    );
    out.stdout
}

/// Runs a program; its output, asserting success.
pub fn tool(program: &str, args: &[&dyn AsRef<OsStr>]) -> Output {
    let mut c = Command::new(program);
    for a in args {
        c.arg(a.as_ref());
    }
    let out = c.stdin(Stdio::null()).output().expect("starting a tool");
    assert!(
        out.status.success(),
        "{program} {:?} failed\n{}",
        args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
        describe(&out)
    );
    out
}

/// `stat` of every entry below `root` (run inside it, so names are relative), one record
/// per entry, sorted: type and mode, owner, size, links, device numbers, access and
/// modification times in nanoseconds, and blocks for all but directories. Inode numbers
/// and change times are left out: they cannot be restored.
pub fn stat_dump(root: &Path) -> Vec<Vec<u8>> {
    const COMMON: &str = "%n|%f|%a|%u|%g|%s|%h|%t|%T|%X|%x|%Y|%y";
    let script = format!(
        "find . -type d -print0 | xargs -0 -r stat --printf '{COMMON}\\0'; \
         find . ! -type d -print0 | xargs -0 -r stat --printf '{COMMON}|%b\\0'"
    );
    let mut v: Vec<Vec<u8>> = bash(root, &script)
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    v.sort();
    v
}

/// Splits a getfattr/getfacl dump into its blank-line separated blocks, sorted (the order
/// of entries follows each directory's listing order, which differs between two trees).
fn blocks(dump: &[u8]) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = Vec::new();
    let mut block: Vec<u8> = Vec::new();
    for line in dump.split(|&b| b == b'\n') {
        if line.is_empty() {
            if !block.is_empty() {
                v.push(std::mem::take(&mut block));
            }
        } else {
            if !block.is_empty() {
                block.extend_from_slice(" ⏎ ".as_bytes());
            }
            block.extend_from_slice(line);
        }
    }
    if !block.is_empty() {
        v.push(block);
    }
    v.sort();
    v
}

/// Every extended attribute of every entry below `root` (symlinks themselves included),
/// as `getfattr -R -h -d -m -` prints them.
pub fn xattr_dump(root: &Path) -> Vec<Vec<u8>> {
    blocks(&bash(root, "getfattr -R -h -d -m - . 2>&1"))
}

/// Every POSIX ACL (access and default) below `root`, as `getfacl -R -P` prints them.
pub fn acl_dump(root: &Path) -> Vec<Vec<u8>> {
    blocks(&bash(root, "getfacl -R -P . 2>&1"))
}

/// `du -s` (blocks allocated, in KiB) and `du -s --apparent-size` (bytes) of a tree.
pub fn du(root: &Path) -> (u64, u64) {
    let parse = |out: Vec<u8>| -> u64 {
        let s = String::from_utf8(out).unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    };
    (
        parse(bash(root, "du -s -k .")),
        parse(bash(root, "du -s -b --apparent-size .")),
    )
}

/// Asserts that two sorted dumps are equal, printing what differs when they are not.
pub fn assert_same(what: &str, left: &[Vec<u8>], right: &[Vec<u8>]) {
    if left == right {
        return;
    }
    let (mut i, mut j) = (0, 0);
    let mut diff = Vec::new();
    while i < left.len() || j < right.len() {
        let take_left = j >= right.len() || (i < left.len() && left[i] < right[j]);
        let take_right = i >= left.len() || (j < right.len() && right[j] < left[i]);
        if take_left {
            diff.push(format!("- {}", left[i].escape_ascii()));
            i += 1;
        } else if take_right {
            diff.push(format!("+ {}", right[j].escape_ascii()));
            j += 1;
        } else {
            i += 1;
            j += 1;
        }
    }
    let shown = diff.len().min(200);
    panic!(
        "{what} differ (- source, + restored; {} lines differ):\n{}",
        diff.len(),
        diff[..shown].join("\n")
    );
}

/// Asserts that `rsync -naHAXS --checksum --itemize-changes` finds nothing to do: contents
/// (by checksum), hard links, ACLs, xattrs, sparseness, permissions, owners, groups, times,
/// devices, specials and symlinks all agree.
pub fn assert_rsync_clean(src: &Path, dst: &Path) {
    let mut s = src.as_os_str().to_owned();
    s.push("/");
    let mut d = dst.as_os_str().to_owned();
    d.push("/");
    let out = Command::new("rsync")
        .args(["-naHAXS", "--checksum", "--itemize-changes"])
        .arg(&s)
        .arg(&d)
        .stdin(Stdio::null())
        .output()
        .expect("starting rsync");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "rsync -naHAXS --checksum --itemize-changes {} {} found differences\n{}",
        src.display(),
        dst.display(),
        describe(&out)
    );
}

/// Runs the independent walker `scripts/e2e/treecmp.py` (directory handles only, so it
/// works beyond PATH_MAX); asserts that the trees match. With `contents_only` the roots'
/// own metadata is not compared. Returns its report line.
pub fn assert_treecmp_clean(left: &Path, right: &Path, contents_only: bool) -> String {
    let mut c = Command::new("python3");
    c.arg(TREECMP);
    if contents_only {
        c.arg("--contents-only");
    }
    let out = c
        .arg(left)
        .arg(right)
        .stdin(Stdio::null())
        .output()
        .expect("starting python3");
    assert!(
        out.status.success(),
        "treecmp.py {} {} found differences\n{}",
        left.display(),
        right.display(),
        describe(&out)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// All the comparisons of a source tree and its restored copy that do not read file
/// contents; `src_stat` is the source's stat dump taken before anything but zaibei read it.
pub fn assert_metadata_matches(src_stat: &[Vec<u8>], src: &Path, dst: &Path) {
    assert_same("stat dumps", src_stat, &stat_dump(dst));
    assert_same("getfattr dumps", &xattr_dump(src), &xattr_dump(dst));
    assert_same("getfacl dumps", &acl_dump(src), &acl_dump(dst));
    let (src_du, dst_du) = (du(src), du(dst));
    assert_eq!(
        src_du,
        dst_du,
        "du -s / du -s --apparent-size of {} and {} differ (sparse files not kept sparse?)",
        src.display(),
        dst.display()
    );
}

// ---------------------------------------------------------------------------------------
// The generated source tree.
// ---------------------------------------------------------------------------------------

/// A small deterministic generator for randomized tests (an LCG).
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `ZAIBEI_TEST_SEED`, or from the clock; the seed is printed so that a
    /// failing run can be repeated.
    pub fn from_env() -> Rng {
        let seed = std::env::var("ZAIBEI_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        note(&format!("ZAIBEI_TEST_SEED={seed}"));
        Rng(seed)
    }

    /// A number below `below` (0 when `below` is 0).
    pub fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % below.max(1)
    }
}

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough for the chunker.
pub fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    seed |= 1;
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A time: seconds since the epoch (negative before 1970) and nanoseconds.
pub fn ts(sec: i64, nsec: i64) -> Timespec {
    Timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// Access times of directories and symlinks: in the future (2100-01-01), later than their
/// modification and change times, so that under `relatime` listing a directory or reading
/// a link (find, getfattr, rsync, zaibei itself) does not change them and the stat dumps
/// stay comparable.
pub const FUTURE_ATIME: i64 = 4_102_444_800;

/// Sets both times of `path` without following a symlink.
pub fn set_times(path: &Path, atime: Timespec, mtime: Timespec) {
    rustix::fs::utimensat(
        CWD,
        path,
        &Timestamps {
            last_access: atime,
            last_modification: mtime,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

fn os(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setting xattr {name} on {}: {e}", path.display()));
}

fn setfacl(path: &Path, args: &[&str]) {
    let mut a: Vec<&dyn AsRef<OsStr>> = args.iter().map(|s| s as &dyn AsRef<OsStr>).collect();
    a.push(&path);
    tool("setfacl", &a);
}

fn write(path: &Path, data: &[u8]) {
    fs::write(path, data).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// What [`build_tree`] made, counted independently of zaibei.
#[derive(Debug, Clone)]
pub struct TreeInfo {
    /// Names of regular files (a hard-linked file counts once per name).
    pub file_names: u64,
    /// Distinct regular-file inodes.
    pub file_inodes: u64,
    /// Relative paths of some regular files that are not hard-linked, for damage tests.
    pub plain_files: Vec<PathBuf>,
    /// Relative path of the sparse file.
    pub sparse: PathBuf,
}

/// The sparse file: 200 MiB, almost all holes.
pub const SPARSE: &str = "sparse-200m";
/// Data written inside the sparse file: (offset, length).
pub const SPARSE_DATA: &[(u64, usize)] = &[(1000, 3), (100_000_000, 3), (150 << 20, 64 << 10)];

/// Builds below `root` (which must exist) a tree with every kind of entry zaibei must
/// keep: regular files from empty to multi-chunk, sparse files, directories, symlinks
/// (relative, absolute, dangling, looping), hard links across directories, a FIFO,
/// character and block devices, a unix socket, setuid/setgid/sticky bits, odd owners,
/// nanosecond and pre-1970 times, xattrs in the user, trusted and security namespaces,
/// access and default ACLs, and names that are not UTF-8, hold newlines or are 255 bytes.
pub fn build_tree(root: &Path) -> TreeInfo {
    let p = |rel: &str| root.join(rel);
    let pb = |rel: &[u8]| root.join(os(rel));

    // Regular files of various sizes.
    write(&p("empty"), b"");
    write(&p("small"), b"hello, zaibei\n");
    write(&p("random-12m"), &pseudo_random(12 << 20, 0x5eed));
    let text: Vec<u8> = (0..60_000)
        .flat_map(|i| format!("line {i:08} of a compressible text file\n").into_bytes())
        .collect();
    write(&p("text-2m"), &text);
    write(&p("random-300k"), &pseudo_random(300 << 10, 7));

    // Sparse files: data islands in 200 MiB of holes, ending in a hole; and one that is all
    // hole.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(p(SPARSE)).unwrap();
        f.set_len(200 << 20).unwrap();
        for (i, &(off, len)) in SPARSE_DATA.iter().enumerate() {
            f.write_all_at(&pseudo_random(len, 100 + i as u64), off)
                .unwrap();
        }
        let g = fs::File::create(p("hole-only-10m")).unwrap();
        g.set_len(10 << 20).unwrap();
    }

    // Directories.
    for d in [
        "d1",
        "d1/d2",
        "d1/d2/d3",
        "sticky-dir",
        "setgid-dir",
        "readonly-dir",
        "private-dir",
        "empty-dir",
        "links",
        "specials",
        "names",
    ] {
        fs::create_dir(p(d)).unwrap();
    }

    // Hard links: three names in three directories; and the multi-chunk file twice.
    fs::hard_link(p("small"), p("d1/hl1")).unwrap();
    fs::hard_link(p("small"), p("d1/d2/hl2")).unwrap();
    fs::hard_link(p("random-12m"), p("sticky-dir/random-link")).unwrap();

    // Symlinks.
    std::os::unix::fs::symlink("../small", p("links/relative")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p("links/absolute")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", p("links/dangling")).unwrap();
    std::os::unix::fs::symlink("../d1", p("links/to-dir")).unwrap();
    std::os::unix::fs::symlink("loop", p("links/loop")).unwrap();
    std::os::unix::fs::symlink(os(b"\xff-target\nwith newline"), p("links/odd-target")).unwrap();

    // Special files.
    let mode = Mode::from_raw_mode(0o644);
    rustix::fs::mknodat(CWD, p("specials/fifo"), FileType::Fifo, mode, 0).unwrap();
    let dev = rustix::fs::makedev;
    rustix::fs::mknodat(
        CWD,
        p("specials/char-1-3"),
        FileType::CharacterDevice,
        mode,
        dev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        p("specials/block-7-0"),
        FileType::BlockDevice,
        mode,
        dev(7, 0),
    )
    .unwrap();
    rustix::fs::mknodat(
        CWD,
        p("specials/char-big"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o600),
        dev(4095, 1_048_575),
    )
    .unwrap();
    drop(std::os::unix::net::UnixListener::bind(p("specials/socket")).unwrap());

    // Names: not UTF-8, with newline and other control characters, 255 bytes long.
    write(&pb(b"names/\xff\xfe"), b"not UTF-8\n");
    write(&pb(b"names/caf\xe9 latin-1"), b"latin-1\n");
    write(&p("names/new\nline"), b"newline\n");
    write(&p("names/tab\tand \\ back\\slash"), b"tab\n");
    write(&p("names/-leading-dash"), b"dash\n");
    write(&p("names/ spaces "), b"spaces\n");
    let long_ascii = "n".repeat(255);
    write(&p(&format!("names/{long_ascii}")), b"255 bytes\n");
    let long_utf8 = format!("{}x", "é".repeat(127));
    assert_eq!(long_utf8.len(), 255);
    fs::create_dir(p(&format!("names/{long_utf8}"))).unwrap();
    write(
        &p(&format!("names/{long_utf8}/{long_ascii}")),
        b"deep long\n",
    );

    // Owners (after the contents, before the modes: chown clears setuid and setgid).
    write(&p("owned-1234"), b"owned by 1234:5678\n");
    lchown(&p("owned-1234"), 1234, 5678);
    write(&p("owned-nobody"), b"owned by nobody\n");
    lchown(&p("owned-nobody"), 65534, 65534);
    write(&p("big-ids"), b"ids above 2^31\n");
    lchown(&p("big-ids"), 3_000_000_000, 3_000_000_001);
    lchown(&p("links/relative"), 1234, 5678);
    lchown(&p("specials/fifo"), 1234, 5678);
    lchown(&p("private-dir"), 1234, 5678);

    // Mode bits.
    write(&p("setuid"), b"#!/bin/sh\n");
    lchown(&p("setuid"), 1234, 5678);
    chmod(&p("setuid"), 0o6755);
    write(&p("setgid"), b"#!/bin/sh\n");
    chmod(&p("setgid"), 0o2750);
    write(&p("mode-000"), b"nobody may read this\n");
    chmod(&p("mode-000"), 0o000);
    write(&p("mode-7777"), b"all bits\n");
    chmod(&p("mode-7777"), 0o7777);
    write(&p("setgid-dir/inside"), b"in a setgid directory\n");
    chmod(&p("setgid-dir"), 0o2775);
    chmod(&p("sticky-dir"), 0o1777);
    write(&p("readonly-dir/inside"), b"in a read-only directory\n");
    chmod(&p("readonly-dir"), 0o555);
    chmod(&p("private-dir"), 0o700);

    // Extended attributes: binary and empty values, several namespaces, on files,
    // directories and a symlink.
    let binary: Vec<u8> = (0..=255u8).rev().collect();
    xattr(&p("small"), "user.binary", &binary);
    xattr(&p("small"), "user.empty", b"");
    xattr(&p("small"), "user.text", "灾备".as_bytes());
    xattr(&p("random-12m"), "user.big", &pseudo_random(2000, 3));
    xattr(&p("d1"), "user.on-dir", b"directory value");
    xattr(&pb(b"names/\xff\xfe"), "user.odd-name", b"\x00\x01\x02");
    xattr(&p("text-2m"), "trusted.zaibei", b"trusted\x00value");
    xattr(&p("links/relative"), "trusted.on-symlink", b"link attr");
    // File capabilities (cap_net_bind_service, effective), on a file owned by someone
    // else: lost if a restore sets them before the owner.
    write(&p("capable"), b"#!/bin/sh\n");
    lchown(&p("capable"), 1234, 5678);
    chmod(&p("capable"), 0o750);
    let cap = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    xattr(&p("capable"), "security.capability", &cap);

    // ACLs: access ACLs on files and directories, a default ACL on a directory, and a file
    // that inherits it.
    setfacl(&p("small"), &["-m", "u:1234:rwx,g:5678:r,u:65534:-"]);
    setfacl(&p("owned-1234"), &["-m", "u:4321:rw,m::r"]);
    setfacl(&p("d1"), &["-m", "u:1234:rx,g:5678:rwx"]);
    setfacl(&p("d1"), &["-d", "-m", "u:1234:rwx,g:5678:rx,o::-"]);
    write(
        &p("d1/inherits-default-acl"),
        b"created under a default ACL\n",
    );
    fs::create_dir(p("d1/subdir-inherits")).unwrap();

    // Times, last: files get nanosecond times old and new, before 1970 and after 2038;
    // directories and symlinks get access times that relatime leaves alone.
    let mut k = 0i64;
    let mut all = Vec::new();
    collect(root, &mut all);
    // Children before parents, so setting a directory's times is the last change to it.
    all.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for path in &all {
        k += 1;
        let meta = fs::symlink_metadata(path).unwrap();
        let t = meta.file_type();
        let mtime = ts(1_600_000_000 + k * 7919, (k * 123_456_789) % 1_000_000_000);
        if t.is_dir() || t.is_symlink() {
            set_times(path, ts(FUTURE_ATIME + k, k * 1000 + 1), mtime);
        } else {
            set_times(
                path,
                ts(
                    1_500_000_000 + k * 104_729,
                    (k * 987_654_321) % 1_000_000_000,
                ),
                mtime,
            );
        }
    }
    // 1960-01-01 00:00:00.123456789 and 1955-05-05 05:05:05.987654321 UTC.
    set_times(
        &p("empty"),
        ts(-473_281_495, 987_654_321),
        ts(-315_619_200, 123_456_789),
    );
    write(&p("old-1960"), b"older than the epoch\n");
    set_times(
        &p("old-1960"),
        ts(-315_619_200, 1),
        ts(-315_619_200, 123_456_789),
    );
    // 2300-01-01 00:00:00.5 (past the 32-bit limit).
    set_times(
        &p("big-ids"),
        ts(10_413_792_000, 0),
        ts(10_413_792_000, 500_000_000),
    );
    set_times(&p("links/loop"), ts(FUTURE_ATIME, 5), ts(-1, 999_999_999));
    set_times(root, ts(FUTURE_ATIME, 7), ts(1_234_567_890, 123_456_789));

    let mut info = TreeInfo {
        file_names: 0,
        file_inodes: 0,
        plain_files: vec!["text-2m".into(), "random-300k".into(), "owned-1234".into()],
        sparse: SPARSE.into(),
    };
    let mut inodes = std::collections::HashSet::new();
    for path in all.iter().chain([&p("old-1960")]) {
        let meta = fs::symlink_metadata(path).unwrap();
        if meta.file_type().is_file() {
            info.file_names += 1;
            inodes.insert(meta.ino());
        }
    }
    info.file_inodes = inodes.len() as u64;
    info
}

/// Every entry below `dir` (not `dir` itself).
pub fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let path = e.path();
        let is_dir = e.file_type().unwrap().is_dir();
        out.push(path.clone());
        if is_dir {
            collect(&path, out);
        }
    }
}

/// Asserts that the sparse file below `root` still has holes: far fewer blocks than bytes.
pub fn assert_sparse(root: &Path) {
    let meta = fs::symlink_metadata(root.join(SPARSE)).unwrap();
    assert_eq!(meta.len(), 200 << 20);
    let allocated = meta.blocks() * 512;
    assert!(
        allocated < 4 << 20,
        "{} has {allocated} bytes allocated for {} bytes: not sparse",
        root.join(SPARSE).display(),
        meta.len()
    );
}

/// Bytes of a file, by relative path (for messages and byte comparisons).
pub fn read(root: &Path, rel: &Path) -> Vec<u8> {
    fs::read(root.join(rel)).unwrap_or_else(|e| panic!("reading {}: {e}", root.join(rel).display()))
}

/// The environment of a `zaibei` run against `target`: credentials and signing region from
/// the target (nothing else inherited that could change them).
pub fn s3_vars(target: &zaibei_testkit::S3Target) -> Vec<(String, Option<String>)> {
    let c = &target.credentials;
    vec![
        ("AWS_ACCESS_KEY_ID".into(), Some(c.access_key_id.clone())),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            Some(c.secret_access_key.clone()),
        ),
        ("AWS_SESSION_TOKEN".into(), None),
        ("AWS_PROFILE".into(), None),
        ("AWS_REGION".into(), Some(c.region.clone())),
        ("AWS_DEFAULT_REGION".into(), None),
        ("ZAIBEI_IO_TIMEOUT".into(), None),
        ("ZAIBEI_RETRIES".into(), None),
        ("ZAIBEI_CONNECTIONS".into(), None),
    ]
}
