//! A fixed mmap threshold for glibc's allocator, set by re-executing once at start.
//!
//! glibc serves blocks of 128 KiB and more with `mmap` and gives them back on `free`, but the
//! first time it frees such a block it raises that threshold to the block's size (up to
//! 32 MiB). From then on the chunk copies and pack buffers of a backup (0.5–9 MiB each) come
//! from the per-thread arenas, which keep most of what is freed: a first backup of the Linux
//! tree peaked at 128.5–139.0 MiB of RSS with glibc's default and at 109.1–112.1 MiB with the
//! threshold fixed at 1 MiB, for up to about 1 s more system time (fresh pages are faulted
//! in; `docs/BENCHMARKS.md`).
//!
//! The threshold can be fixed by `mallopt`, which is `unsafe` (forbidden outside the
//! accelerated-crypto module), or by the `GLIBC_TUNABLES` variable, which glibc reads when a
//! program starts. So, before anything else, `main` re-executes the binary once with the
//! variable set ([`reexec_with_tuned_malloc`]). A threshold the user set (in `GLIBC_TUNABLES`
//! or glibc's older `MALLOC_MMAP_THRESHOLD_`) is left as it is, and `ZAIBEI_MALLOC_TUNING=off`
//! turns all this off.
//!
//! Limits, by design:
//! * A binary started through the dynamic loader (`ld-linux-x86-64.so.2 zaibei …`) is not
//!   re-executed: `/proc/self/exe` is then the loader, which would take the first argument for
//!   the program. The arguments the kernel saw (`/proc/self/cmdline`) then outnumber the
//!   program's own, and that is how it is recognised.
//! * Programs zaibei starts (`backup --stdin-from-command pg_dump …`) inherit the variable, so
//!   their allocator keeps the same fixed threshold.
//! * glibc ignores `GLIBC_TUNABLES` in a program that gains privileges when it starts (set-user-ID,
//!   file capabilities): the re-execution then costs a millisecond and changes nothing. The
//!   debug log says what was set, not what glibc applied.

use std::ffi::{OsStr, OsString};

/// The tunable set, and its value in bytes.
const TUNABLE: &str = "glibc.malloc.mmap_threshold";
/// 1 MiB: smaller blocks (tree nodes, small chunks) stay in the arenas, where reuse is cheap.
const THRESHOLD: &str = "1048576";
/// Set in the re-executed process, so it never re-executes again (glibc drops
/// `GLIBC_TUNABLES` from the environment of set-user-ID programs).
const MARKER: &str = "ZAIBEI_MALLOC_TUNED";
/// `off` turns the re-execution off.
const SWITCH: &str = "ZAIBEI_MALLOC_TUNING";

/// The `GLIBC_TUNABLES` to run with: `current` with the threshold added, or `None` when it
/// already sets one (the user's choice wins).
fn tuned_value(current: Option<&OsStr>) -> Option<OsString> {
    let setting = format!("{TUNABLE}={THRESHOLD}");
    match current {
        None => Some(setting.into()),
        Some(v) if v.is_empty() => Some(setting.into()),
        Some(v) => {
            let text = v.to_string_lossy();
            if text
                .split(':')
                .any(|t| t.split('=').next() == Some(TUNABLE))
            {
                return None;
            }
            let mut out = v.to_os_string();
            out.push(":");
            out.push(setting);
            Some(out)
        }
    }
}

/// Re-executes this binary with the allocator's mmap threshold fixed (see the module docs);
/// returns only if that is not needed or not possible, and the program then goes on as it is.
pub fn reexec_with_tuned_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::unix::process::CommandExt;

        if std::env::var_os(MARKER).is_some()
            || std::env::var_os(SWITCH).is_some_and(|v| v == "off")
            || std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || started_by_the_loader()
        {
            return;
        }
        let Some(value) = tuned_value(std::env::var_os("GLIBC_TUNABLES").as_deref()) else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| "zaibei".into());
        // `/proc/self/exe` is this very binary, even if its file was replaced since it started.
        let error = std::process::Command::new("/proc/self/exe")
            .arg0(arg0)
            .args(args)
            .env("GLIBC_TUNABLES", value)
            .env(MARKER, "1")
            .exec();
        // Without /proc, say: carry on with the allocator's defaults. Logging is not set up yet.
        let _ = error;
    }
}

/// Whether the program was started by naming the dynamic loader (`ld.so PROGRAM ARGS`): the
/// kernel then counts more arguments than the program gets. Unknown counts as yes, so that
/// nothing is re-executed on a guess.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn started_by_the_loader() -> bool {
    match std::fs::read("/proc/self/cmdline") {
        Ok(cmdline) => cmdline.split(|&b| b == 0).count() - 1 != std::env::args_os().count(),
        Err(_) => true,
    }
}

/// What the allocator was tuned with, for the debug log.
pub fn tuned_with() -> Option<OsString> {
    std::env::var_os(MARKER).and(std::env::var_os("GLIBC_TUNABLES"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_threshold_is_added_to_what_is_set() {
        assert_eq!(
            tuned_value(None).as_deref(),
            Some(OsStr::new("glibc.malloc.mmap_threshold=1048576"))
        );
        assert_eq!(
            tuned_value(Some(OsStr::new(""))).as_deref(),
            Some(OsStr::new("glibc.malloc.mmap_threshold=1048576"))
        );
        assert_eq!(
            tuned_value(Some(OsStr::new("glibc.malloc.arena_max=2"))).as_deref(),
            Some(OsStr::new(
                "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=1048576"
            ))
        );
    }

    #[test]
    fn a_threshold_already_set_is_left_alone() {
        for set in [
            "glibc.malloc.mmap_threshold=262144",
            "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=4096",
        ] {
            assert_eq!(tuned_value(Some(OsStr::new(set))), None, "{set}");
        }
        // A tunable whose name only starts alike is another tunable.
        assert!(tuned_value(Some(OsStr::new("glibc.malloc.mmap_threshold_x=1"))).is_some());
    }
}
