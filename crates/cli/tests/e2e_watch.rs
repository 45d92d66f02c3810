//! Continuous protection end to end: `zaibei watch` runs as a child process on a local
//! repository while the test changes the protected tree; each change must show up in a
//! snapshot that restores bit for bit, at the primary and at a replica site; retention keeps
//! the number of snapshots down; a repository that goes away fails cycles that are retried; a
//! protected directory that goes away holds the backups; a sync that takes long never holds
//! the backups; a directory the user may not read is left out of the watch without a backup
//! storm; SIGTERM ends the watch with exit code 0 and a repository that passes
//! `check --read-data`.
//!
//! Nothing here waits a fixed time and then asserts: every wait polls for the awaited state
//! and gives up only at a generous deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e_support::*;
use serde_json::Value;

/// How long any awaited state may take before the test gives up: only a hang hits it.
const DEADLINE: Duration = Duration::from_secs(240);

/// Pause between two looks at the awaited state.
const POLL: Duration = Duration::from_millis(200);

/// A `zaibei --json watch ...` child process, its output gathered by threads.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<JoinHandle<()>>,
}

impl Watcher {
    fn start(env: &Env, args: &[&dyn AsRef<OsStr>]) -> Watcher {
        let mut c = env.command();
        c.arg("--json").arg("watch");
        for a in args {
            c.arg(a.as_ref());
        }
        Watcher::spawn(c)
    }

    fn spawn(mut c: Command) -> Watcher {
        let mut child = c
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting zaibei watch");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let l = Arc::clone(&lines);
        let e = Arc::clone(&stderr);
        let readers = vec![
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    let Ok(line) = line else { return };
                    let v: Value = serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                    l.lock().unwrap().push(v);
                }
            }),
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    e.lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }),
        ];
        Watcher {
            child,
            lines,
            stderr,
            readers,
        }
    }

    fn lines(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    fn cycles(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|l| l["message_type"] == "cycle")
            .collect()
    }

    fn dump(&self) -> String {
        let lines: Vec<String> = self.lines().iter().map(Value::to_string).collect();
        format!(
            "--- watch output ---\n{}\n--- watch stderr ---\n{}",
            lines.join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    /// Polls until `found` gives a value; fails at the deadline, or when the watch exits.
    fn wait_for<T>(&mut self, what: &str, mut found: impl FnMut(&Watcher) -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = found(self) {
                note(&format!(
                    "{what}: after {:.1}s",
                    start.elapsed().as_secs_f64()
                ));
                return v;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "zaibei watch exited ({status}) while waiting for {what}\n{}",
                    self.dump()
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "no {what} within {DEADLINE:?}\n{}",
                self.dump()
            );
            std::thread::sleep(POLL);
        }
    }

    /// Sends SIGTERM and waits for the exit.
    fn stop(mut self) -> (ExitStatus, String) {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "zaibei watch did not exit after SIGTERM\n{}",
                self.dump()
            );
            std::thread::sleep(POLL);
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        let dump = self.dump();
        (status, dump)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What `rsync -naHAXS --checksum --itemize-changes` finds to do between two trees (empty:
/// they are the same, bit for bit and in their metadata).
fn differences(src: &Path, dst: &Path) -> String {
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
    if out.status.success() && out.stderr.is_empty() {
        String::from_utf8_lossy(&out.stdout).into_owned()
    } else {
        describe(&out)
    }
}

/// Keeps a copy of `src` as it is now, to compare restores with.
fn keep_copy(src: &Path, dst: &Path) {
    tool("cp", &[&"-a", &src, &dst]);
}

/// Polls `snapshots --json` until a snapshot restores to exactly `expected` (the tree at
/// `src` as it was when the copy was taken); its id. Each new snapshot is restored once.
fn wait_for_snapshot_of(
    w: &mut Watcher,
    env: &Env,
    src: &Path,
    expected: &Path,
    label: &str,
) -> String {
    let mut tried: Vec<String> = Vec::new();
    let mut last_diff = String::new();
    let found = w.wait_for(&format!("a snapshot holding {label}"), |_| {
        for id in env.snapshot_ids() {
            if tried.contains(&id) {
                continue;
            }
            tried.push(id.clone());
            let target = env.path(&format!("restore-{label}-{}", &id[..12]));
            let out = env.run(&[&"--json", &"restore", &id.as_str(), &"--target", &target]);
            if out.status.code() != Some(code::OK) {
                // Forgotten by retention between the listing and the restore.
                last_diff = describe(&out);
                continue;
            }
            let diff = differences(expected, &restored(&target, src));
            if diff.is_empty() {
                return Some(id);
            }
            last_diff = diff;
        }
        None
    });
    assert!(!found.is_empty(), "{last_diff}");
    found
}

/// The cycle line that stored snapshot `id`.
fn cycle_of(w: &mut Watcher, id: &str) -> Value {
    w.wait_for(&format!("the cycle line of {}", &id[..8]), |w| {
        w.cycles().into_iter().find(|c| c["snapshot_id"] == id)
    })
}

fn write_tree(src: &Path) {
    fs::create_dir_all(src.join("docs/old")).unwrap();
    fs::write(src.join("big.bin"), pseudo_random(3 << 20, 11)).unwrap();
    for i in 0..20 {
        fs::write(
            src.join(format!("docs/note{i}.txt")),
            format!("note {i}\n").repeat(i + 1),
        )
        .unwrap();
    }
    fs::write(src.join("docs/old/ancient"), b"from long ago\n").unwrap();
    std::os::unix::fs::symlink("docs/note1.txt", src.join("link")).unwrap();
}

/// Change `n` of the tree: new files, a new directory, a modification in place, a deletion,
/// a rename.
fn change(src: &Path, n: u64) {
    fs::write(
        src.join(format!("new-{n}.bin")),
        pseudo_random(200 << 10, 1000 + 2 * n),
    )
    .unwrap();
    fs::create_dir_all(src.join(format!("dir-{n}/sub"))).unwrap();
    fs::write(
        src.join(format!("dir-{n}/sub/deep.txt")),
        format!("round {n}\n"),
    )
    .unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(src.join("docs/note0.txt"))
        .unwrap();
    std::io::Write::write_all(&mut f, format!("appended in round {n}\n").as_bytes()).unwrap();
    drop(f);
    let victim = src.join(format!("docs/note{}.txt", 10 + n));
    fs::remove_file(victim).unwrap();
    fs::rename(
        src.join(format!("docs/note{}.txt", 15 + n)),
        src.join(format!("docs/renamed-{n}.txt")),
    )
    .unwrap();
}

#[test]
fn watch_backs_up_changes_syncs_them_and_keeps_retention() {
    let a = Env::init();
    let src = a.path("src");
    write_tree(&src);

    // A replica site on another local directory.
    let b = Env {
        repo: a.path("replica"),
        dir: scratch(),
        password: a.password.clone(),
        bin: a.bin.clone(),
        extra_env: Vec::new(),
        extra_args: Vec::new(),
    };
    b.ok(&[&"init", &"--insecure-test-kdf", &"--from", &a.repo]);
    a.ok(&[&"site", &"init", &"--name", &"primary"]);
    a.ok(&[&"site", &"add", &"--name", &"replica", &b.repo]);

    let mut w = Watcher::start(
        &a,
        &[
            &"--debounce",
            &"1s",
            &"--max-delay",
            &"20s",
            &"--keep-last",
            &"2",
            // Required with --keep-last; this short, it keeps nothing more.
            &"--keep-within",
            &"1ms",
            &src,
        ],
    );
    let watching = w.wait_for("the watching line", |w| {
        w.lines()
            .into_iter()
            .find(|l| l["message_type"] == "watching")
    });
    let canonical = fs::canonicalize(&src).unwrap();
    assert_eq!(
        watching["paths"][0],
        canonical.to_str().unwrap(),
        "{watching}"
    );

    // The first cycle backs up the tree as it is.
    let v0 = a.path("expected-0");
    keep_copy(&src, &v0);
    let first = wait_for_snapshot_of(&mut w, &a, &src, &v0, "the start");
    assert_eq!(cycle_of(&mut w, &first)["trigger"], "start");

    let mut last = first;
    for n in 1..=3 {
        change(&src, n);
        let expected = a.path(&format!("expected-{n}"));
        keep_copy(&src, &expected);
        let id = wait_for_snapshot_of(&mut w, &a, &src, &expected, &format!("change {n}"));
        let cycle = cycle_of(&mut w, &id);
        assert!(
            cycle["events"].as_u64().unwrap() > 0,
            "a cycle after a change covers events: {cycle}"
        );
        assert_ne!(cycle["trigger"], "start", "{cycle}");
        // Sent to the replica by a sync that began after the cycle.
        let n = cycle["cycle"].as_u64().unwrap();
        let sync = w.wait_for(&format!("a sync after cycle {n}"), |w| {
            w.lines()
                .into_iter()
                .find(|l| l["message_type"] == "sync" && l["after_cycle"].as_u64().unwrap() >= n)
        });
        let sites = sync["sites"].as_array().unwrap_or_else(|| panic!("{sync}"));
        assert_eq!(sites.len(), 1, "{sync}");
        assert_eq!(sites[0]["site"], "replica", "{sync}");
        assert_eq!(sites[0]["error"], Value::Null, "{sync}");
        assert_eq!(sites[0]["missing_after"], 0, "{sync}");
        assert!(b.snapshot_ids().contains(&id), "{sync}");
        // Retention ran after it: at most two snapshots of this tree are left.
        let ids = a.snapshot_ids();
        assert!(ids.len() <= 2, "--keep-last 2 left {ids:?}\n{}", w.dump());
        assert!(ids.contains(&id), "the newest is kept: {ids:?}");
        last = id;
    }
    let forgotten: usize = w
        .cycles()
        .iter()
        .map(|c| c["forgotten"].as_array().unwrap().len())
        .sum();
    assert!(forgotten >= 2, "four snapshots, two kept\n{}", w.dump());
    let added: u64 = w
        .cycles()
        .iter()
        .map(|c| c["data_added"].as_u64().unwrap())
        .sum();
    assert!(
        added >= (3 << 20) + 3 * (200 << 10),
        "the tree and three new files were stored\n{}",
        w.dump()
    );

    // The replica restores the newest snapshot bit for bit too.
    let target = b.path("restore-replica");
    b.restore(&last, &target, &[]);
    assert_rsync_clean(&a.path("expected-3"), &restored(&target, &src));

    let (status, dump) = w.stop();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM ends the watch cleanly\n{dump}"
    );
    a.ok(&[&"check", &"--read-data"]);
    b.ok(&[&"check", &"--read-data"]);
}

#[test]
fn watch_retries_without_its_repository_and_holds_without_its_source() {
    let a = Env::init();
    let src = a.path("src");
    write_tree(&src);
    let mut w = Watcher::start(&a, &[&"--debounce", &"1s", &"--no-sync", &src]);
    let v0 = a.path("expected-0");
    keep_copy(&src, &v0);
    wait_for_snapshot_of(&mut w, &a, &src, &v0, "the start");

    // The repository goes away (an unmounted disk): the cycle fails, the watch goes on and
    // retries until it is back; nothing is written where it was meanwhile.
    let away = a.path("repo-away");
    fs::rename(&a.repo, &away).unwrap();
    change(&src, 1);
    let failed = w.wait_for("a failed cycle", |w| {
        w.cycles().into_iter().find(|c| !c["error"].is_null())
    });
    assert!(
        failed["retry_in_seconds"].as_f64().unwrap() > 0.0,
        "{failed}"
    );
    assert!(
        !a.repo.exists(),
        "a failed cycle created {}",
        a.repo.display()
    );
    fs::rename(&away, &a.repo).unwrap();
    let v1 = a.path("expected-1");
    keep_copy(&src, &v1);
    let id = wait_for_snapshot_of(&mut w, &a, &src, &v1, "the change made while away");
    assert_eq!(cycle_of(&mut w, &id)["trigger"], "retry");

    // The protected directory goes away: backups are held (no snapshot of a missing tree),
    // and resume once it is back.
    let gone = a.path("src-gone");
    fs::rename(&src, &gone).unwrap();
    w.wait_for("the held line", |w| {
        w.lines().into_iter().find(|l| l["message_type"] == "held")
    });
    fs::rename(&gone, &src).unwrap();
    change(&src, 2);
    let v2 = a.path("expected-2");
    keep_copy(&src, &v2);
    wait_for_snapshot_of(&mut w, &a, &src, &v2, "the change after the return");
    let lines = w.lines();
    let held = lines
        .iter()
        .position(|l| l["message_type"] == "held")
        .unwrap();
    let resumed = lines
        .iter()
        .position(|l| l["message_type"] == "resumed")
        .unwrap_or_else(|| panic!("no resumed line\n{}", w.dump()));
    assert!(held < resumed);
    assert!(
        lines[held..resumed]
            .iter()
            .all(|l| l["message_type"] != "cycle"),
        "no cycle ran while the source was away\n{}",
        w.dump()
    );
    let canonical = fs::canonicalize(&src).unwrap();
    assert_eq!(lines[held]["paths"][0]["path"], canonical.to_str().unwrap());
    assert_eq!(lines[held]["paths"][0]["state"], "missing");

    let (status, dump) = w.stop();
    assert_eq!(status.code(), Some(0), "{dump}");
    a.ok(&[&"check", &"--read-data"]);
}

#[test]
fn watch_once_settled_leaves_out_its_own_repository() {
    // Snapshots record the directories above the source too, so the source lies where no
    // other test creates anything beside its ancestors: directly below `/`.
    let top = tempfile::Builder::new()
        .prefix("zaibei-e2e-watch-")
        .tempdir_in("/")
        .unwrap();
    let src = top.path().join("src");
    write_tree(&src);
    let dir = scratch();
    // The repository lies inside the protected tree.
    let env = Env {
        repo: src.join("repo"),
        dir,
        password: PASSWORD.to_owned(),
        bin: PathBuf::from(env!("CARGO_BIN_EXE_zaibei")),
        extra_env: Vec::new(),
        extra_args: Vec::new(),
    };
    require_tools();
    env.ok(&[&"init", &"--insecure-test-kdf"]);

    env.expect(
        code::USAGE,
        &[&"watch", &"--debounce", &"5s", &"--max-delay", &"1s", &src],
    );
    // Durations no clock can add, and retention that a ransomware attack could exhaust.
    env.expect(
        code::USAGE,
        &[&"watch", &"--rescan", &"400000000000y", &src],
    );
    env.expect(
        code::USAGE,
        &[&"watch", &"--heartbeat", &"400000000000y", &src],
    );
    let out = env.expect(code::USAGE, &[&"watch", &"--keep-last", &"3", &src]);
    assert!(
        all_output(&out).contains("--keep-within"),
        "{}",
        describe(&out)
    );

    // The copy to compare with, taken first: reading the files sets their access times once
    // (relatime), and the snapshots record access times.
    let expected = env.path("expected");
    tool(
        "rsync",
        &[
            &"-aHAXS",
            &"--exclude",
            &"/repo",
            &format!("{}/", src.display()),
            &expected,
        ],
    );

    let out = env.ok(&[
        &"--json",
        &"watch",
        &"--once-settled",
        &"--debounce",
        &"1s",
        &src,
    ]);
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "a watching line and one cycle\n{}",
        describe(&out)
    );
    let repo = fs::canonicalize(&env.repo).unwrap();
    assert_eq!(
        lines[0]["ignored"][0],
        repo.to_str().unwrap(),
        "{}",
        lines[0]
    );
    let cycle = &lines[1];
    assert_eq!(cycle["trigger"], "start", "{cycle}");
    let id = cycle["snapshot_id"].as_str().unwrap();
    assert_eq!(env.snapshot_ids(), vec![id.to_owned()]);

    // The snapshot holds the tree without the repository.
    let target = env.path("restored");
    env.restore(id, &target, &[]);
    assert_rsync_clean(&expected, &restored(&target, &src));
    assert!(!restored(&target, &src).join("repo").exists());

    // Nothing changed since: the next settled cycle stores no snapshot.
    let out = env.ok(&[
        &"--json",
        &"watch",
        &"--once-settled",
        &"--debounce",
        &"1s",
        &src,
    ]);
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["unchanged"], true, "{last}");
    assert_eq!(last["heartbeat"], false, "{last}");
    assert_eq!(last["snapshot_id"], Value::Null, "{last}");
    assert_eq!(env.snapshot_ids(), vec![id.to_owned()]);

    // Still nothing changed, but the snapshot is older than --heartbeat (it is at least the
    // quiet period old): stored anyway, as a recovery point.
    let out = env.ok(&[
        &"--json",
        &"watch",
        &"--once-settled",
        &"--debounce",
        &"1s",
        &"--heartbeat",
        &"1s",
        &src,
    ]);
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["unchanged"], true, "{last}");
    assert_eq!(last["heartbeat"], true, "{last}");
    let beat = last["snapshot_id"]
        .as_str()
        .unwrap_or_else(|| panic!("{last}"));
    assert_eq!(last["parent"], id, "{last}");
    let ids = env.snapshot_ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&beat.to_owned()), "{ids:?}");
    env.ok(&[&"check", &"--read-data"]);
}

#[test]
fn watch_keeps_backing_up_while_a_sync_takes_long() {
    let mut a = Env::init();
    // The replica's stalled read (below) must not time out first.
    a.extra_args = vec!["--io-timeout".into(), "600".into()];
    let src = a.path("src");
    write_tree(&src);
    let b = Env {
        repo: a.path("replica"),
        dir: scratch(),
        password: a.password.clone(),
        bin: a.bin.clone(),
        extra_env: Vec::new(),
        extra_args: Vec::new(),
    };
    b.ok(&[&"init", &"--insecure-test-kdf", &"--from", &a.repo]);
    a.ok(&[&"site", &"init", &"--name", &"primary"]);
    a.ok(&[&"site", &"add", &"--name", &"replica", &b.repo]);

    // The replica stalls: reading its config blocks (a FIFO no one writes to yet), as a site
    // that takes hours to bring up to date would.
    let config = b.repo.join("config");
    let saved = a.path("replica-config");
    fs::rename(&config, &saved).unwrap();
    tool("mkfifo", &[&config]);

    let mut w = Watcher::start(&a, &[&"--debounce", &"1s", &src]);
    let v0 = a.path("expected-0");
    keep_copy(&src, &v0);
    wait_for_snapshot_of(&mut w, &a, &src, &v0, "the start");
    // Cycles go on while the first sync hangs.
    for n in 1..=2 {
        change(&src, n);
        let expected = a.path(&format!("expected-{n}"));
        keep_copy(&src, &expected);
        let id = wait_for_snapshot_of(&mut w, &a, &src, &expected, &format!("change {n}"));
        cycle_of(&mut w, &id);
    }
    assert!(
        w.lines().iter().all(|l| l["message_type"] != "sync"),
        "no sync ended while the replica stalls\n{}",
        w.dump()
    );

    // The replica answers: the stalled sync ends, and the next one sends what was stored
    // meanwhile.
    let mut fifo = fs::OpenOptions::new().write(true).open(&config).unwrap();
    fs::rename(&saved, &config).unwrap();
    std::io::Write::write_all(&mut fifo, &fs::read(&config).unwrap()).unwrap();
    drop(fifo);
    let newest = a.snapshot_ids();
    let cycles = w.cycles().len() as u64;
    let sync = w.wait_for("a sync covering every cycle", |w| {
        w.lines().into_iter().find(|l| {
            l["message_type"] == "sync"
                && l["after_cycle"].as_u64().unwrap() >= cycles
                && l["sites"][0]["missing_after"] == 0
        })
    });
    assert!(sync["sync"].as_u64().unwrap() >= 2, "{sync}\n{}", w.dump());
    let first = w
        .lines()
        .into_iter()
        .find(|l| l["message_type"] == "sync")
        .unwrap();
    assert_eq!(
        first["after_cycle"], 1,
        "the first sync began after the start cycle"
    );
    let there = b.snapshot_ids();
    for id in &newest {
        assert!(there.contains(id), "{id} not at the replica\n{}", w.dump());
    }
    let (status, dump) = w.stop();
    assert_eq!(status.code(), Some(0), "{dump}");
    b.ok(&[&"check", &"--read-data"]);
}

#[test]
fn watch_as_a_user_who_may_not_read_everything() {
    // Everything below /tmp (world-searchable), so that user nobody reaches it; the binary is
    // copied there for the same reason.
    let dir = tempfile::Builder::new()
        .prefix("zaibei-e2e-watch-nobody-")
        .tempdir()
        .unwrap();
    fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut env = Env::init_in(dir);
    let bin = env.path("zaibei");
    fs::copy(&env.bin, &bin).unwrap();
    env.bin = bin;
    let src = env.path("src");
    // Many directories, so that some come after the unreadable one in any walk order (notify
    // stops its walk at the first directory it cannot watch).
    for i in 0..30 {
        fs::create_dir_all(src.join(format!("d{i:02}"))).unwrap();
        fs::write(src.join(format!("d{i:02}/f")), b"x").unwrap();
    }
    fs::create_dir(src.join("lost+found")).unwrap();
    bash(
        env.dir.path(),
        "chown -R nobody:nogroup repo src && chown root:root src/lost+found && \
         chmod 700 src/lost+found",
    );
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(&env.bin)
        .args(["--json", "-r"])
        .arg(&env.repo)
        .args(["watch", "--debounce", "1s", "--no-sync"])
        .arg(&src)
        .env("ZAIBEI_PASSWORD", &env.password)
        .env("HOME", env.dir.path())
        .env_remove("ZAIBEI_REPOSITORY")
        .env_remove("ZAIBEI_PASSWORD_FILE")
        .env_remove("ZAIBEI_LOG")
        .current_dir(env.dir.path())
        .stdin(Stdio::null());
    let mut w = Watcher::spawn(c);
    let canonical = fs::canonicalize(&src).unwrap();
    let unwatched = w.wait_for("the unwatched line", |w| {
        w.lines()
            .into_iter()
            .find(|l| l["message_type"] == "unwatched")
    });
    assert_eq!(
        unwatched["paths"][0]["path"],
        canonical.join("lost+found").to_str().unwrap(),
        "{unwatched}"
    );
    w.wait_for("the start cycle", |w| w.cycles().first().cloned());
    // Several examinations of the paths later (every 5 s), a change anywhere else is noticed
    // as a change; no cycle ran meanwhile (the failure to watch lost+found neither repeats
    // nor starts backups).
    std::thread::sleep(Duration::from_secs(11));
    for i in 0..30 {
        fs::write(src.join(format!("d{i:02}/f")), format!("changed {i}")).unwrap();
    }
    let cycle = w.wait_for("a cycle after the changes", |w| w.cycles().get(1).cloned());
    assert_eq!(cycle["trigger"], "quiet", "{cycle}\n{}", w.dump());
    assert!(
        cycle["events"].as_u64().unwrap() >= 30,
        "every directory is watched: {cycle}"
    );
    let cycles = w.cycles();
    assert_eq!(cycles[0]["trigger"], "start", "{}", w.dump());
    let lines = w.lines();
    assert_eq!(
        lines
            .iter()
            .filter(|l| l["message_type"] == "unwatched")
            .count(),
        1,
        "reported once\n{}",
        w.dump()
    );
    let (status, dump) = w.stop();
    assert_eq!(status.code(), Some(0), "{dump}");
}
