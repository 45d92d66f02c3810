//! One module per command.

mod backup;
mod check;
mod init;
mod key;
mod restore;
mod snapshots;

use anyhow::Result;
use clap::Subcommand;

use crate::Cli;

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new repository.
    Init(init::InitArgs),
    /// Back up files and directories, or a stream (--stdin, --stdin-from-command).
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(snapshots::SnapshotsArgs),
    /// Restore a snapshot (or part of one) into a directory.
    Restore(restore::RestoreArgs),
    /// Check the repository's structure, and with --read-data every blob.
    Check(check::CheckArgs),
    /// Manage keys (passwords) of the repository.
    #[command(subcommand)]
    Key(key::KeyCommand),
}

/// Runs the command; returns the exit code.
pub async fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init::run(cli, a).await,
        Command::Backup(a) => backup::run(cli, a).await,
        Command::Snapshots(a) => snapshots::run(cli, a).await,
        Command::Restore(a) => restore::run(cli, a).await,
        Command::Check(a) => check::run(cli, a).await,
        Command::Key(k) => key::run(cli, k).await,
    }
}

/// Parses a crypto suite name.
pub fn parse_suite(s: &str) -> Result<zaibei_crypto::Suite, String> {
    s.parse()
}

/// The host name of this machine.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The KDF for a new key: calibrated to at least `min_ms` on this machine, or the cheapest
/// parameters when `insecure` (tests only; recorded in the key like any others).
pub fn new_kdf(
    suite: zaibei_crypto::Suite,
    min_ms: u64,
    insecure: bool,
) -> Result<zaibei_crypto::PasswordKdf> {
    if insecure {
        return Ok(zaibei_crypto::PasswordKdf::insecure_for_tests(suite));
    }
    Ok(zaibei_crypto::PasswordKdf::calibrate(
        suite,
        std::time::Duration::from_millis(min_ms),
    )?)
}

/// Describes a KDF for people.
pub fn describe_kdf(kdf: &zaibei_crypto::PasswordKdf) -> String {
    match kdf {
        zaibei_crypto::PasswordKdf::Pbkdf2HmacSm3 { iterations } => {
            format!("PBKDF2-HMAC-SM3, {iterations} iterations")
        }
        zaibei_crypto::PasswordKdf::Argon2id {
            memory_kib,
            iterations,
            parallelism,
        } => {
            format!(
                "Argon2id, {} MiB, {iterations} passes, {parallelism} lanes",
                memory_kib / 1024
            )
        }
    }
}
