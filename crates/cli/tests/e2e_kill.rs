//! SIGKILL at random times: `backup` and `prune` are killed mid-run again and again; after
//! each kill `check` finds no error, nothing blocks the next command (there are no locks), and
//! every snapshot completed before restores bit for bit. The seed is printed; set
//! ZAIBEI_TEST_SEED to repeat a run. `scripts/crash-soak` runs the same for thousands of
//! rounds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod e2e_support;

use std::fs;
use std::process::Stdio;
use std::time::Duration;

use e2e_support::*;

/// Starts `zaibei ARGS`, kills it with SIGKILL after `after`; true when it was still running.
fn kill_after(env: &Env, args: &[&str], after: Duration) -> bool {
    let mut c = env.command();
    c.args(args).stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    std::thread::sleep(after);
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap_or(());
    child.wait().unwrap();
    running
}

fn assert_no_errors(env: &Env, when: &str) {
    let s = summary(&env.ok(&[&"--json", &"check"]));
    assert_eq!(s["errors"], 0, "{when}: {s}");
}

#[test]
fn backup_and_prune_killed_at_random_times_leave_a_valid_repository() {
    let mut rng = Rng::from_env();
    let env = Env::init();
    let src = env.path("src");
    fs::create_dir_all(&src).unwrap();
    // (snapshot id, the file it must hold)
    let mut done: Vec<(String, Vec<u8>)> = Vec::new();
    let mut kills = 0;
    for round in 0..8u64 {
        // Enough new data that a backup runs for a while.
        let content = pseudo_random(6 << 20, 2 * round + 1001);
        fs::write(src.join("big"), &content).unwrap();
        let delay = Duration::from_millis(20 + rng.next(600));
        if kill_after(&env, &["backup", src.to_str().unwrap()], delay) {
            kills += 1;
        }
        assert_no_errors(
            &env,
            &format!("round {round}, backup killed after {delay:?}"),
        );
        // The interrupted backup is simply run again: no lock is in the way.
        let s = env.backup(&[&src]);
        done.push((s["snapshot_id"].as_str().unwrap().to_owned(), content));
        if round % 2 == 1 {
            // Forget the oldest, then a prune killed mid-run.
            let (old, _) = done.remove(0);
            env.ok(&[&"forget", &old]);
            let delay = Duration::from_millis(rng.next(300));
            if kill_after(
                &env,
                &["prune", "--safety-margin", "0s", "--max-unused", "0%"],
                delay,
            ) {
                kills += 1;
            }
            assert_no_errors(
                &env,
                &format!("round {round}, prune killed after {delay:?}"),
            );
        }
    }
    note(&format!("{kills} of 12 runs were killed mid-run"));
    // A complete prune clears every leftover.
    env.ok(&[&"prune", &"--safety-margin", &"0s", &"--max-unused", &"0%"]);
    env.ok(&[&"prune", &"--safety-margin", &"0s", &"--max-unused", &"0%"]);
    let s = summary(&env.ok(&[&"--json", &"check", &"--read-data"]));
    assert_eq!(s["errors"], 0, "{s}");
    assert_eq!(s["warnings"], 0, "leftovers after prune: {s}");
    for (id, content) in &done {
        let target = env.path("restore");
        env.restore(id, &target, &[]);
        assert!(
            fs::read(restored(&target, &src).join("big")).unwrap() == *content,
            "snapshot {id} differs"
        );
        fs::remove_dir_all(&target).unwrap();
    }
}
