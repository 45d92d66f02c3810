//! `zaibei`: the command line of the zaibei disaster-recovery platform.
//!
//! Raw arguments are resolved into checked settings here; all work happens in the library
//! crates. One module per command under `commands/`.

mod commands;
mod exit;
mod malloc_tuning;
mod node_view;
mod output;
mod password;
mod progress;
mod repo;
mod sites;
mod store_args;

use clap::Parser;

use crate::commands::Command;

/// zaibei (灾备): encrypted, deduplicating backup and disaster recovery.
///
/// Data is chunked, deduplicated, compressed and encrypted on this machine before it is stored.
/// The default crypto suite is China's commercial cryptography (SM4-GCM, SM3, PBKDF2-HMAC-SM3).
#[derive(Debug, Parser)]
#[command(name = "zaibei", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// Repository location: a directory (`PATH` or `fs:PATH`), or object storage
    /// (`s3:https://HOST[:PORT]/BUCKET[/PREFIX]`, `oss:URL`, `obs:URL`, `cos:URL`).
    #[arg(
        short = 'r',
        long = "repo",
        visible_alias = "repository",
        env = "ZAIBEI_REPOSITORY",
        global = true
    )]
    pub repo: Option<String>,

    /// Read the repository password from this file (first line).
    #[arg(long, env = "ZAIBEI_PASSWORD_FILE", global = true)]
    pub password_file: Option<std::path::PathBuf>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print only errors.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// More log output (repeat for more).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// How to reach the repository's storage.
    #[command(flatten)]
    pub storage: store_args::StoreArgs,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Raises the soft limit of open files to the hard limit: restore keeps a file open from the
/// moment it is created until its contents arrive, and with many connections to object
/// storage that can exceed the usual soft limit of 1024.
fn raise_open_file_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!("cannot raise the open-file limit: {e}");
        }
    }
}

fn main() -> std::process::ExitCode {
    malloc_tuning::reexec_with_tuned_malloc();
    let cli = Cli::parse();
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ZAIBEI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    if let Some(tunables) = malloc_tuning::tuned_with() {
        tracing::debug!(
            "re-executed with GLIBC_TUNABLES={}",
            tunables.to_string_lossy()
        );
    }

    raise_open_file_limit();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("zaibei: cannot start the async runtime: {e}");
            return exit::ERROR.into();
        }
    };
    // `watch`, the server and the agent end on Ctrl-C (and SIGTERM) themselves, gracefully.
    let own_interrupts = matches!(
        cli.command,
        Command::Watch(_) | Command::Server(_) | Command::Agent(_)
    );
    let result = runtime.block_on(async {
        if own_interrupts {
            return commands::run(&cli).await;
        }
        tokio::select! {
            r = commands::run(&cli) => r,
            _ = tokio::signal::ctrl_c() => Err(exit::Interrupted.into()),
        }
    });
    // Do not wait for blocking tasks of an interrupted command.
    runtime.shutdown_background();
    match result {
        Ok(code) => code.into(),
        Err(e) => {
            let code = exit::code_of(&e);
            match code {
                exit::BROKEN_PIPE => {}
                exit::INTERRUPTED => eprintln!(
                    "zaibei: interrupted; the repository is unchanged except for unreferenced data that prune removes"
                ),
                _ => eprintln!("zaibei: {}", exit::describe(&e)),
            }
            code.into()
        }
    }
}
