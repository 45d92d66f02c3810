//! `zaibei failover`.

use anyhow::{Result, bail};
use clap::Args;
use zaibei_format::SiteRole;
use zaibei_repo::site;

use crate::commands::site::record_of;
use crate::sites::open_peers;
use crate::{Cli, exit, output};

/// Promote this replica (`-r`) to primary, raising the epoch.
///
/// Every other site that can be reached is recorded as a replica of this one first; when the
/// old primary cannot be reached (the disaster case) it is fenced: it refuses every deletion
/// until it reaches this site again, and then until `zaibei failback` is run there. Backups
/// may go to this site at once. Snapshots taken at the old primary meanwhile are kept and
/// merged by failback.
#[derive(Debug, Args)]
pub struct FailoverArgs {}

pub async fn run(cli: &Cli, _a: &FailoverArgs) -> Result<u8> {
    let repo = crate::repo::open(cli).await?;
    let me = record_of(&repo).await?;
    if me.role == SiteRole::Primary {
        bail!(exit::WithCode(
            exit::USAGE,
            format!(
                "site {} is already the primary (epoch {}); failover runs at a replica",
                me.name, me.epoch
            )
        ));
    }
    let peers = open_peers(cli, &repo, &me).await;
    let change = site::become_primary(&repo, &peers, false).await?;
    if cli.json {
        output::json_line(&serde_json::json!({
            "message_type": "failover",
            "site": change.record.name,
            "epoch": change.record.epoch,
            "previous_primary": me.primary,
            "updated": change.updated,
            "unreachable": change.unreachable.iter().map(|(n, e)| serde_json::json!({"site": n, "error": e})).collect::<Vec<_>>(),
        }))?;
    } else if !cli.quiet {
        crate::say!(
            "site {} is now the primary (epoch {}); it was a replica of {}",
            change.record.name,
            change.record.epoch,
            me.primary
        )?;
        for n in &change.updated {
            crate::say!(
                "  site {n} now records {} as the primary",
                change.record.name
            )?;
        }
        for (n, e) in &change.unreachable {
            crate::say!(
                "  site {n} could not be reached ({e}); it is fenced: it deletes nothing until \
                 it is failed back"
            )?;
        }
    }
    Ok(exit::OK)
}
