//! `zaibei check`.

use anyhow::Result;
use clap::Args;
use serde::Serialize;
use zaibei_repo::{Affected, CheckOptions, Severity, check};

use crate::{Cli, exit, output};

/// Check the repository.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every pack and authenticate every blob.
    #[arg(long)]
    pub read_data: bool,
    /// Read only part of the packs: `n/m` (part n of m, e.g. one part a night: every pack
    /// once in m nights) or `P%` (a random share). Implies --read-data.
    #[arg(long, value_name = "n/m|P%", value_parser = zaibei_repo::DataSubset::parse)]
    pub read_data_subset: Option<zaibei_repo::DataSubset>,
}

#[derive(Serialize)]
struct Problem {
    severity: &'static str,
    object: String,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    affected: Option<AffectedView>,
}

/// What a problem costs, for scripts.
#[derive(Serialize)]
struct AffectedView {
    snapshots: Vec<String>,
    paths: Vec<PathView>,
    paths_total: usize,
    paths_known: bool,
}

#[derive(Serialize)]
struct PathView {
    path: String,
    snapshots: Vec<String>,
}

impl From<&Affected> for AffectedView {
    fn from(a: &Affected) -> Self {
        AffectedView {
            snapshots: a.snapshots.iter().map(|s| s.to_hex()).collect(),
            paths: a
                .paths
                .iter()
                .map(|p| PathView {
                    path: p.path.clone(),
                    snapshots: p.snapshots.iter().map(|s| s.to_hex()).collect(),
                })
                .collect(),
            paths_total: a.paths_total,
            paths_known: a.paths_known,
        }
    }
}

/// Paths shown per problem on a terminal (--json lists more).
const PATHS_SHOWN: usize = 20;

/// Says for people what a problem costs.
fn describe(a: &Affected) -> Vec<String> {
    let shorts = |ids: &[zaibei_format::Id]| {
        let mut s: Vec<String> = ids.iter().take(8).map(|i| i.short()).collect();
        if ids.len() > 8 {
            s.push(format!("and {} more", ids.len() - 8));
        }
        s.join(", ")
    };
    if a.snapshots.is_empty() {
        return vec!["  no snapshot needs what it made unreadable".into()];
    }
    let mut lines = vec![format!(
        "  affects {} snapshot{}: {}",
        a.snapshots.len(),
        if a.snapshots.len() == 1 { "" } else { "s" },
        shorts(&a.snapshots)
    )];
    if !a.paths_known {
        lines.push("  (paths are unknown: the key in use cannot read trees)".into());
    } else if a.paths_total == 0 {
        lines.push(
            "  every file can still be restored (prune and maintenance checks need what was lost)"
                .into(),
        );
    } else {
        lines.push(format!(
            "  cannot restore {} path{}:",
            a.paths_total,
            if a.paths_total == 1 { "" } else { "s" }
        ));
        for p in a.paths.iter().take(PATHS_SHOWN) {
            lines.push(format!("    {}  (in {})", p.path, shorts(&p.snapshots)));
        }
        if a.paths_total > PATHS_SHOWN {
            lines.push(format!(
                "    ... and {} more (--json lists up to {})",
                a.paths_total - PATHS_SHOWN,
                zaibei_repo::MAX_PATHS_LISTED
            ));
        }
    }
    lines
}

#[derive(Serialize)]
struct Summary {
    message_type: &'static str,
    ok: bool,
    errors: usize,
    warnings: usize,
    snapshots: usize,
    trees: usize,
    packs: usize,
    packs_read: usize,
    packs_total: usize,
    blobs_read: u64,
    bytes_read: u64,
    content_unverified: bool,
    snapshots_affected: usize,
    problems: Vec<Problem>,
}

pub async fn run(cli: &Cli, a: &CheckArgs) -> Result<u8> {
    // Never through the cache: check judges what the store holds.
    let repo = crate::repo::open_indexed_with(cli, false).await?;
    let show = !cli.quiet && !cli.json && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let progress = move |phase: &str, done: u64, total: u64| {
        if show && done.is_multiple_of(64) {
            if total > 0 {
                eprint!("\rchecking {phase}: {done}/{total}   ");
            } else {
                eprint!("\rchecking {phase}: {done}   ");
            }
        }
    };
    let report = check(
        &repo,
        CheckOptions {
            read_data: a.read_data || a.read_data_subset.is_some(),
            subset: a.read_data_subset.unwrap_or_default(),
        },
        &progress,
    )
    .await?;
    if show {
        eprint!("\r\x1b[K");
    }
    let errors = report.errors();
    if cli.json {
        output::json_line(&Summary {
            message_type: "summary",
            ok: errors == 0,
            errors,
            warnings: report.problems.len() - errors,
            snapshots: report.snapshots,
            trees: report.trees,
            packs: report.packs,
            packs_read: report.packs_read,
            packs_total: report.packs_total,
            blobs_read: report.blobs_read,
            bytes_read: report.bytes_read,
            content_unverified: report.content_unverified,
            snapshots_affected: report.snapshots_affected,
            problems: report
                .problems
                .iter()
                .map(|p| Problem {
                    severity: if p.severity == Severity::Error {
                        "error"
                    } else {
                        "warning"
                    },
                    object: p.object.clone(),
                    message: p.message.clone(),
                    affected: p.affected.as_ref().map(AffectedView::from),
                })
                .collect(),
        })?;
    } else {
        for p in &report.problems {
            let tag = if p.severity == Severity::Error {
                "error"
            } else {
                "warning"
            };
            eprintln!("{tag}: {}", output::naming(&p.object, &p.message));
            for line in p.affected.iter().flat_map(describe) {
                eprintln!("{line}");
            }
        }
        if !cli.quiet {
            crate::say!(
                "checked {} snapshots, {} trees, {} packs{}",
                report.snapshots,
                report.trees,
                report.packs,
                if a.read_data || a.read_data_subset.is_some() {
                    format!(
                        "; read {} of {} packs ({}), authenticated {} blobs",
                        report.packs_read,
                        report.packs_total,
                        output::bytes(report.bytes_read),
                        report.blobs_read
                    )
                } else {
                    String::new()
                }
            )?;
            if report.content_unverified {
                crate::say!(
                    "opened with a maintenance-only key: file data and trees were not decrypted"
                )?;
            }
            if errors == 0 {
                crate::say!("no errors were found")?;
            } else {
                crate::say!(
                    "{errors} errors were found; {} snapshots are affected",
                    report.snapshots_affected
                )?;
            }
        }
    }
    Ok(if errors == 0 { exit::OK } else { exit::DAMAGED })
}
