//! One module per command.

mod agent;
mod audit;
mod backup;
mod cat;
mod check;
mod copy;
mod diff;
mod drill;
mod dump;
mod failback;
mod failover;
mod find;
mod forget;
mod init;
mod key;
mod ls;
mod prune;
mod repair;
mod restore;
mod server;
mod site;
mod snapshots;
mod stats;
pub mod sync;
mod watch;

use anyhow::Result;
use clap::Subcommand;

use crate::Cli;

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    Init(init::InitArgs),
    Backup(backup::BackupArgs),
    Snapshots(snapshots::SnapshotsArgs),
    Forget(forget::ForgetArgs),
    Prune(prune::PruneArgs),
    Restore(restore::RestoreArgs),
    Check(check::CheckArgs),
    /// Repair a damaged repository: `repair index` rebuilds the index from the packs,
    /// `repair snapshots` writes snapshots that leave out lost files.
    #[command(subcommand)]
    Repair(repair::RepairCommand),
    /// Manage keys (passwords) of the repository.
    #[command(subcommand)]
    Key(key::KeyCommand),
    Ls(ls::LsArgs),
    Find(find::FindArgs),
    Dump(dump::DumpArgs),
    /// Show what changed between two snapshots.
    Diff(diff::DiffArgs),
    Cat(cat::CatArgs),
    Stats(stats::StatsArgs),
    Copy(copy::CopyArgs),
    /// Manage the disaster-recovery sites of this repository (primary and replicas).
    #[command(subcommand)]
    Site(site::SiteCommand),
    Sync(sync::SyncArgs),
    Failover(failover::FailoverArgs),
    Failback(failback::FailbackArgs),
    /// Keep snapshots current from filesystem events: back up, sync to the sites, forget by
    /// the --keep-* rules (never prune).
    #[command(long_about = watch::LONG_ABOUT)]
    Watch(watch::WatchArgs),
    Drill(drill::DrillArgs),
    /// Run the platform server (tenants, roles, repositories over HTTPS, agents, jobs, audit).
    Server(server::ServerArgs),
    /// The agent on a protected host: register with a server, then run its jobs.
    #[command(subcommand)]
    Agent(agent::AgentCommand),
    /// Verify the platform's tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

/// Runs the command; returns the exit code.
pub async fn run(cli: &Cli) -> Result<u8> {
    match &cli.command {
        Command::Init(a) => init::run(cli, a).await,
        Command::Backup(a) => backup::run(cli, a).await,
        Command::Snapshots(a) => snapshots::run(cli, a).await,
        Command::Forget(a) => forget::run(cli, a).await,
        Command::Prune(a) => prune::run(cli, a).await,
        Command::Restore(a) => restore::run(cli, a).await,
        Command::Check(a) => check::run(cli, a).await,
        Command::Repair(c) => repair::run(cli, c).await,
        Command::Key(k) => key::run(cli, k).await,
        Command::Ls(a) => ls::run(cli, a).await,
        Command::Find(a) => find::run(cli, a).await,
        Command::Dump(a) => dump::run(cli, a).await,
        Command::Diff(a) => diff::run(cli, a).await,
        Command::Cat(a) => cat::run(cli, a).await,
        Command::Stats(a) => stats::run(cli, a).await,
        Command::Copy(a) => copy::run(cli, a).await,
        Command::Site(c) => site::run(cli, c).await,
        Command::Sync(a) => sync::run(cli, a).await,
        Command::Failover(a) => failover::run(cli, a).await,
        Command::Failback(a) => failback::run(cli, a).await,
        Command::Watch(a) => watch::run(cli, a).await,
        Command::Drill(a) => drill::run(cli, a).await,
        Command::Server(a) => server::run(cli, a).await,
        Command::Agent(c) => agent::run(cli, c).await,
        Command::Audit(c) => audit::run(cli, c).await,
    }
}

/// Parses a crypto suite name.
pub fn parse_suite(s: &str) -> Result<zaibei_crypto::Suite, String> {
    s.parse()
}

/// Parses a size such as `200M`, `4GiB` or `4096` (whole numbers with K, M, G or T).
pub fn parse_size(text: &str) -> Result<u64, String> {
    match zaibei_repo::MaxUnused::parse(text)? {
        zaibei_repo::MaxUnused::Bytes(b) => Ok(b),
        zaibei_repo::MaxUnused::Percent(_) => Err("give a size, not a percentage".into()),
    }
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
