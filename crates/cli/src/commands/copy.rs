//! `zaibei copy`.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Serialize;
use zaibei_format::{Id, Snapshot};
use zaibei_repo::copy::{CopyOptions, CopyReport, copy_snapshots};
use zaibei_repo::{IndexedRepository, Repository};

use crate::{Cli, exit, output, password};

/// Copy snapshots from another repository into this one (`-r`), any store to any store.
///
/// Only what the destination lacks is transferred, and every object written is read back and
/// checked. When the two repositories share key material (one was created from the other with
/// `zaibei init --from`) packs move as they are, without decrypting anything; otherwise every
/// blob is decrypted and encrypted again under the destination's keys, even across crypto
/// suites (intl to gm, say). An interrupted copy leaves both repositories valid: run it again
/// and it goes on where it stopped.
#[derive(Debug, Args)]
pub struct CopyArgs {
    /// The repository to copy from.
    #[arg(long = "from", env = "ZAIBEI_FROM_REPOSITORY", value_name = "LOCATION")]
    pub from: String,
    /// Password file of the source (first line). Not needed when the two repositories share
    /// key material; otherwise ZAIBEI_FROM_PASSWORD, then a prompt.
    #[arg(long, env = "ZAIBEI_FROM_PASSWORD_FILE")]
    pub from_password_file: Option<std::path::PathBuf>,
    /// Snapshots to copy (ids, prefixes or `latest`); all when none is given.
    pub snapshots: Vec<String>,
    /// Only snapshots of this host (repeatable).
    #[arg(long = "host")]
    pub hosts: Vec<String>,
    /// Only snapshots with this tag (repeatable; any of them).
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Only snapshots containing this path (repeatable).
    #[arg(long = "path")]
    pub paths: Vec<String>,
    /// Only say what would be copied.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Do not read objects back after writing them.
    #[arg(long)]
    pub no_verify: bool,
}

/// Opens the source: with the destination's keys when they fit, else with its own password.
pub async fn open_source(
    cli: &Cli,
    location: &str,
    password_file: Option<&std::path::Path>,
    dst: &Repository,
) -> Result<Repository> {
    let store = crate::sites::open_store(cli, location)?;
    if let Some(repo) = Repository::open_sharing_keys(Arc::clone(&store), dst)
        .await
        .with_context(|| format!("opening the source repository {location}"))?
    {
        return Ok(repo);
    }
    let pw = match password_file {
        Some(f) => password::from_file(f)?,
        None => match std::env::var_os("ZAIBEI_FROM_PASSWORD") {
            Some(p) => std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec(),
            None => password::get(None, "enter password for the source repository: ")?,
        },
    };
    Repository::open(store, &pw)
        .await
        .with_context(|| format!("opening the source repository {location}"))
}

/// The snapshots of `repo` that the ids and filters select, oldest first.
pub async fn select(
    repo: &IndexedRepository,
    ids: &[String],
    hosts: &[String],
    tags: &[String],
    paths: &[String],
) -> Result<Vec<(Id, Snapshot)>> {
    let chosen = if ids.is_empty() {
        let list = repo.list_snapshots().await?;
        for (name, e) in &list.damaged {
            eprintln!("warning: {} (not copied)", output::naming(name, e));
        }
        list.snapshots
    } else {
        repo.find_snapshots(ids).await?
    };
    Ok(chosen
        .into_iter()
        .filter(|(_, s)| hosts.is_empty() || hosts.contains(&s.hostname))
        .filter(|(_, s)| tags.is_empty() || s.tags.iter().any(|t| tags.contains(t)))
        .filter(|(_, s)| {
            paths
                .iter()
                .all(|p| s.paths.iter().any(|sp| sp == p.as_bytes()))
        })
        .collect())
}

#[derive(Serialize)]
struct Copied {
    source: String,
    destination: Option<String>,
    time: String,
}

#[derive(Serialize)]
struct Summary<'a> {
    message_type: &'static str,
    dry_run: bool,
    mode: &'static str,
    from: &'a str,
    copied: Vec<Copied>,
    already_present: usize,
    blobs: u64,
    packs_whole: u64,
    packs_written: u64,
    index_objects: u64,
    bytes_written: u64,
    objects_verified: u64,
    total_duration: f64,
}

/// Prints what a copy did.
pub fn print_report(
    cli: &Cli,
    from: &str,
    r: &CopyReport,
    dry_run: bool,
    started: std::time::SystemTime,
) -> Result<()> {
    if cli.json {
        output::json_line(&Summary {
            message_type: "summary",
            dry_run,
            mode: r.mode.name(),
            from,
            copied: r
                .copied
                .iter()
                .map(|c| Copied {
                    source: c.source.to_hex(),
                    destination: c.destination.map(|d| d.to_hex()),
                    time: output::time(c.time),
                })
                .collect(),
            already_present: r.present.len(),
            blobs: r.blobs,
            packs_whole: r.packs_whole,
            packs_written: r.packs_written,
            index_objects: r.index_objects,
            bytes_written: r.bytes_written,
            objects_verified: r.objects_verified,
            total_duration: output::seconds_since(started),
        })?;
    } else if !cli.quiet {
        let verb = if dry_run { "would copy" } else { "copied" };
        for c in &r.copied {
            crate::say!(
                "{verb} snapshot {} ({}){}",
                c.source.short(),
                output::time_short(c.time),
                match c.destination {
                    Some(d) if d != c.source => format!(" as {}", d.short()),
                    _ => String::new(),
                }
            )?;
        }
        crate::say!(
            "{} snapshot(s) {verb}, {} already present; {} blob(s) the destination lacked; \
             {} pack(s) as they were, {} written; {} written ({} mode){}",
            r.copied.len(),
            r.present.len(),
            r.blobs,
            r.packs_whole,
            r.packs_written,
            output::bytes(r.bytes_written),
            r.mode.name(),
            if r.objects_verified > 0 {
                format!("; {} object(s) read back and checked", r.objects_verified)
            } else {
                String::new()
            }
        )?;
    }
    Ok(())
}

/// Progress on standard error, when it is a terminal.
pub fn progress_printer(cli: &Cli, what: &'static str) -> impl Fn(&str, u64, u64) + Send + Sync {
    let show = !cli.quiet && !cli.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    move |phase: &str, done: u64, total: u64| {
        if show && (done.is_multiple_of(16) || done == total) {
            if total > 0 {
                eprint!("\r{what} {phase}: {done}/{total}   ");
            } else {
                eprint!("\r{what} {phase}: {done}   ");
            }
        }
    }
}

pub async fn run(cli: &Cli, a: &CopyArgs) -> Result<u8> {
    let started = std::time::SystemTime::now();
    let dst = crate::repo::open(cli).await?;
    let src = open_source(cli, &a.from, a.from_password_file.as_deref(), &dst).await?;
    if src.config().id == dst.config().id {
        bail!(exit::WithCode(
            exit::USAGE,
            "the source and the destination are the same repository".into()
        ));
    }
    let src = Arc::new(
        src.load_index()
            .await
            .context("loading the source's index")?,
    );
    let dst = Arc::new(dst.load_index().await.context("loading the index")?);
    let chosen = select(&src, &a.snapshots, &a.hosts, &a.tags, &a.paths).await?;
    let opts = CopyOptions {
        connections: cli.storage.requests().clamp(1, 32),
        verify: !a.no_verify,
        dry_run: a.dry_run,
    };
    let progress = progress_printer(cli, "copy");
    let report = copy_snapshots(&src, &dst, chosen, &opts, &progress).await?;
    print_report(cli, &a.from, &report, a.dry_run, started)?;
    Ok(exit::OK)
}
